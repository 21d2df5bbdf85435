package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.temporal.io/server/temporaltest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	migratorv1 "github.com/loomhq/loom/gen/loom/migrator/v1"
	"github.com/loomhq/loom/gen/loom/migrator/v1/migratorv1connect"
	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server"
	"github.com/loomhq/loom/server/internal/redistest"
)

// world is a Temporal server in-process, a real Redis, and the Migrator the
// test plays, shared by the Loom servers a test starts (and restarts).
type world struct {
	t        *testing.T
	temporal *temporaltest.TestServer
	redis    *redistest.Server
	migrator *testMigrator
	// configure, when set, adjusts the configuration of the Looms started
	// (authentication, the console...).
	configure func(*server.Config)
	// log receives the Looms' logs.
	log *slog.Logger
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{
		t:        t,
		temporal: temporaltest.NewServer(temporaltest.WithT(t)),
		redis:    redistest.Start(t),
		migrator: newTestMigrator(),
	}
	// The Looms' warnings and errors are kept and shown when the test fails:
	// an "internal error" answer alone says nothing about its cause.
	var logs syncBuffer
	w.log = slog.New(recordRefusals{slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Loom's warnings and errors:\n%s", logs.String())
		}
	})
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.migrator.handler.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)
	w.migrator.url = srv.URL
	return w
}

// loom is one running Loom server and clients of its API.
type loom struct {
	url       string
	adminURL  string
	stop      func()
	registry  loomv1connect.RegistryServiceClient
	discovery loomv1connect.DiscoveryServiceClient
	runs      loomv1connect.RunServiceClient
	events    loomv1connect.EventServiceClient
	// token is the bearer token of the clients; empty without one.
	token string
}

func (w *world) startLoom() *loom {
	w.t.Helper()
	cfg := server.DefaultConfig()
	cfg.Redis.Addrs = []string{w.redis.Addr()}
	cfg.Temporal.HostPort = w.temporal.GetFrontendHostPort()
	cfg.Temporal.Namespace = w.temporal.GetDefaultNamespace()
	cfg.DispatchWindow = 20 * time.Second
	cfg.PreviewTimeout = 3 * time.Second
	cfg.Security.Insecure = true // trust has its own end-to-end tests
	cfg.Security.AllowMigratorNets = []string{"127.0.0.0/8"}
	if w.configure != nil {
		w.configure(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, w.log)
	if err != nil {
		w.t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.t.Fatal(err)
	}
	admin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l, admin) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				w.t.Errorf("serve: %v", err)
			}
			_ = srv.Close()
		})
	}
	w.t.Cleanup(stop)
	url := "http://" + l.Addr().String()
	return &loom{
		url:       url,
		adminURL:  "http://" + admin.Addr().String(),
		stop:      stop,
		registry:  loomv1connect.NewRegistryServiceClient(http.DefaultClient, url),
		discovery: loomv1connect.NewDiscoveryServiceClient(http.DefaultClient, url),
		runs:      loomv1connect.NewRunServiceClient(http.DefaultClient, url),
		events:    loomv1connect.NewEventServiceClient(http.DefaultClient, url),
	}
}

// testMigrator is a Migrator served over Connect that hands every dispatch
// to the test.
type testMigrator struct {
	url        string
	handler    http.Handler
	dispatches chan *migratorv1.ExecuteStepRequest
	mu         sync.Mutex
	down       bool
}

func newTestMigrator() *testMigrator {
	m := &testMigrator{dispatches: make(chan *migratorv1.ExecuteStepRequest, 100)}
	_, h := migratorv1connect.NewMigratorServiceHandler(m)
	m.handler = h
	return m
}

func (m *testMigrator) setDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
}

func (m *testMigrator) isDown() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down
}

func (m *testMigrator) ExecuteStep(_ context.Context, req *connect.Request[migratorv1.ExecuteStepRequest]) (*connect.Response[migratorv1.ExecuteStepResponse], error) {
	if m.isDown() {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("migrator restarting"))
	}
	m.dispatches <- req.Msg
	return connect.NewResponse(&migratorv1.ExecuteStepResponse{}), nil
}

