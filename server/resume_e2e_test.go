package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"

	migratorv1 "github.com/loomhq/loom/gen/loom/migrator/v1"
	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/migratorsdk"
)

// A Migrator that dies with steps it accepted (no report, no goodbye) gets
// them back as soon as it starts again: its SDK asks Loom to dispatch its
// steps in progress again, and the Runs complete without waiting for their
// lease. Real Loom, Temporal and Redis; Migrators built on the SDK.
func TestAMigratorThatDiedGetsItsStepsBackWhenItStarts(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	spec := func(handle migratorsdk.StepHandler) migratorsdk.Spec {
		return migratorsdk.Spec{
			Migration: migratorsdk.Migration{ID: "resume", Name: "Resume", Steps: []migratorsdk.Step{{Name: "work", Type: "work"}}},
			Handlers:  map[string]migratorsdk.StepHandler{"work": handle},
			Discover: func(context.Context) ([]migratorsdk.Candidate, error) {
				return []migratorsdk.Candidate{{ID: "a", Kind: "service"}, {ID: "b", Kind: "service"}}, nil
			},
		}
	}
	serve := func(s migratorsdk.Spec) (stopServing func()) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m, err := migratorsdk.New(s, migratorsdk.Options{LoomURL: l.url, ListenAddr: lis.Addr().String(), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle(m.Handler())
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(lis) }()
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return func() { _ = hs.Close() }
	}

	// The first Migrator accepts both steps, then dies: its handlers never
	// report, its server goes away.
	accepted := make(chan string, 2)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	die := serve(spec(func(ctx context.Context, d *migratorsdk.Dispatch) error {
		accepted <- d.RunID
		<-hang
		return nil
	}))
	waitCandidates(t, l, "resume", 2)
	for _, c := range []string{"a", "b"} {
		if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "resume", CandidateId: c})); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		select {
		case <-accepted:
		case <-time.After(10 * time.Second):
			t.Fatal("the first Migrator did not get both steps")
		}
	}
	die()

	// Started again (elsewhere): both Runs complete within seconds, far
	// below the 10-minute lease.
	began := time.Now()
	serve(spec(func(ctx context.Context, d *migratorsdk.Dispatch) error { return d.Completed(ctx) }))
	for _, id := range []string{"resume__a", "resume__b"} {
		for l.getRun(t, id).GetStatus() != loomv1.RunStatus_RUN_STATUS_COMPLETED {
			if time.Since(began) > 20*time.Second {
				t.Fatalf("%s after the Migrator restarted: %v", id, l.getRun(t, id))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("both Runs completed %v after the Migrator started again", time.Since(began).Round(time.Millisecond))
	// The history says why the step was dispatched twice.
	run := l.getRun(t, "resume__a")
	if n := run.GetStepResults()[0].GetDispatchCount(); n != 2 {
		t.Errorf("dispatch count %d, want 2", n)
	}
}

func waitCandidates(t *testing.T, l *loom, migration string, n int64) {
	t.Helper()
	for began := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		res, err := l.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: migration, PageSize: 1}))
		if err == nil && res.Msg.GetTotalSize() >= n {
			return
		}
		if time.Since(began) > 10*time.Second {
			t.Fatalf("%d Candidates of %s did not arrive: %v", n, migration, err)
		}
	}
}

