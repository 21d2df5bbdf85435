package server_test

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	migratorv1 "github.com/loomhq/loom/gen/loom/migrator/v1"
	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/server"
)

// bulkWorld is a Loom with authentication on (so actions are recorded with
// the operator's name), the Migration go-upgrade with the given
// Candidates, and clients as the operator and as its Migrator.
func bulkWorld(t *testing.T, candidates ...string) (w *world, operator, migrator *loom, history loomv1connect.HistoryServiceClient) {
	t.Helper()
	tokensFile, keysFile, tokens := credentials(t)
	w = newWorld(t)
	w.configure = func(c *server.Config) {
		c.Security = server.SecurityConfig{TokensFile: tokensFile, KeysFile: keysFile, AllowMigratorNets: []string{"127.0.0.0/8"}}
	}
	l := w.startLoom()
	operator, migrator = l.as(tokens["operator"]), l.as(tokens["migrator"])
	migrator.setup(t, w.migrator.url, candidates...)
	history = loomv1connect.NewHistoryServiceClient(http.DefaultClient, l.url, migratorsdk.WithToken(tokens["operator"]))
	return w, operator, migrator, history
}

// signed makes a report carry its dispatch's callback token.
func signed(d *migratorv1.ExecuteStepRequest) func(*loomv1.ReportStepStatusRequest) {
	return func(r *loomv1.ReportStepStatusRequest) { r.CallbackToken = d.CallbackToken }
}

// eventually waits until ok holds (the run views are written by the Runs'
// workflows, just after the calls that changed them).
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("30 s on, still not: %s", what)
		}
	}
}