func (m *testMigrator) PreviewRun(_ context.Context, req *connect.Request[migratorv1.PreviewRunRequest]) (*connect.Response[migratorv1.PreviewRunResponse], error) {
	if m.isDown() {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("migrator restarting"))
	}
	var res migratorv1.PreviewRunResponse
	for _, s := range req.Msg.Steps {
		res.Steps = append(res.Steps, &loomv1.StepPreview{StepName: s.Name, Diffs: []*loomv1.FileDiff{{
			Repo: req.Msg.Candidate.Id, Path: "go.mod", Before: "go 1.21\n", After: "go " + req.Msg.Inputs["target_version"] + "\n",
			Status: loomv1.FileDiffStatus_FILE_DIFF_STATUS_MODIFIED,
		}}})
	}
	return connect.NewResponse(&res), nil
}

func (w *world) nextDispatch() *migratorv1.ExecuteStepRequest {
	w.t.Helper()
	select {
	case d := <-w.migrator.dispatches:
		return d
	case <-time.After(30 * time.Second):
		w.t.Fatal("no dispatch within 30s")
		return nil
	}
}

// noDispatch checks that no dispatch has reached the Migrator. Call it once
// something shows that Loom has done what would have dispatched (a later
// dispatch, a failed try): it does not wait.
func (w *world) noDispatch() {
	w.t.Helper()
	select {
	case d := <-w.migrator.dispatches:
		w.t.Fatalf("unexpected dispatch %v", d)
	default:
	}
}

var ctx = context.Background()

func (l *loom) setup(t *testing.T, migratorURL string, candidates ...string) {
	t.Helper()
	_, err := l.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: &loomv1.Migration{
		Id:   "go-upgrade",
		Name: "Upgrade Go",
		Steps: []*loomv1.StepDefinition{
			{Name: "bump-go", Type: "open-pr", Config: map[string]string{"file": "go.mod"}},
			{Name: "review", Type: "manual-review"},
		},
		RequiredInputs: []*loomv1.InputDefinition{{Name: "target_version"}},
		MigratorUrl:    migratorURL,
	}}))
	if err != nil {
		t.Fatal(err)
	}
	var cands []*loomv1.Candidate
	for _, id := range candidates {
		cands = append(cands, &loomv1.Candidate{Id: id, Kind: "service", Metadata: map[string]string{"repo": id}})
	}
	if _, err := l.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{MigrationId: "go-upgrade", Candidates: cands})); err != nil {
		t.Fatal(err)
	}
}

func (l *loom) report(t *testing.T, d *migratorv1.ExecuteStepRequest, status loomv1.StepStatus, mutate ...func(*loomv1.ReportStepStatusRequest)) (*loomv1.ReportStepStatusResponse, error) {
	t.Helper()
	req := &loomv1.ReportStepStatusRequest{RunId: d.RunId, Execution: d.Execution, StepName: d.Step.Name, Attempt: d.Attempt, Status: status}
	if status == loomv1.StepStatus_STEP_STATUS_OPEN {
		req.PrUrl = "https://git.example/acme/payments/pull/1"
	}
	for _, f := range mutate {
		f(req)
	}
	res, err := l.events.ReportStepStatus(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

func (l *loom) mustReport(t *testing.T, d *migratorv1.ExecuteStepRequest, status loomv1.StepStatus, mutate ...func(*loomv1.ReportStepStatusRequest)) *loomv1.ReportStepStatusResponse {
	t.Helper()
	res, err := l.report(t, d, status, mutate...)
	if err != nil {
		t.Fatalf("report %s of %s#%d: %v", status, d.Step.Name, d.Attempt, err)
	}
	return res
}

func (l *loom) getRun(t *testing.T, id string) *loomv1.Run {
	t.Helper()
	res, err := l.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: id}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.Run
}

func (l *loom) candidate(t *testing.T, id string) *loomv1.Candidate {
	t.Helper()
	res, err := l.discovery.GetCandidate(ctx, connect.NewRequest(&loomv1.GetCandidateRequest{MigrationId: "go-upgrade", CandidateId: id}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.Candidate
}

// wantCode fails t unless err has the code and, when one is given, the
// ErrorInfo reason (a loomv1.ErrorReason, or its name).
func wantCode[R string | loomv1.ErrorReason](t *testing.T, err error, code connect.Code, want R) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("got %v, want %v", err, code)
	}
	reason := fmt.Sprint(want)
	if reason == "" || reason == loomv1.ErrorReason_ERROR_REASON_UNSPECIFIED.String() {
		return
	}
	var cerr *connect.Error
	errors.As(err, &cerr)
	for _, d := range cerr.Details() {
		if v, _ := d.Value(); v != nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok && info.Reason == reason {
				return
			}
		}
	}
	t.Fatalf("error %v has no ErrorInfo with reason %s", err, reason)
}

