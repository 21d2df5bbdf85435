package api_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/server/internal/migration"
)

func byIDs(ids ...string) *loomv1.CandidateSelection {
	return &loomv1.CandidateSelection{CandidateIds: ids}
}

// outcomesOf renders a bulk result as "id:outcome:code:reason" items.
func outcomesOf(r *loomv1.BulkResult) []string {
	var out []string
	for _, o := range r.GetOutcomes() {
		s := o.CandidateId + ":" + strings.TrimPrefix(o.Outcome.String(), "BULK_OUTCOME_")
		if o.Code != "" {
			s += ":" + o.Code + ":" + o.Reason
		}
		out = append(out, s)
	}
	return out
}

// Malformed bulk requests are refused naming the field, and a selection
// larger than the cap is refused whole: nothing is done.
func TestBulkRequestsAreValidated(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	setup := a.clients(http.DefaultClient)
	if _, err := setup.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("bulk")})); err != nil {
		t.Fatal(err)
	}
	// One more Candidate than a selection may hold.
	for i := 0; i <= migration.MaxBulkCandidates; i += migration.MaxSubmitCandidates {
		var cands []migration.Candidate
		for j := i; j < min(i+migration.MaxSubmitCandidates, migration.MaxBulkCandidates+1); j++ {
			cands = append(cands, migration.Candidate{ID: fmt.Sprintf("svc-%05d", j), Kind: "service"})
		}
		if _, err := a.store.SubmitCandidates(ctx, migration.Submission{MigrationID: "bulk", Candidates: cands}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	tooMany := make([]string, migration.MaxBulkCandidates+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("svc-%05d", i)
	}
	set := map[string]string{"target_version": "1.23"}
	for _, p := range []struct {
		name string
		opts []connect.ClientOption
		hc   func() *http.Client
	}{{"connect-json", []connect.ClientOption{connect.WithProtoJSON()}, func() *http.Client { return http.DefaultClient }}, {"grpc", []connect.ClientOption{connect.WithGRPC()}, h2c}} {
		c := a.clients(p.hc(), p.opts...)
		for _, tc := range []struct {
			name  string
			call  func() error
			field string
		}{
			{"no selection", func() error {
				_, err := c.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{MigrationId: "bulk"}))
				return err
			}, "selection"},
			{"an empty selection", func() error {
				_, err := c.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{MigrationId: "bulk", Selection: &loomv1.CandidateSelection{}}))
				return err
			}, "selection"},
			{"ids and a filter", func() error {
				_, err := c.runs.BulkCancelRuns(ctx, connect.NewRequest(&loomv1.BulkCancelRunsRequest{MigrationId: "bulk",
					Selection: &loomv1.CandidateSelection{CandidateIds: []string{"svc-00001"}, Filter: &loomv1.CandidateFilter{}}}))
				return err
			}, "selection"},
			{"an id twice", func() error {
				_, err := c.runs.BulkCancelRuns(ctx, connect.NewRequest(&loomv1.BulkCancelRunsRequest{MigrationId: "bulk", Selection: byIDs("a", "b", "a")}))
				return err
			}, "selection.candidate_ids"},
			{"a malformed id", func() error {
				_, err := c.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{MigrationId: "bulk", Selection: byIDs("ok", "not ok")}))
				return err
			}, "selection.candidate_ids[1]"},
			{"too many ids", func() error {
				_, err := c.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{MigrationId: "bulk", Selection: byIDs(tooMany...)}))
				return err
			}, "selection.candidate_ids"},
			{"a malformed filter", func() error {
				_, err := c.discovery.BulkUpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.BulkUpdateCandidateInputsRequest{MigrationId: "bulk",
					Selection: &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{Kind: "no spaces"}}, Inputs: set}))
				return err
			}, "selection.filter.kind"},
			{"a malformed migration id", func() error {
				_, err := c.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{MigrationId: "Bulk", Selection: byIDs("a")}))
				return err
			}, "migration_id"},
			{"a malformed step", func() error {
				_, err := c.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{MigrationId: "bulk", Selection: byIDs("a"), StepName: "Bump"}))
				return err
			}, "step_name"},
			{"a review without its step", func() error {
				_, err := c.runs.BulkFinishReviews(ctx, connect.NewRequest(&loomv1.BulkFinishReviewsRequest{MigrationId: "bulk", Selection: byIDs("a"),
					Outcome: loomv1.StepStatus_STEP_STATUS_COMPLETED}))
				return err
			}, "step_name"},
			{"a review outcome that is no outcome", func() error {
				_, err := c.runs.BulkFinishReviews(ctx, connect.NewRequest(&loomv1.BulkFinishReviewsRequest{MigrationId: "bulk", Selection: byIDs("a"),
					StepName: "review", Outcome: loomv1.StepStatus_STEP_STATUS_MERGED}))
				return err
			}, "outcome"},
			{"a merge without its step", func() error {
				_, err := c.runs.BulkMarkStepsMerged(ctx, connect.NewRequest(&loomv1.BulkMarkStepsMergedRequest{MigrationId: "bulk", Selection: byIDs("a")}))
				return err
			}, "step_name"},
			{"a reason too long", func() error {
				_, err := c.runs.BulkCancelRuns(ctx, connect.NewRequest(&loomv1.BulkCancelRunsRequest{MigrationId: "bulk", Selection: byIDs("a"),
					Reason: strings.Repeat("x", 2001)}))
				return err
			}, "reason"},
			{"no input change", func() error {
				_, err := c.discovery.BulkUpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.BulkUpdateCandidateInputsRequest{MigrationId: "bulk", Selection: byIDs("a")}))
				return err
			}, "inputs"},
			{"a filter matching too many", func() error {
				_, err := c.discovery.BulkUpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.BulkUpdateCandidateInputsRequest{MigrationId: "bulk",
					Selection: &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{Kind: "service"}}, Inputs: set}))
				if info := errorInfo(t, wantCode(t, err, connect.CodeInvalidArgument)); info.Reason != migration.ReasonSelectionTooLarge ||
					info.Metadata["matched"] != "10001" || info.Metadata["max"] != "10000" {
					t.Errorf("error info %v", info)
				}
				return err
			}, "selection.filter"},
		} {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				cerr := wantCode(t, tc.call(), connect.CodeInvalidArgument)
				if !strings.Contains(cerr.Message(), tc.field) {
					t.Fatalf("refusal %q does not name %s", cerr.Message(), tc.field)
				}
			})
		}
		for _, sel := range []*loomv1.CandidateSelection{byIDs("a"), {Filter: &loomv1.CandidateFilter{}}} {
			_, err := c.runs.BulkCancelRuns(ctx, connect.NewRequest(&loomv1.BulkCancelRunsRequest{MigrationId: "nope", Selection: sel}))
			if info := errorInfo(t, wantCode(t, err, connect.CodeNotFound)); info.Reason != migration.ReasonMigrationNotFound {
				t.Errorf("unknown migration: %v", info)
			}
		}
	}
	// Nothing was done: no Candidate has inputs.
	page, err := a.store.ListCandidates(ctx, "bulk", migration.CandidateFilter{IDPrefix: "svc-0000"}, migration.PageRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range page.Candidates {
		if len(c.Inputs) != 0 {
			t.Fatalf("a refused request set inputs on %s: %v", c.ID, c.Inputs)
		}
	}
}