// A Run whose Migrator reports a lot continues as new on a real Temporal,
// and goes on where it stood: reports keep being answered across the
// handover, the next step comes, the Run completes.
func TestARunContinuesAsNewAndGoesOn(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	l.setup(t, w.migrator.url, "acme/chatty")
	if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/chatty", Inputs: map[string]string{"target_version": "1.23"},
	})); err != nil {
		t.Fatal(err)
	}
	d := w.nextDispatch()
	tc := w.temporal.GetDefaultClient()
	desc, err := tc.DescribeWorkflowExecution(ctx, d.RunId, "")
	if err != nil {
		t.Fatal(err)
	}
	firstRun := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	// Report until the workflow continues as new (at Temporal's suggestion,
	// a few thousand events, or at 1,000 actions), then a few more.
	currentRun := func() string {
		desc, err := tc.DescribeWorkflowExecution(ctx, d.RunId, "")
		if err != nil {
			t.Fatal(err)
		}
		return desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	}
	i := 0
	report := func() {
		l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_IN_PROGRESS, func(r *loomv1.ReportStepStatusRequest) { r.Message = fmt.Sprint("progress ", i) })
		i++
	}
	for currentRun() == firstRun {
		if i > 1500 {
			t.Fatal("1,500 reports and the workflow has not continued as new")
		}
		for range 25 {
			report()
		}
	}
	for range 5 {
		report()
	}
	l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_COMPLETED)
	review := w.nextDispatch()
	if review.Step.Name != "review" || review.Execution != d.Execution {
		t.Fatalf("after continuing as new: %v", review)
	}
	l.mustReport(t, review, loomv1.StepStatus_STEP_STATUS_COMPLETED)
	recordHistory(t, w, d.RunId)
	for began := time.Now(); l.getRun(t, d.RunId).GetStatus() != loomv1.RunStatus_RUN_STATUS_COMPLETED; time.Sleep(50 * time.Millisecond) {
		if time.Since(began) > 10*time.Second {
			t.Fatalf("the Run: %v", l.getRun(t, d.RunId))
		}
	}
	desc, err = tc.DescribeWorkflowExecution(ctx, d.RunId, "")
	if err != nil {
		t.Fatal(err)
	}
	if last := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(); last == firstRun {
		t.Fatal("the workflow never continued as new")
	}
	// Temporal suggests continuing as new at a few thousand events (the
	// hard limit is 51,200); so does a workflow run's 1,000th action.
	if n := desc.GetWorkflowExecutionInfo().GetHistoryLength(); n > 6000 {
		t.Errorf("the last workflow run's history has %d events", n)
	}
}

// A Run whose workflow ended without recording it (an older Loom let a
// workflow fail when Redis was down; here it is terminated) is found by
// ReconcileRuns and shown as it ended, with the reason, instead of running
// for ever; its Candidate can start again. Running Runs are left alone.
func TestReconcileShowsRunsWhoseWorkflowEndedAsTheyEnded(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	l.setup(t, w.migrator.url, "acme/dead", "acme/alive")
	for _, c := range []string{"acme/dead", "acme/alive"} {
		if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
			MigrationId: "go-upgrade", CandidateId: c, Inputs: map[string]string{"target_version": "1.23"},
		})); err != nil {
			t.Fatal(err)
		}
	}
	var dead *migratorv1.ExecuteStepRequest
	for range 2 {
		if d := w.nextDispatch(); d.Candidate.Id == "acme/dead" {
			dead = d
		}
	}
	if err := w.temporal.GetDefaultClient().TerminateWorkflow(ctx, dead.RunId, "", "as a past Loom's failed save did"); err != nil {
		t.Fatal(err)
	}
	// The view still says running; the Migrator's report is refused with
	// what to do.
	if got := l.getRun(t, dead.RunId).GetStatus(); got != loomv1.RunStatus_RUN_STATUS_RUNNING {
		t.Fatalf("before reconciling: %v", got)
	}
	if _, err := l.report(t, dead, loomv1.StepStatus_STEP_STATUS_OPEN, func(r *loomv1.ReportStepStatusRequest) { r.PrUrl = "https://x/1" }); err == nil ||
		!strings.Contains(err.Error(), "ReconcileRuns") {
		t.Fatalf("a report on the ended Run: %v", err)
	}
	res, err := l.runs.ReconcileRuns(ctx, connect.NewRequest(&loomv1.ReconcileRunsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.GetChecked() != 2 || len(res.Msg.GetFixed()) != 1 || res.Msg.GetFixed()[0].GetRunId() != dead.RunId ||
		res.Msg.GetFixed()[0].GetStatus() != loomv1.RunStatus_RUN_STATUS_CANCELLED || !strings.Contains(res.Msg.GetFixed()[0].GetReason(), "terminated") {
		t.Fatalf("reconcile answered %v", res.Msg)
	}
	run := l.getRun(t, dead.RunId)
	if run.GetStatus() != loomv1.RunStatus_RUN_STATUS_CANCELLED || !strings.Contains(run.GetCancelReason(), "start it again") {
		t.Fatalf("the Run after reconciling: %v", run)
	}
	if got := l.getRun(t, "go-upgrade__acme/alive").GetStatus(); got != loomv1.RunStatus_RUN_STATUS_RUNNING {
		t.Fatalf("the running Run was touched: %v", got)
	}
	if c := l.candidate(t, "acme/dead"); c.GetStatus() != loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED {
		t.Fatalf("the Candidate: %v", c.GetStatus())
	}
	// Nothing left to fix; and the Candidate starts again.
	if res, err := l.runs.ReconcileRuns(ctx, connect.NewRequest(&loomv1.ReconcileRunsRequest{MigrationId: "go-upgrade"})); err != nil || len(res.Msg.GetFixed()) != 0 {
		t.Fatalf("a second pass: %v, %v", res, err)
	}
	if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "go-upgrade", CandidateId: "acme/dead"})); err != nil {
		t.Fatalf("start again: %v", err)
	}
	if d := w.nextDispatch(); d.Candidate.Id != "acme/dead" || d.Execution != dead.Execution+1 {
		t.Fatalf("the new execution's dispatch: %v", d)
	}
}