func TestRunFromStartToCompletion(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	l.setup(t, w.migrator.url, "acme/payments")
	const runID = "go-upgrade__acme/payments"

	prev, err := l.runs.PreviewRun(ctx, connect.NewRequest(&loomv1.PreviewRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/payments", Inputs: map[string]string{"target_version": "1.23"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(prev.Msg.Steps) != 2 || prev.Msg.Steps[0].Diffs[0].After != "go 1.23\n" {
		t.Fatalf("preview %v", prev.Msg)
	}
	if c := l.candidate(t, "acme/payments"); c.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED || len(c.Inputs) != 0 {
		t.Fatalf("preview changed the candidate: %v", c)
	}

	_, err = l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "go-upgrade", CandidateId: "acme/payments"}))
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_MISSING_INPUTS)
	_, err = l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "go-upgrade", CandidateId: "nobody"}))
	wantCode(t, err, connect.CodeNotFound, loomv1.ErrorReason_CANDIDATE_NOT_FOUND)

	started, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/payments", Inputs: map[string]string{"target_version": "1.23"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if started.Msg.Run.Id != runID || started.Msg.Run.Execution != 1 || started.Msg.Run.Status != loomv1.RunStatus_RUN_STATUS_RUNNING {
		t.Fatalf("started %v", started.Msg.Run)
	}
	if c := l.candidate(t, "acme/payments"); c.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_RUNNING || c.Inputs["target_version"] != "1.23" {
		t.Fatalf("candidate after start: %v", c)
	}
	_, err = l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "go-upgrade", CandidateId: "acme/payments"}))
	wantCode(t, err, connect.CodeAlreadyExists, loomv1.ErrorReason_CANDIDATE_RUNNING)

	// Watch the whole Run from the start, as a browser would.
	watch, err := l.runs.WatchRun(ctx, connect.NewRequest(&loomv1.WatchRunRequest{RunId: runID}))
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan []*loomv1.Run, 1)
	go func() {
		var runs []*loomv1.Run
		for watch.Receive() {
			if r := watch.Msg().GetRun(); r != nil {
				runs = append(runs, r)
			}
		}
		seen <- runs
	}()

	d := w.nextDispatch()
	if d.RunId != runID || d.Execution != 1 || d.Attempt != 1 || d.Step.Name != "bump-go" || d.StepIndex != 0 ||
		d.Step.Config["file"] != "go.mod" || d.Inputs["target_version"] != "1.23" || d.Candidate.Metadata["repo"] != "acme/payments" {
		t.Fatalf("first dispatch %v", d)
	}
	l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_IN_PROGRESS, func(r *loomv1.ReportStepStatusRequest) { r.Message = "cloning" })
	opened := l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_OPEN, func(r *loomv1.ReportStepStatusRequest) {
		r.Metadata = map[string]string{"branch": "loom/bump-go"}
	})
	if !opened.Changed || opened.Step.PrUrl == "" || opened.Step.Status != loomv1.StepStatus_STEP_STATUS_OPEN {
		t.Fatalf("open answered %v", opened)
	}
	if dup := l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_OPEN, func(r *loomv1.ReportStepStatusRequest) {
		r.Metadata = map[string]string{"branch": "loom/bump-go"}
	}); dup.Changed {
		t.Fatal("a duplicate report changed the step")
	}
	_, err = l.report(t, d, loomv1.StepStatus_STEP_STATUS_COMPLETED)
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_TRANSITION_NOT_ALLOWED)
	if r := l.getRun(t, runID); r.CurrentStep != "bump-go" || r.CurrentStepStatus != loomv1.StepStatus_STEP_STATUS_OPEN || r.StepResults[0].Metadata["branch"] != "loom/bump-go" {
		t.Fatalf("run while open: %v", r)
	}
	l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_MERGED)

	d2 := w.nextDispatch()
	if d2.Step.Name != "review" || d2.StepIndex != 1 || d2.Attempt != 1 {
		t.Fatalf("second dispatch %v", d2)
	}
	// A late duplicate of the merged step is harmless.
	if dup := l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_MERGED); dup.Changed {
		t.Fatal("late duplicate changed something")
	}
	l.mustReport(t, d2, loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW, func(r *loomv1.ReportStepStatusRequest) { r.Message = "check the canary" })
	_, err = l.runs.FinishReview(ctx, connect.NewRequest(&loomv1.FinishReviewRequest{RunId: runID, StepName: "review", Attempt: 2, Outcome: loomv1.StepStatus_STEP_STATUS_COMPLETED}))
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_STALE_ATTEMPT)
	done, err := l.runs.FinishReview(ctx, connect.NewRequest(&loomv1.FinishReviewRequest{
		RunId: runID, StepName: "review", Attempt: 1, Outcome: loomv1.StepStatus_STEP_STATUS_COMPLETED, Note: "canary healthy",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if s := done.Msg.Run.StepResults[1]; s.Status != loomv1.StepStatus_STEP_STATUS_COMPLETED || s.Message != "canary healthy" || s.Actor == "" {
		t.Fatalf("review step %v", s)
	}

	var runs []*loomv1.Run
	select {
	case runs = <-seen:
	case <-time.After(30 * time.Second):
		t.Fatal("WatchRun did not end with the Run")
	}
	if len(runs) < 3 || runs[len(runs)-1].Status != loomv1.RunStatus_RUN_STATUS_COMPLETED {
		t.Fatalf("watched %d versions, last %v", len(runs), runs[len(runs)-1])
	}
	for i := 1; i < len(runs); i++ {
		if runs[i].Version <= runs[i-1].Version {
			t.Fatalf("versions not increasing: %d then %d", runs[i-1].Version, runs[i].Version)
		}
	}
	final := l.getRun(t, runID)
	if final.Status != loomv1.RunStatus_RUN_STATUS_COMPLETED || final.EndTime == nil || final.CurrentStep != "" {
		t.Fatalf("final run %v", final)
	}
	if c := l.candidate(t, "acme/payments"); c.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_COMPLETED {
		t.Fatalf("candidate after the run: %v", c.Status)
	}
	_, err = l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "go-upgrade", CandidateId: "acme/payments"}))
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_CANDIDATE_COMPLETED)
	_, err = l.report(t, d2, loomv1.StepStatus_STEP_STATUS_FAILED)
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_RUN_NOT_RUNNING)
	// Re-discovery leaves the completed Candidate alone.
	sub, err := l.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
		MigrationId: "go-upgrade", Candidates: []*loomv1.Candidate{{Id: "acme/payments", Kind: "repository"}},
	}))
	if err != nil || sub.Msg.LeftAloneCount != 1 {
		t.Fatalf("re-discovery: %v %v", sub, err)
	}
	list, err := l.runs.ListRuns(ctx, connect.NewRequest(&loomv1.ListRunsRequest{MigrationId: "go-upgrade", Status: loomv1.RunStatus_RUN_STATUS_COMPLETED}))
	if err != nil || len(list.Msg.Runs) != 1 || list.Msg.TotalSize != 1 {
		t.Fatalf("completed runs: %v %v", list, err)
	}

	recordHistory(t, w, runID)
}

