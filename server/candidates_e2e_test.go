package server_test

import (
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
)

// The Candidate table's API follows a real Run: its current step, step
// status and last change appear in ListCandidates' filters, orders and
// progress as the Run moves on.
func TestCandidateTableFollowsTheRun(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	l.setup(t, w.migrator.url, "acme/billing", "acme/payments", "acme/search")

	// list returns the ids listed by req (one page) and the progress of each.
	list := func(req *loomv1.ListCandidatesRequest) ([]string, map[string]*loomv1.CandidateProgress, int64) {
		t.Helper()
		req.MigrationId = "go-upgrade"
		res, err := l.discovery.ListCandidates(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range res.Msg.Candidates {
			ids = append(ids, c.Id)
		}
		return ids, res.Msg.Progress, res.Msg.TotalSize
	}
	// eventually waits until req lists exactly want, and counts as many when
	// it asks for the whole listing (the run view is written by the Run's
	// workflow, after the call that changed it).
	eventually := func(req *loomv1.ListCandidatesRequest, want ...string) map[string]*loomv1.CandidateProgress {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, progress, total := list(req)
			if slices.Equal(got, want) && (req.PageSize != 0 || total == int64(len(want))) {
				return progress
			}
			if time.Now().After(deadline) {
				t.Fatalf("list %v = %v (total %d), want %v", req, got, total, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/payments", Inputs: map[string]string{"target_version": "1.23"},
	})); err != nil {
		t.Fatal(err)
	}
	d := w.nextDispatch()
	l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_OPEN)
	open := loomv1.StepStatus_STEP_STATUS_OPEN
	progress := eventually(&loomv1.ListCandidatesRequest{CurrentStep: "bump-go", CurrentStepStatus: open}, "acme/payments")
	if p := progress["acme/payments"]; p.GetRunStatus() != loomv1.RunStatus_RUN_STATUS_RUNNING || p.GetCurrentStep() != "bump-go" || p.GetCurrentStepStatus() != open {
		t.Errorf("progress %v", p)
	}
	eventually(&loomv1.ListCandidatesRequest{CurrentStep: "review"})
	// The running Candidate is the furthest along and the latest changed.
	eventually(&loomv1.ListCandidatesRequest{OrderBy: loomv1.CandidateOrder_CANDIDATE_ORDER_CURRENT_STEP, Descending: true},
		"acme/payments", "acme/search", "acme/billing")
	eventually(&loomv1.ListCandidatesRequest{OrderBy: loomv1.CandidateOrder_CANDIDATE_ORDER_LAST_CHANGE, Descending: true, PageSize: 1},
		"acme/payments")

	// The PR merges: the Run moves on to review.
	l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_MERGED)
	review := w.nextDispatch()
	if review.Step.Name != "review" {
		t.Fatalf("dispatched %s", review.Step.Name)
	}
	eventually(&loomv1.ListCandidatesRequest{CurrentStep: "review", Status: loomv1.CandidateStatus_CANDIDATE_STATUS_RUNNING, IdPrefix: "acme/"}, "acme/payments")
	eventually(&loomv1.ListCandidatesRequest{CurrentStep: "bump-go"})
	eventually(&loomv1.ListCandidatesRequest{CurrentStepStatus: open})
	if c := l.candidate(t, "acme/payments"); c.LastChangeTime == nil || c.LastChangeTime.AsTime().Before(c.UpdateTime.AsTime()) {
		t.Errorf("last change %v, update %v", c.LastChangeTime, c.UpdateTime)
	}
}