// A bulk action answers each Candidate's outcome, refusals with the code,
// reason, message and metadata the single action would have answered.
func TestBulkOutcomesPerCandidate(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	c := a.clients(http.DefaultClient, connect.WithProtoJSON())
	if _, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("bulk")})); err != nil {
		t.Fatal(err)
	}
	cands := []*loomv1.Candidate{sampleCandidate("acme/a", "service"), sampleCandidate("acme/b", "service"), sampleCandidate("other/c", "library")}
	cands[1].Metadata = map[string]string{"team": "search"}
	if _, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{MigrationId: "bulk", Candidates: cands})); err != nil {
		t.Fatal(err)
	}

	res, err := c.discovery.BulkUpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.BulkUpdateCandidateInputsRequest{MigrationId: "bulk",
		Selection: byIDs("other/c", "ghost", "acme/a"), Inputs: map[string]string{"target_version": "1.23"}}))
	if err != nil {
		t.Fatal(err)
	}
	r := res.Msg.Result
	if got, want := outcomesOf(r), []string{"other/c:DONE", "ghost:REFUSED:not_found:CANDIDATE_NOT_FOUND", "acme/a:DONE"}; !slices.Equal(got, want) {
		t.Fatalf("outcomes\n got %v\nwant %v", got, want)
	}
	if r.SelectedCount != 3 || r.DoneCount != 2 || r.RefusedCount != 1 || r.NotAttemptedCount != 0 {
		t.Errorf("counts %v", r)
	}
	if o := r.Outcomes[1]; !strings.Contains(o.Message, `"ghost"`) || o.Metadata["candidate_id"] != "ghost" {
		t.Errorf("refusal %v", o)
	}

	// By filter: the team's services, whatever else the Migration holds.
	res, err = c.discovery.BulkUpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.BulkUpdateCandidateInputsRequest{MigrationId: "bulk",
		Selection: &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{Kind: "service", Metadata: map[string]string{"team": "search"}}},
		Inputs:    map[string]string{"target_version": "1.24"}, RemoveInputs: []string{"absent"}}))
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomesOf(res.Msg.Result); !slices.Equal(got, []string{"acme/b:DONE"}) {
		t.Fatalf("filter: %v", got)
	}
	for id, want := range map[string]string{"acme/a": "1.23", "acme/b": "1.24", "other/c": "1.23"} {
		got, err := c.discovery.GetCandidate(ctx, connect.NewRequest(&loomv1.GetCandidateRequest{MigrationId: "bulk", CandidateId: id}))
		if err != nil || got.Msg.Candidate.Inputs["target_version"] != want {
			t.Errorf("%s: %v %v, want %s", id, got, err, want)
		}
	}

	// Runs never started, and ids that are no Candidate, are refused as the
	// single actions refuse them.
	retried, err := c.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{MigrationId: "bulk", Selection: byIDs("acme/a", "ghost")}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := outcomesOf(retried.Msg.Result), []string{"acme/a:REFUSED:not_found:RUN_NOT_FOUND", "ghost:REFUSED:not_found:CANDIDATE_NOT_FOUND"}; !slices.Equal(got, want) {
		t.Fatalf("retry outcomes\n got %v\nwant %v", got, want)
	}
	cancelled, err := c.runs.BulkCancelRuns(ctx, connect.NewRequest(&loomv1.BulkCancelRunsRequest{MigrationId: "bulk",
		Selection: &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{IdPrefix: "acme/"}}, Reason: "wrong version"}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := outcomesOf(cancelled.Msg.Result), []string{"acme/a:REFUSED:not_found:RUN_NOT_FOUND", "acme/b:REFUSED:not_found:RUN_NOT_FOUND"}; !slices.Equal(got, want) {
		t.Fatalf("cancel outcomes\n got %v\nwant %v", got, want)
	}
	// A filter matching nothing is an empty answer, not an error.
	none, err := c.runs.BulkFinishReviews(ctx, connect.NewRequest(&loomv1.BulkFinishReviewsRequest{MigrationId: "bulk",
		Selection: &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{CurrentStep: "review"}}, StepName: "review",
		Outcome: loomv1.StepStatus_STEP_STATUS_COMPLETED}))
	if err != nil || none.Msg.Result.SelectedCount != 0 || len(none.Msg.Result.Outcomes) != 0 {
		t.Fatalf("an empty selection: %v %v", none, err)
	}
}