// recordHistory saves the workflow history of the Run's latest execution
// for the replay test of package engine, when LOOM_RECORD_HISTORY names a
// directory (server/internal/engine/testdata): the workflow's code must keep
// replaying the histories of Runs already in flight.
func recordHistory(t *testing.T, w *world, runID string) {
	dir := os.Getenv("LOOM_RECORD_HISTORY")
	if dir == "" {
		return
	}
	path := filepath.Join(dir, t.Name()+".json")
	b, err := w.temporal.GetDefaultClient().WorkflowService().GetWorkflowExecutionHistory(ctx, historyRequest(w.temporal.GetDefaultNamespace(), runID))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeHistory(path, b); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded the history of %s in %s", runID, path)
}

func TestRetryCancelAndStartAgain(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	l.setup(t, w.migrator.url, "acme/orders")
	const runID = "go-upgrade__acme/orders"
	start := func() *loomv1.Run {
		t.Helper()
		res, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
			MigrationId: "go-upgrade", CandidateId: "acme/orders", Inputs: map[string]string{"target_version": "1.23"},
		}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.Run
	}
	start()
	d := w.nextDispatch()

	_, err := l.runs.RetryStep(ctx, connect.NewRequest(&loomv1.RetryStepRequest{RunId: runID, StepName: "bump-go", Attempt: 1}))
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_TRANSITION_NOT_ALLOWED)
	l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_OPEN, func(r *loomv1.ReportStepStatusRequest) { r.Metadata = map[string]string{"branch": "loom/bump-go"} })
	l.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_FAILED, func(r *loomv1.ReportStepStatusRequest) { r.Message = "go mod tidy failed" })
	if r := l.getRun(t, runID); r.Status != loomv1.RunStatus_RUN_STATUS_RUNNING || r.CurrentStepStatus != loomv1.StepStatus_STEP_STATUS_FAILED ||
		r.StepResults[0].Message != "go mod tidy failed" || r.StepResults[0].PrUrl == "" {
		t.Fatalf("run after the failure: %v", r)
	}
	if c := l.candidate(t, "acme/orders"); c.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_RUNNING {
		t.Fatalf("a failed step must keep the candidate running, got %v", c.Status)
	}
	failed, err := l.runs.ListRuns(ctx, connect.NewRequest(&loomv1.ListRunsRequest{MigrationId: "go-upgrade", CurrentStepStatus: loomv1.StepStatus_STEP_STATUS_FAILED}))
	if err != nil || len(failed.Msg.Runs) != 1 {
		t.Fatalf("runs with a failed step: %v %v", failed, err)
	}
	_, err = l.runs.RetryStep(ctx, connect.NewRequest(&loomv1.RetryStepRequest{RunId: runID, StepName: "review", Attempt: 1}))
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_STEP_NOT_CURRENT)

	retried, err := l.runs.RetryStep(ctx, connect.NewRequest(&loomv1.RetryStepRequest{RunId: runID, StepName: "bump-go", Attempt: 1,
		Note: "go mod tidy needed the new proxy"}))
	if err != nil {
		t.Fatal(err)
	}
	// The operator's note is in the history with the retry, not on the new
	// attempt (below).
	history := loomv1connect.NewHistoryServiceClient(http.DefaultClient, l.url)
	// (The history is written after the answer, in the background.)
	eventually(t, "the retry's note in the history", func() bool {
		ev, err := history.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "go-upgrade",
			Kinds: []loomv1.EventKind{loomv1.EventKind_EVENT_KIND_STEP_RETRIED}}))
		return err == nil && len(ev.Msg.Events) == 1 && ev.Msg.Events[0].Details["note"] == "go mod tidy needed the new proxy" &&
			ev.Msg.Events[0].Details["failed_attempt"] == "1"
	})
	// The new attempt starts clean: the failed one's pull request, metadata
	// and message are not its own.
	if s := retried.Msg.Run.StepResults[0]; s.Attempt != 2 || s.Status != loomv1.StepStatus_STEP_STATUS_IN_PROGRESS ||
		s.PrUrl != "" || len(s.Metadata) != 0 || s.Message != "" {
		t.Fatalf("after retry: %v", s)
	}
	if s := l.getRun(t, runID).StepResults[0]; s.Attempt != 2 || s.PrUrl != "" || len(s.Metadata) != 0 || s.Message != "" {
		t.Fatalf("run view after retry: %v", s)
	}
	d2 := w.nextDispatch()
	if d2.Attempt != 2 || d2.Step.Name != "bump-go" {
		t.Fatalf("retry dispatched %v", d2)
	}
	_, err = l.report(t, d, loomv1.StepStatus_STEP_STATUS_OPEN)
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_STALE_ATTEMPT)
	l.mustReport(t, d2, loomv1.StepStatus_STEP_STATUS_OPEN)

	// Cancel while waiting for the merge.
	cancelled, err := l.runs.CancelRun(ctx, connect.NewRequest(&loomv1.CancelRunRequest{RunId: runID, Reason: "wrong target version"}))
	if err != nil {
		t.Fatal(err)
	}
	if r := cancelled.Msg.Run; r.Status != loomv1.RunStatus_RUN_STATUS_CANCELLED || r.CancelReason != "wrong target version" {
		t.Fatalf("cancelled run: %v", r)
	}
	if c := l.candidate(t, "acme/orders"); c.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED {
		t.Fatalf("candidate after cancel: %v", c.Status)
	}
	_, err = l.runs.CancelRun(ctx, connect.NewRequest(&loomv1.CancelRunRequest{RunId: runID}))
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_RUN_NOT_RUNNING)
	_, err = l.report(t, d2, loomv1.StepStatus_STEP_STATUS_MERGED)
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_RUN_NOT_RUNNING)

	// Started again: a new execution, whose events the old one's cannot touch.
	again := start()
	if again.Execution != 2 || again.Version <= cancelled.Msg.Run.Version {
		t.Fatalf("second start: execution %d version %d", again.Execution, again.Version)
	}
	d3 := w.nextDispatch()
	if d3.Execution != 2 || d3.Attempt != 1 {
		t.Fatalf("dispatch of the new execution: %v", d3)
	}
	_, err = l.report(t, d2, loomv1.StepStatus_STEP_STATUS_MERGED)
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_STALE_EXECUTION)
	l.mustReport(t, d3, loomv1.StepStatus_STEP_STATUS_OPEN)

	// Cancel while the step is failed.
	l.mustReport(t, d3, loomv1.StepStatus_STEP_STATUS_FAILED)
	if _, err := l.runs.CancelRun(ctx, connect.NewRequest(&loomv1.CancelRunRequest{RunId: runID})); err != nil {
		t.Fatal(err)
	}
	if c := l.candidate(t, "acme/orders"); c.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED {
		t.Fatalf("candidate after the second cancel: %v", c.Status)
	}
	recordHistory(t, w, runID)
}