// outcomes renders a bulk result as "id:outcome[:code:reason]" items.
func outcomes(r *loomv1.BulkResult) []string {
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

func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// One request retries the failed steps of 100 Runs: each moves to its next
// attempt, is dispatched again, and its history says who retried it.
func TestBulkRetryOf100FailedSteps(t *testing.T) {
	const n = 100
	var ids []string
	for i := range n {
		ids = append(ids, "svc-"+string(rune('a'+i/26%26))+string(rune('a'+i%26)))
	}
	w, operator, migrator, history := bulkWorld(t, ids...)
	parallel(n, func(i int) {
		if _, err := operator.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
			MigrationId: "go-upgrade", CandidateId: ids[i], Inputs: map[string]string{"target_version": "1.23"},
		})); err != nil {
			t.Error(err)
		}
	})
	first := make([]*migratorv1.ExecuteStepRequest, n)
	for i := range first {
		first[i] = w.nextDispatch()
	}
	parallel(n, func(i int) {
		if _, err := migrator.report(t, first[i], loomv1.StepStatus_STEP_STATUS_FAILED, signed(first[i]),
			func(r *loomv1.ReportStepStatusRequest) { r.Message = "go mod tidy failed" }); err != nil {
			t.Error(err)
		}
	})
	failed := loomv1.StepStatus_STEP_STATUS_FAILED
	eventually(t, "100 Runs failed in the views", func() bool {
		res, err := operator.runs.ListRuns(ctx, connect.NewRequest(&loomv1.ListRunsRequest{MigrationId: "go-upgrade", CurrentStepStatus: failed}))
		return err == nil && res.Msg.TotalSize == n
	})

	start := time.Now()
	res, err := operator.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{
		MigrationId: "go-upgrade",
		Selection:   &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{CurrentStepStatus: failed}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("retried %d failed steps in one request in %v", n, time.Since(start))
	r := res.Msg.Result
	if r.SelectedCount != n || r.DoneCount != n || r.RefusedCount != 0 || r.NotAttemptedCount != 0 {
		t.Fatalf("result counts: %d selected, %d done, %d refused, %d not attempted; %v", r.SelectedCount, r.DoneCount, r.RefusedCount, r.NotAttemptedCount, outcomes(r))
	}
	for i, o := range r.Outcomes {
		if o.CandidateId != ids[i] || o.Outcome != loomv1.BulkOutcome_BULK_OUTCOME_DONE {
			t.Fatalf("outcome %d: %v, want %s done (id order)", i, o, ids[i])
		}
	}
	// Every Run is dispatched again, at attempt 2.
	again := map[string]*migratorv1.ExecuteStepRequest{}
	for range n {
		d := w.nextDispatch()
		if d.Attempt != 2 || d.Step.Name != "bump-go" {
			t.Fatalf("dispatch after the bulk retry: %v", d)
		}
		again[d.Candidate.Id] = d
	}
	if len(again) != n {
		t.Fatalf("%d Runs dispatched again, want %d", len(again), n)
	}
	eventually(t, "100 Runs at attempt 2 in the views", func() bool {
		res, err := operator.runs.ListRuns(ctx, connect.NewRequest(&loomv1.ListRunsRequest{MigrationId: "go-upgrade",
			CurrentStepStatus: loomv1.StepStatus_STEP_STATUS_IN_PROGRESS, PageSize: n}))
		if err != nil || res.Msg.TotalSize != n {
			return false
		}
		for _, run := range res.Msg.Runs {
			if s := run.StepResults[0]; s.Attempt != 2 || s.Message != "" {
				return false
			}
		}
		return true
	})
	ev, err := history.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "go-upgrade",
		Kinds: []loomv1.EventKind{loomv1.EventKind_EVENT_KIND_STEP_RETRIED}, PageSize: 2 * n}))
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Msg.Events) != n || ev.Msg.Events[0].Actor != "alice" || ev.Msg.Events[0].Details["failed_attempt"] != "1" {
		t.Fatalf("%d step_retried events, the first %v", len(ev.Msg.Events), ev.Msg.Events[0])
	}

	// Sent again, it retries nothing: no step is failed any more.
	res, err = operator.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{
		MigrationId: "go-upgrade", Selection: &loomv1.CandidateSelection{CandidateIds: ids},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Msg.Result; r.RefusedCount != n || r.Outcomes[0].Reason != loomv1.ErrorReason_TRANSITION_NOT_ALLOWED.String() || r.Outcomes[0].Metadata["current_attempt"] != "2" {
		t.Fatalf("the same retry again: %v", outcomes(r)[:3])
	}
	// A marker: one step failed and retried again is the next dispatch, with
	// nothing from the refused retry before it.
	d := again[ids[0]]
	if _, err := migrator.report(t, d, failed, signed(d)); err != nil {
		t.Fatal(err)
	}
	res, err = operator.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{
		MigrationId: "go-upgrade", Selection: &loomv1.CandidateSelection{CandidateIds: ids[:1]},
	}))
	if err != nil || res.Msg.Result.DoneCount != 1 {
		t.Fatalf("the marker's retry: %v, %v", res, err)
	}
	if d := w.nextDispatch(); d.Candidate.Id != ids[0] || d.Attempt != 3 {
		t.Fatalf("unexpected dispatch %v; want the marker, %s at attempt 3", d, ids[0])
	}
	w.noDispatch()
}

