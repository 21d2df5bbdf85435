package api

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
)

// requestValidator answers what protovalidate answers for the whole
// request, violation for violation, whichever Candidates are wrong and
// however many.
func TestRequestValidatorAnswersAsProtovalidate(t *testing.T) {
	t.Parallel()
	v := requestValidator{protovalidate.GlobalValidator}
	rng := rand.New(rand.NewPCG(1, 2))
	spoil := []func(c *loomv1.Candidate){
		func(c *loomv1.Candidate) { c.Id = "-" + c.Id },
		func(c *loomv1.Candidate) { c.Kind = "" },
		func(c *loomv1.Candidate) { c.Metadata[""] = "x" },
		func(c *loomv1.Candidate) { c.Metadata["k"] = strings.Repeat("v", 5000) },
		func(c *loomv1.Candidate) { c.Steps = []*loomv1.StepDefinition{{Name: "Bad_Name"}} },
		func(c *loomv1.Candidate) { c.Files = make([]*loomv1.FileGroup, 51) },
	}
	for round := range 60 {
		n := []int{1, 399, 400, 401, 1000, 1001}[round%6]
		req := &loomv1.SubmitCandidatesRequest{MigrationId: "fleet", Round: "r"}
		for i := range n {
			req.Candidates = append(req.Candidates, &loomv1.Candidate{Id: fmt.Sprintf("acme/svc-%04d", i), Kind: "service",
				Metadata: map[string]string{"team": "t"}})
		}
		wrong := rng.IntN(4)
		for range wrong {
			spoil[rng.IntN(len(spoil))](req.Candidates[rng.IntN(n)])
		}
		if round%5 == 0 {
			req.MigrationId = "Bad_Id"
		}
		if round%7 == 0 {
			req.Round = strings.Repeat("r", 200)
		}
		got, want := v.Validate(req), protovalidate.GlobalValidator.Validate(req)
		if (got == nil) != (want == nil) {
			t.Fatalf("round %d: %v, want %v", round, got, want)
		}
		if want == nil {
			continue
		}
		var g, w *protovalidate.ValidationError
		if !errors.As(got, &g) || !errors.As(want, &w) {
			t.Fatalf("round %d: %T, want %T", round, got, want)
		}
		if got.Error() != want.Error() || !proto.Equal(g.ToProto(), w.ToProto()) {
			t.Fatalf("round %d (%d Candidates, %d spoiled):\n got %v\nwant %v", round, n, wrong, g.ToProto(), w.ToProto())
		}
	}
}