func TestRunSurvivesARestartOfTheServer(t *testing.T) {
	w := newWorld(t)
	first := w.startLoom()
	first.setup(t, w.migrator.url, "acme/billing")
	const runID = "go-upgrade__acme/billing"
	if _, err := first.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/billing", Inputs: map[string]string{"target_version": "1.23"},
	})); err != nil {
		t.Fatal(err)
	}
	d := w.nextDispatch()
	first.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_OPEN)
	first.stop()

	second := w.startLoom()
	second.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_MERGED)
	d2 := w.nextDispatch()
	if d2.Step.Name != "review" || d2.Execution != 1 {
		t.Fatalf("dispatch after the restart: %v", d2)
	}
	second.mustReport(t, d2, loomv1.StepStatus_STEP_STATUS_COMPLETED)
	deadline := time.Now().Add(20 * time.Second)
	for second.getRun(t, runID).Status != loomv1.RunStatus_RUN_STATUS_COMPLETED {
		if time.Now().After(deadline) {
			t.Fatalf("run did not complete: %v", second.getRun(t, runID))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMigratorDownAtDispatchAndPreview(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	l.setup(t, w.migrator.url, "acme/search")
	w.migrator.setDown(true)
	_, err := l.runs.PreviewRun(ctx, connect.NewRequest(&loomv1.PreviewRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/search", Inputs: map[string]string{"target_version": "1.23"},
	}))
	wantCode(t, err, connect.CodeUnavailable, loomv1.ErrorReason_MIGRATOR_UNAVAILABLE)

	if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/search", Inputs: map[string]string{"target_version": "1.23"},
	})); err != nil {
		t.Fatal(err)
	}
	// An operator sees it on the Run within seconds: tries so far, the last
	// error, the next try; in the dispatch-failing listing and the metrics.
	runID := "go-upgrade__acme/search"
	var step *loomv1.StepResult
	for began := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if rs := l.getRun(t, runID).GetStepResults(); len(rs) > 0 && rs[0].GetDispatchFailures() >= 2 {
			step = rs[0]
			break
		}
		if time.Since(began) > 10*time.Second {
			t.Fatalf("10 s with the Migrator down, the Run shows no dispatch failures: %v", l.getRun(t, runID))
		}
	}
	if step.GetStatus() != loomv1.StepStatus_STEP_STATUS_IN_PROGRESS || !strings.Contains(step.GetLastDispatchError(), "unavailable") ||
		step.GetNextDispatchTime() == nil {
		t.Fatalf("the Run while the Migrator is down: %v", step)
	}
	list, err := l.runs.ListRuns(ctx, connect.NewRequest(&loomv1.ListRunsRequest{MigrationId: "go-upgrade", DispatchFailing: true}))
	if err != nil || len(list.Msg.GetRuns()) != 1 || list.Msg.GetRuns()[0].GetId() != runID {
		t.Fatalf("dispatch-failing Runs: %v, %v", list, err)
	}
	met, err := connect.NewClient[loomv1.GetMigrationMetricsRequest, loomv1.GetMigrationMetricsResponse](http.DefaultClient,
		l.url+loomv1connect.MetricsServiceGetMigrationMetricsProcedure).CallUnary(ctx,
		connect.NewRequest(&loomv1.GetMigrationMetricsRequest{MigrationId: "go-upgrade"}))
	if err != nil || met.Msg.GetMetrics().GetDispatchFailing() != 1 {
		t.Fatalf("metrics: %v, %v", met, err)
	}
	// Loom tries again while the Migrator is down, and nothing gets through.
	for began := time.Now(); l.getRun(t, runID).GetStepResults()[0].GetDispatchFailures() <= step.GetDispatchFailures(); time.Sleep(100 * time.Millisecond) {
		if time.Since(began) > 20*time.Second {
			t.Fatalf("20 s on, no try after the %d failed ones: %v", step.GetDispatchFailures(), l.getRun(t, runID))
		}
	}
	w.noDispatch()
	w.migrator.setDown(false)
	if d := w.nextDispatch(); d.Step.Name != "bump-go" || d.Attempt != 1 {
		t.Fatalf("dispatch once the Migrator is back: %v", d)
	}
	// Accepted: the failures are gone.
	for began := time.Now(); l.getRun(t, runID).GetStepResults()[0].GetDispatchFailures() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Since(began) > 5*time.Second {
			t.Fatal("the failures still show after the Migrator accepted the step")
		}
	}
	if list, err := l.runs.ListRuns(ctx, connect.NewRequest(&loomv1.ListRunsRequest{MigrationId: "go-upgrade", DispatchFailing: true})); err != nil || len(list.Msg.GetRuns()) != 0 {
		t.Fatalf("dispatch-failing Runs after: %v, %v", list, err)
	}

	// A Migrator that is not there at all: preview answers unavailable at once.
	_, err = l.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: &loomv1.Migration{
		Id: "nowhere", Name: "Nowhere", Steps: []*loomv1.StepDefinition{{Name: "s", Type: "t"}}, MigratorUrl: "http://127.0.0.1:1",
	}}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{MigrationId: "nowhere", Candidates: []*loomv1.Candidate{{Id: "x", Kind: "service"}}})); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, err = l.runs.PreviewRun(ctx, connect.NewRequest(&loomv1.PreviewRunRequest{MigrationId: "nowhere", CandidateId: "x"}))
	wantCode(t, err, connect.CodeUnavailable, loomv1.ErrorReason_MIGRATOR_UNAVAILABLE)
	if time.Since(began) > 5*time.Second {
		t.Fatalf("preview of an absent Migrator took %v", time.Since(began))
	}
}

