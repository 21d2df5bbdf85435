package api

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/server/internal/migration"
)

// ErrorDomain is the domain of every google.rpc.ErrorInfo Loom attaches.
const ErrorDomain = "loom.dev"

var kindCodes = []struct {
	kind error
	code connect.Code
}{
	{migration.ErrNotFound, connect.CodeNotFound},
	{migration.ErrAlreadyExists, connect.CodeAlreadyExists},
	{migration.ErrFailedPrecondition, connect.CodeFailedPrecondition},
	{migration.ErrInvalidArgument, connect.CodeInvalidArgument},
	{migration.ErrUnavailable, connect.CodeUnavailable},
	{context.Canceled, connect.CodeCanceled},
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded},
}

// toConnectError is the one place where domain errors become Connect
// errors. Refusals keep their message and carry an ErrorInfo (and, for
// invalid arguments, a BadRequest naming the field); anything unexpected
// becomes Internal with no detail, its cause being logged by the caller.
func toConnectError(err error) (cerr *connect.Error, unexpected bool) {
	if errors.As(err, &cerr) {
		return cerr, false
	}
	code := connect.CodeInternal
	for _, kc := range kindCodes {
		if errors.Is(err, kc.kind) {
			code = kc.code
			break
		}
	}
	if code == connect.CodeInternal {
		return connect.NewError(code, errors.New("internal error")), true
	}
	var ref *migration.Refusal
	if !errors.As(err, &ref) {
		return connect.NewError(code, err), false
	}
	msg := ref.Message
	if ref.Field != "" {
		msg = ref.Field + ": " + msg
	}
	cerr = connect.NewError(code, errors.New(msg))
	if ref.Reason != "" {
		if d, derr := connect.NewErrorDetail(&errdetails.ErrorInfo{
			Reason:   ref.Reason,
			Domain:   ErrorDomain,
			Metadata: ref.Metadata,
		}); derr == nil {
			cerr.AddDetail(d)
		}
	}
	if ref.Field != "" {
		if d, derr := connect.NewErrorDetail(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: ref.Field, Description: ref.Message}},
		}); derr == nil {
			cerr.AddDetail(d)
		}
	}
	return cerr, false
}

// bulkResult renders what a bulk action did. Each Candidate's refusal is
// mapped as toConnectError maps a single call's, so its code, reason,
// message and metadata are those the single action would have answered; an
// unexpected failure is `internal` with no detail, its cause logged here,
// once.
func bulkResult(ctx context.Context, log *slog.Logger, procedure, migrationID string, rep migration.BulkReport) *loomv1.BulkResult {
	out := &loomv1.BulkResult{
		Outcomes:          make([]*loomv1.CandidateOutcome, len(rep.Outcomes)),
		SelectedCount:     int32(len(rep.Outcomes)),
		DoneCount:         int32(rep.Count(migration.BulkDone)),
		RefusedCount:      int32(rep.Count(migration.BulkRefused)),
		NotAttemptedCount: int32(rep.Count(migration.BulkNotAttempted)),
	}
	for i, o := range rep.Outcomes {
		p := &loomv1.CandidateOutcome{CandidateId: o.CandidateID, Outcome: bulkOutcomes[o.Kind]}
		if o.Err != nil {
			cerr, unexpected := toConnectError(o.Err)
			if unexpected && log != nil {
				log.ErrorContext(ctx, "bulk action failed on a candidate", "procedure", procedure,
					"migration_id", migrationID, "candidate_id", o.CandidateID, "error", o.Err)
			}
			p.Code, p.Message = cerr.Code().String(), cerr.Message()
			var ref *migration.Refusal
			if errors.As(o.Err, &ref) {
				p.Reason, p.Metadata = ref.Reason, ref.Metadata
			}
		}
		out.Outcomes[i] = p
	}
	if log != nil {
		log.InfoContext(ctx, "bulk action", "procedure", procedure, "migration_id", migrationID,
			"selected", out.SelectedCount, "done", out.DoneCount, "refused", out.RefusedCount, "not_attempted", out.NotAttemptedCount)
	}
	return out
}

var bulkOutcomes = map[migration.BulkOutcomeKind]loomv1.BulkOutcome{
	migration.BulkDone:         loomv1.BulkOutcome_BULK_OUTCOME_DONE,
	migration.BulkRefused:      loomv1.BulkOutcome_BULK_OUTCOME_REFUSED,
	migration.BulkNotAttempted: loomv1.BulkOutcome_BULK_OUTCOME_NOT_ATTEMPTED,
}

// errorInterceptor maps every handler error with toConnectError and logs each
// failed RPC once: unexpected failures at error level with their cause,
// refusals at debug level (they are the caller's to handle).
type errorInterceptor struct {
	log *slog.Logger
}

func (i errorInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if err != nil {
			return nil, i.convert(ctx, req.Spec().Procedure, req.Any(), err)
		}
		return res, nil
	}
}

func (i errorInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i errorInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := next(ctx, conn); err != nil {
			return i.convert(ctx, conn.Spec().Procedure, nil, err)
		}
		return nil
	}
}

func (i errorInterceptor) convert(ctx context.Context, procedure string, req any, err error) error {
	cerr, unexpected := toConnectError(err)
	attrs := append([]any{"procedure", procedure}, runAttrs(req)...)
	if unexpected {
		i.log.ErrorContext(ctx, "rpc failed", append(attrs, "error", err)...)
	} else {
		attrs = append(attrs, "code", cerr.Code().String())
		var ref *migration.Refusal
		if errors.As(err, &ref) && ref.Reason != "" {
			attrs = append(attrs, "reason", ref.Reason)
		}
		i.log.DebugContext(ctx, "rpc refused", append(attrs, "error", cerr.Message())...)
	}
	return cerr
}

// runFields are the request fields that say which Run a call is about, and
// the log keys they go by.
var runFields = []struct{ field, key string }{
	{"migration_id", "migration_id"}, {"candidate_id", "candidate_id"}, {"run_id", "run_id"},
	{"execution", "execution"}, {"step_name", "step"}, {"attempt", "attempt"},
}

// runAttrs returns the log attributes of the Run req is about: those of
// runFields it has and sets. A run id alone also names its Migration and
// Candidate.
func runAttrs(req any) []any {
	msg, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	r := msg.ProtoReflect()
	fields := r.Descriptor().Fields()
	var attrs []any
	have := map[string]bool{}
	for _, f := range runFields {
		fd := fields.ByName(protoreflect.Name(f.field))
		if fd == nil || fd.IsList() || fd.IsMap() || !r.Has(fd) {
			continue
		}
		attrs = append(attrs, f.key, r.Get(fd).Interface())
		have[f.key] = true
	}
	if fd := fields.ByName("run_id"); fd != nil && r.Has(fd) && !have["migration_id"] {
		if m, c, ok := migration.ParseRunID(r.Get(fd).String()); ok {
			attrs = append(attrs, "migration_id", m, "candidate_id", c)
		}
	}
	return attrs
}