// A bulk action on a selection where some Candidates are refused reports
// each outcome, acts on the others, and records who did it; every bulk
// action, by ids and by filter.
func TestBulkActionsOnAMixedSelection(t *testing.T) {
	started := []string{"failed", "working", "cancelled", "review-1", "review-2", "open"}
	w, operator, migrator, history := bulkWorld(t, append(slices.Clone(started), "idle")...)
	for _, id := range started {
		if _, err := operator.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
			MigrationId: "go-upgrade", CandidateId: id, Inputs: map[string]string{"target_version": "1.23"},
		})); err != nil {
			t.Fatal(err)
		}
	}
	// Each Run's first dispatch, by Candidate; then bring each where it
	// should stand.
	d := map[string]*migratorv1.ExecuteStepRequest{}
	for range started {
		next := w.nextDispatch()
		d[next.Candidate.Id] = next
	}
	report := func(id string, status loomv1.StepStatus) {
		t.Helper()
		migrator.mustReport(t, d[id], status, signed(d[id]))
	}
	report("failed", loomv1.StepStatus_STEP_STATUS_FAILED)
	report("open", loomv1.StepStatus_STEP_STATUS_OPEN)
	if _, err := operator.runs.CancelRun(ctx, connect.NewRequest(&loomv1.CancelRunRequest{RunId: "go-upgrade__cancelled"})); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"review-1", "review-2"} {
		report(id, loomv1.StepStatus_STEP_STATUS_MERGED)
		d[id] = w.dispatchOf(func(x *migratorv1.ExecuteStepRequest) bool { return x.Candidate.Id == id })
		report(id, loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW)
	}
	at := func(id string, step string, status loomv1.StepStatus) func() bool {
		return func() bool {
			r, err := operator.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: "go-upgrade__" + id}))
			return err == nil && r.Msg.Run.CurrentStep == step && r.Msg.Run.CurrentStepStatus == status
		}
	}
	eventually(t, "failed failed", at("failed", "bump-go", loomv1.StepStatus_STEP_STATUS_FAILED))
	eventually(t, "open open", at("open", "bump-go", loomv1.StepStatus_STEP_STATUS_OPEN))
	eventually(t, "review-1 awaiting review", at("review-1", "review", loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW))
	eventually(t, "review-2 awaiting review", at("review-2", "review", loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW))

	// Retry: one is done, each of the others refused with its reason.
	retried, err := operator.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{MigrationId: "go-upgrade",
		Selection: &loomv1.CandidateSelection{CandidateIds: []string{"failed", "working", "idle", "cancelled", "ghost"}}}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"failed:DONE",
		"working:REFUSED:failed_precondition:TRANSITION_NOT_ALLOWED",
		"idle:REFUSED:not_found:RUN_NOT_FOUND",
		"cancelled:REFUSED:failed_precondition:RUN_NOT_RUNNING",
		"ghost:REFUSED:not_found:CANDIDATE_NOT_FOUND",
	}
	if got := outcomes(retried.Msg.Result); !slices.Equal(got, want) {
		t.Fatalf("retry outcomes\n got %v\nwant %v", got, want)
	}
	if r := retried.Msg.Result; r.DoneCount != 1 || r.RefusedCount != 4 {
		t.Fatalf("counts %v", r)
	}
	if o := retried.Msg.Result.Outcomes[1]; o.Metadata["current_status"] != "in_progress" || o.Metadata["current_step"] != "bump-go" || o.Message == "" {
		t.Errorf("the refusal says where the step stands: %v", o)
	}
	if next := w.dispatchOf(func(x *migratorv1.ExecuteStepRequest) bool { return x.Candidate.Id == "failed" }); next.Attempt != 2 {
		t.Fatalf("retried: %v", next)
	}

	// Finish the reviews found by filter; sent again, they are refused, and
	// no other step is finished in their place.
	finish := func(sel *loomv1.CandidateSelection) *loomv1.BulkResult {
		t.Helper()
		res, err := operator.runs.BulkFinishReviews(ctx, connect.NewRequest(&loomv1.BulkFinishReviewsRequest{MigrationId: "go-upgrade",
			Selection: sel, StepName: "review", Outcome: loomv1.StepStatus_STEP_STATUS_COMPLETED, Note: "canaries healthy"}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.Result
	}
	reviews := finish(&loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{CurrentStep: "review", CurrentStepStatus: loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW}})
	if got := outcomes(reviews); !slices.Equal(got, []string{"review-1:DONE", "review-2:DONE"}) {
		t.Fatalf("finish reviews: %v", got)
	}
	for _, id := range []string{"review-1", "review-2"} {
		eventually(t, id+" completed", func() bool {
			c, err := operator.discovery.GetCandidate(ctx, connect.NewRequest(&loomv1.GetCandidateRequest{MigrationId: "go-upgrade", CandidateId: id}))
			return err == nil && c.Msg.Candidate.Status == loomv1.CandidateStatus_CANDIDATE_STATUS_COMPLETED
		})
	}
	if s := operator.getRun(t, "go-upgrade__review-1").StepResults[1]; s.Message != "canaries healthy" || s.Actor != "alice" {
		t.Errorf("the review: %v", s)
	}
	again := finish(&loomv1.CandidateSelection{CandidateIds: []string{"review-1", "review-2"}})
	if got := outcomes(again); !slices.Equal(got, []string{"review-1:REFUSED:failed_precondition:RUN_NOT_RUNNING", "review-2:REFUSED:failed_precondition:RUN_NOT_RUNNING"}) {
		t.Fatalf("the same reviews again: %v", got)
	}

	// Mark merged: only the Run whose step is open.
	merged, err := operator.runs.BulkMarkStepsMerged(ctx, connect.NewRequest(&loomv1.BulkMarkStepsMergedRequest{MigrationId: "go-upgrade",
		Selection: &loomv1.CandidateSelection{CandidateIds: []string{"open", "failed"}}, StepName: "bump-go", Note: "merged by hand"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(merged.Msg.Result); !slices.Equal(got, []string{"open:DONE", "failed:REFUSED:failed_precondition:TRANSITION_NOT_ALLOWED"}) {
		t.Fatalf("mark merged: %v", got)
	}
	if next := w.dispatchOf(func(x *migratorv1.ExecuteStepRequest) bool { return x.Candidate.Id == "open" }); next.Step.Name != "review" {
		t.Fatalf("after the merge: %v", next)
	}

	// Update the inputs of every Candidate, then cancel every running Run.
	inputs, err := operator.discovery.BulkUpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.BulkUpdateCandidateInputsRequest{MigrationId: "go-upgrade",
		Selection: &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{}}, Inputs: map[string]string{"target_version": "1.24"}}))
	if err != nil || inputs.Msg.Result.DoneCount != 7 {
		t.Fatalf("inputs: %v %v", inputs, err)
	}
	eventually(t, "open at review", at("open", "review", loomv1.StepStatus_STEP_STATUS_IN_PROGRESS))
	cancelled, err := operator.runs.BulkCancelRuns(ctx, connect.NewRequest(&loomv1.BulkCancelRunsRequest{MigrationId: "go-upgrade",
		Selection: &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{Status: loomv1.CandidateStatus_CANDIDATE_STATUS_RUNNING}},
		Reason:    "wrong target version"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(cancelled.Msg.Result); !slices.Equal(got, []string{"failed:DONE", "open:DONE", "working:DONE"}) {
		t.Fatalf("cancel: %v", got)
	}
	for _, id := range []string{"failed", "open", "working"} {
		run := operator.getRun(t, "go-upgrade__"+id)
		if c := operator.candidate(t, id); run.Status != loomv1.RunStatus_RUN_STATUS_CANCELLED || run.CancelReason != "wrong target version" ||
			c.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED || c.Inputs["target_version"] != "1.24" {
			t.Errorf("%s after the cancel: run %v, candidate %v", id, run.Status, c)
		}
	}
	ev, err := history.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "go-upgrade", CandidateId: "working",
		Kinds: []loomv1.EventKind{loomv1.EventKind_EVENT_KIND_RUN_CANCELLED}}))
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Msg.Events) != 1 || ev.Msg.Events[0].Actor != "alice" || ev.Msg.Events[0].Details["reason"] != "wrong target version" {
		t.Fatalf("the cancel in the history: %v", ev.Msg.Events)
	}

	// A Migrator may not act in bulk, even on its own Migration.
	_, err = migrator.runs.BulkCancelRuns(ctx, connect.NewRequest(&loomv1.BulkCancelRunsRequest{MigrationId: "go-upgrade",
		Selection: &loomv1.CandidateSelection{CandidateIds: []string{"idle"}}}))
	wantCode(t, err, connect.CodePermissionDenied, "")
}