func TestUnknownRunsAreNotFound(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	l.setup(t, w.migrator.url, "acme/payments")
	_, err := l.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: "go-upgrade__acme/payments"}))
	wantCode(t, err, connect.CodeNotFound, loomv1.ErrorReason_RUN_NOT_FOUND)
	_, err = l.events.ReportStepStatus(ctx, connect.NewRequest(&loomv1.ReportStepStatusRequest{
		RunId: "go-upgrade__ghost", Execution: 1, StepName: "bump-go", Attempt: 1, Status: loomv1.StepStatus_STEP_STATUS_IN_PROGRESS,
	}))
	wantCode(t, err, connect.CodeNotFound, loomv1.ErrorReason_RUN_NOT_FOUND)
	_, err = l.runs.CancelRun(ctx, connect.NewRequest(&loomv1.CancelRunRequest{RunId: "go-upgrade__ghost"}))
	wantCode(t, err, connect.CodeNotFound, loomv1.ErrorReason_RUN_NOT_FOUND)
	_, err = l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "nope", CandidateId: "acme/payments"}))
	wantCode(t, err, connect.CodeNotFound, loomv1.ErrorReason_MIGRATION_NOT_FOUND)
	_, err = l.events.ReportStepStatus(ctx, connect.NewRequest(&loomv1.ReportStepStatusRequest{
		RunId: "go-upgrade__acme/payments", Execution: 1, StepName: "bump-go", Attempt: 1, Status: loomv1.StepStatus_STEP_STATUS_OPEN,
	}))
	wantCode(t, err, connect.CodeInvalidArgument, "")
}

// syncBuffer is a bytes.Buffer that Looms' goroutines may write at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
