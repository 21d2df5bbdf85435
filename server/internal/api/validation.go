package api

import (
	"errors"
	"runtime"
	"slices"
	"sync"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
)

// validation.go owns how requests are checked against the rules of the
// .proto files: protovalidate, with a discovery's Candidates spread over
// the CPUs.

// requestValidator is protovalidate's validator, except that the
// Candidates of a large SubmitCandidatesRequest are validated on every CPU
// at once: up to 1,000 of them are most of the CPU a discovery costs Loom
// before it waits for Redis, which is idle meanwhile. The answer is the
// one protovalidate gives the whole request, violations in the same order.
type requestValidator struct {
	protovalidate.Validator
}

// parallelValidateMin is the fewest Candidates per goroutine.
const parallelValidateMin = 200

var candidateName = (&loomv1.Candidate{}).ProtoReflect().Descriptor().FullName()

// beside requests rules of everything but a Candidate (its fields and
// itself), whose rules are checked on their own.
var beside = protovalidate.WithFilter(protovalidate.FilterFunc(func(m protoreflect.Message, _ protoreflect.Descriptor) bool {
	return m.Descriptor().FullName() != candidateName
}))

func (v requestValidator) Validate(msg proto.Message, opts ...protovalidate.ValidationOption) error {
	req, ok := msg.(*loomv1.SubmitCandidatesRequest)
	if !ok {
		return v.Validator.Validate(msg, opts...)
	}
	cs := req.GetCandidates()
	workers := min(runtime.GOMAXPROCS(0), len(cs)/parallelValidateMin)
	if workers < 2 {
		return v.Validator.Validate(msg, opts...)
	}
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w * len(cs) / workers; i < (w+1)*len(cs)/workers; i++ {
				errs[i] = v.Validator.Validate(cs[i], opts...)
			}
		})
	}
	own := v.Validator.Validate(msg, append(slices.Clone(opts), beside)...)
	wg.Wait()

	var out protovalidate.ValidationError
	if own != nil {
		var ve *protovalidate.ValidationError
		if !errors.As(own, &ve) {
			return own
		}
		out.Violations = ve.Violations
	}
	// protovalidate reports a request's violations in field order: those
	// of the fields before candidates, of candidates as a list, of each
	// Candidate, then of the fields after it.
	at := 0
	for at < len(out.Violations) && firstField(out.Violations[at]) <= candidatesField {
		at++
	}
	var nested []*protovalidate.Violation
	for i, err := range errs {
		if err == nil {
			continue
		}
		var ve *protovalidate.ValidationError
		if !errors.As(err, &ve) {
			return err
		}
		for _, vi := range ve.Violations {
			prefixPath(vi, i)
			nested = append(nested, vi)
		}
	}
	if len(out.Violations) == 0 && len(nested) == 0 {
		return nil
	}
	out.Violations = slices.Concat(out.Violations[:at], nested, out.Violations[at:])
	return &out
}

// candidatesField is the number of SubmitCandidatesRequest.candidates.
var candidatesField = int32((&loomv1.SubmitCandidatesRequest{}).ProtoReflect().Descriptor().Fields().ByName("candidates").Number())

// firstField is the number of the request's field a violation is about.
func firstField(v *protovalidate.Violation) int32 {
	if es := v.Proto.GetField().GetElements(); len(es) > 0 {
		return es[0].GetFieldNumber()
	}
	return 0
}

// prefixPath makes the field path of a violation of Candidate i, relative
// to the Candidate, relative to the request: candidates[i]. ...
func prefixPath(v *protovalidate.Violation, i int) {
	el := validate.FieldPathElement_builder{
		FieldNumber: proto.Int32(candidatesField),
		FieldName:   proto.String("candidates"),
		FieldType:   descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(),
		Index:       proto.Uint64(uint64(i)),
	}.Build()
	if v.Proto.GetField() == nil {
		v.Proto.SetField(&validate.FieldPath{})
	}
	v.Proto.GetField().SetElements(append([]*validate.FieldPathElement{el}, v.Proto.GetField().GetElements()...))
}