// A view that fell behind the engine (a Redis that crashed before syncing
// its last writes: here the write is undone by hand) is repaired by the
// next repeated report, which finds the engine ahead of it.
func TestARepeatedReportRepairsAViewBehind(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	l.setup(t, w.migrator.url, "acme/behind")
	if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/behind", Inputs: map[string]string{"target_version": "1.23"},
	})); err != nil {
		t.Fatal(err)
	}
	d := w.nextDispatch()
	rdb := redis.NewClient(&redis.Options{Addr: w.redis.Addr()})
	defer rdb.Close()
	key := "loom:{go-upgrade}:run:acme/behind"
	var before map[string]string
	for began := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if before = rdb.HGetAll(ctx, key).Val(); strings.Contains(before["view"], "in_progress") {
			break
		}
		if time.Since(began) > 5*time.Second {
			t.Fatalf("the view never showed the step in progress: %v", before)
		}
	}
	opened := func(r *loomv1.ReportStepStatusRequest) { r.PrUrl = "https://git.example/pr/7" }
	l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_OPEN, opened)
	for began := time.Now(); l.getRun(t, d.RunId).GetCurrentStepStatus() != loomv1.StepStatus_STEP_STATUS_OPEN; time.Sleep(20 * time.Millisecond) {
		if time.Since(began) > 5*time.Second {
			t.Fatalf("the view never showed the step open: %v", l.getRun(t, d.RunId))
		}
	}
	// The write of the report is lost.
	if err := rdb.HSet(ctx, key, "view", before["view"], "seq", before["seq"], "step", before["step"], "ver", before["ver"]).Err(); err != nil {
		t.Fatal(err)
	}
	if got := l.getRun(t, d.RunId).GetCurrentStepStatus(); got != loomv1.StepStatus_STEP_STATUS_IN_PROGRESS {
		t.Fatalf("the view was not set back: %v", got)
	}
	// The Migrator repeats itself: the view is repaired.
	if res := l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_OPEN, opened); res.GetChanged() {
		t.Fatal("the repeat changed something")
	}
	run := l.getRun(t, d.RunId)
	if run.GetCurrentStepStatus() != loomv1.StepStatus_STEP_STATUS_OPEN || run.GetStepResults()[0].GetPrUrl() != "https://git.example/pr/7" {
		t.Fatalf("the view after the repeat: %v", run)
	}
}
