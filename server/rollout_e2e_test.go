package server_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	migratorv1 "github.com/loomhq/loom/gen/loom/migrator/v1"
	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/migratorsdk"
)

// responder answers every dispatch of the test Migrator as the test's
// Migrator would: completed, unless fail says the attempt fails. It reports
// to whichever Loom is current (a restart moves it).
type responder struct {
	mu   sync.Mutex
	loom *loom
	fail func(candidate, step string, attempt int32) bool
}

func (r *responder) use(l *loom) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loom = l
}

func (r *responder) run(t *testing.T, w *world) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			var d *migratorv1.ExecuteStepRequest
			select {
			case <-ctx.Done():
				return
			case d = <-w.migrator.dispatches:
			}
			go func() {
				// fail may hold the answer: never the other dispatches'.
				status := loomv1.StepStatus_STEP_STATUS_COMPLETED
				r.mu.Lock()
				fail := r.fail
				r.mu.Unlock()
				if fail != nil && fail(d.Candidate.GetId(), d.Step.GetName(), d.Attempt) {
					status = loomv1.StepStatus_STEP_STATUS_FAILED
				}
				// Loom may be restarting: report until it lands.
				for ctx.Err() == nil {
					r.mu.Lock()
					l := r.loom
					r.mu.Unlock()
					_, err := l.report(t, d, status, signed(d))
					if err == nil || connect.CodeOf(err) == connect.CodeFailedPrecondition {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
		}
	}()
}

// rolloutClients are RolloutService and HistoryService clients with a
// token.
func rolloutClients(l *loom, token string) (loomv1connect.RolloutServiceClient, loomv1connect.HistoryServiceClient) {
	opt := migratorsdk.WithToken(token)
	return loomv1connect.NewRolloutServiceClient(http.DefaultClient, l.url, opt),
		loomv1connect.NewHistoryServiceClient(http.DefaultClient, l.url, opt)
}

func svcIDs(n int) []string {
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("svc-%02d", i))
	}
	return ids
}

func getRollout(t *testing.T, c loomv1connect.RolloutServiceClient, id string) *loomv1.Rollout {
	t.Helper()
	res, err := c.GetRollout(ctx, connect.NewRequest(&loomv1.GetRolloutRequest{MigrationId: "go-upgrade", RolloutId: id}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.Rollout
}

func awaitRollout(t *testing.T, c loomv1connect.RolloutServiceClient, id string, state loomv1.RolloutState) *loomv1.Rollout {
	t.Helper()
	var r *loomv1.Rollout
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if r = getRollout(t, c, id); r.State == state {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s on, rollout is %s (%s), not %s: %v", r.State, r.StateReason, state, r.Progress)
		}
	}
}

// maxConcurrentRuns reads the history in order and says how many Runs were
// running at once at most.
func maxConcurrentRuns(t *testing.T, h loomv1connect.HistoryServiceClient) (most, started int) {
	t.Helper()
	var events []*loomv1.Event
	for token := ""; ; {
		res, err := h.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "go-upgrade", PageSize: 1000, PageToken: token,
			Kinds: []loomv1.EventKind{loomv1.EventKind_EVENT_KIND_RUN_STARTED, loomv1.EventKind_EVENT_KIND_RUN_COMPLETED, loomv1.EventKind_EVENT_KIND_RUN_CANCELLED}}))
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, res.Msg.Events...)
		if token = res.Msg.NextPageToken; token == "" {
			break
		}
	}
	slices.Reverse(events) // newest first in the listing
	running := 0
	for _, e := range events {
		if e.Kind == loomv1.EventKind_EVENT_KIND_RUN_STARTED {
			running++
			started++
			most = max(most, running)
		} else {
			running--
		}
	}
	return most, started
}

// runsStartedBeforeApproval reads the history in order and counts the Runs
// started before the first resume of a rollout.
func runsStartedBeforeApproval(t *testing.T, h loomv1connect.HistoryServiceClient) int {
	t.Helper()
	res, err := h.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "go-upgrade", PageSize: 1000,
		Kinds: []loomv1.EventKind{loomv1.EventKind_EVENT_KIND_RUN_STARTED, loomv1.EventKind_EVENT_KIND_ROLLOUT_RESUMED}}))
	if err != nil {
		t.Fatal(err)
	}
	events := res.Msg.Events
	slices.Reverse(events) // newest first in the listing
	n := 0
	for _, e := range events {
		if e.Kind == loomv1.EventKind_EVENT_KIND_ROLLOUT_RESUMED {
			return n
		}
		n++
	}
	t.Fatal("no resume in the history")
	return 0
}

func rolloutEvents(t *testing.T, h loomv1connect.HistoryServiceClient) []string {
	t.Helper()
	res, err := h.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "go-upgrade", PageSize: 1000,
		Kinds: []loomv1.EventKind{
			loomv1.EventKind_EVENT_KIND_ROLLOUT_STARTED, loomv1.EventKind_EVENT_KIND_ROLLOUT_PAUSED, loomv1.EventKind_EVENT_KIND_ROLLOUT_RESUMED,
			loomv1.EventKind_EVENT_KIND_ROLLOUT_AWAITING_APPROVAL, loomv1.EventKind_EVENT_KIND_ROLLOUT_CANCELLED, loomv1.EventKind_EVENT_KIND_ROLLOUT_COMPLETED,
			loomv1.EventKind_EVENT_KIND_ROLLOUT_UPDATED,
		}}))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range res.Msg.Events {
		out = append(out, fmt.Sprintf("%s by %s", e.Kind.String()[len("EVENT_KIND_ROLLOUT_"):], e.Actor))
	}
	slices.Reverse(out) // newest first in the listing
	return out
}

// A rollout of 12 Candidates: refused while inputs are missing; a canary of
// 2 that waits for approval; then at most 3 in flight, pausing itself when 2
// of the latest 4 outcomes fail; a bulk retry and a resume finish it. The
// history shows who did what, and that 3 were never exceeded.
func TestRolloutWithCanaryApprovalAutoPauseAndResume(t *testing.T) {
	ids := svcIDs(12)
	w, operator, migrator, history := bulkWorld(t, ids...)
	rs, _ := rolloutClients(operator, operator.token)
	resp := &responder{loom: migrator, fail: func(c, step string, attempt int32) bool {
		return (c == "svc-05" || c == "svc-06") && step == "bump-go" && attempt == 1
	}}
	resp.run(t, w)
	selection := &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{Status: loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED}}
	settings := &loomv1.RolloutSettings{MaxInFlight: 3, CanarySize: 2, AfterCanary: loomv1.CanaryContinuation_CANARY_CONTINUATION_APPROVAL,
		PauseOnFailures: &loomv1.FailureThreshold{Failures: 2, Window: 4}}

	// Without the required input, nothing starts, and the refusal names
	// the Candidates.
	_, err := rs.StartRollout(ctx, connect.NewRequest(&loomv1.StartRolloutRequest{MigrationId: "go-upgrade", Selection: selection, Settings: settings}))
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_MISSING_INPUTS)
	// A migrator may not start rollouts; a bad setting names its field.
	mrs, _ := rolloutClients(migrator, migrator.token)
	_, err = mrs.StartRollout(ctx, connect.NewRequest(&loomv1.StartRolloutRequest{MigrationId: "go-upgrade", Selection: selection, Settings: settings,
		DefaultInputs: map[string]string{"target_version": "1.23"}}))
	wantCode(t, err, connect.CodePermissionDenied, "")
	_, err = rs.StartRollout(ctx, connect.NewRequest(&loomv1.StartRolloutRequest{MigrationId: "go-upgrade", Selection: selection,
		Settings: &loomv1.RolloutSettings{MaxInFlight: 0}, DefaultInputs: map[string]string{"target_version": "1.23"}}))
	wantCode(t, err, connect.CodeInvalidArgument, "")

	prev, err := rs.PreviewSelection(ctx, connect.NewRequest(&loomv1.PreviewSelectionRequest{MigrationId: "go-upgrade", Selection: selection, SampleSize: 2}))
	if err != nil {
		t.Fatal(err)
	}
	if prev.Msg.Count != 12 || prev.Msg.MissingInputsCount != 12 || len(prev.Msg.MissingInputs) != 12 {
		t.Fatalf("preview without inputs: %v", prev.Msg)
	}
	prev, err = rs.PreviewSelection(ctx, connect.NewRequest(&loomv1.PreviewSelectionRequest{MigrationId: "go-upgrade", Selection: selection, SampleSize: 2,
		DefaultInputs: map[string]string{"target_version": "1.23"}}))
	if err != nil {
		t.Fatal(err)
	}
	if prev.Msg.Count != 12 || prev.Msg.MissingInputsCount != 0 || len(prev.Msg.Samples) != 2 || prev.Msg.Samples[0].CandidateId != "svc-00" || len(prev.Msg.Samples[0].Steps) != 2 {
		t.Fatalf("preview with inputs: %v", prev.Msg)
	}

	started, err := rs.StartRollout(ctx, connect.NewRequest(&loomv1.StartRolloutRequest{MigrationId: "go-upgrade", Selection: selection, Settings: settings,
		DefaultInputs: map[string]string{"target_version": "1.23"}, Reason: "wave 1 of the Go bump"}))
	if err != nil {
		t.Fatal(err)
	}
	id := started.Msg.Rollout.Id
	if started.Msg.Rollout.Progress.Planned != 12 || started.Msg.Rollout.CreatedBy != "alice" || started.Msg.Rollout.StateReason != "wave 1 of the Go bump" {
		t.Fatalf("started: %v", started.Msg.Rollout)
	}

	r := awaitRollout(t, rs, id, loomv1.RolloutState_ROLLOUT_STATE_AWAITING_APPROVAL)
	if r.Progress.Started != 2 || r.Progress.Completed != 2 || !r.Progress.CanaryPassed {
		t.Fatalf("after the canary: %v", r.Progress)
	}
	approved, err := rs.ResumeRollout(ctx, connect.NewRequest(&loomv1.ResumeRolloutRequest{MigrationId: "go-upgrade", RolloutId: id,
		Reason: "canary services look healthy"}))
	if err != nil {
		t.Fatal(err)
	}
	// The approval's reason is kept where a pause's is: the state reason.
	if r := approved.Msg.Rollout; r.StateReason != "canary services look healthy" || r.StateActor != "alice" {
		t.Fatalf("approved: %q by %q", r.StateReason, r.StateActor)
	}

	r = awaitRollout(t, rs, id, loomv1.RolloutState_ROLLOUT_STATE_PAUSED)
	if r.StateActor != "loom" || r.Progress.Failed != 2 || r.StateReason == "" {
		t.Fatalf("paused: by %q (%q), %v", r.StateActor, r.StateReason, r.Progress)
	}
	run := operator.getRun(t, "go-upgrade__svc-05")
	if run.RolloutId != id {
		t.Fatalf("run of svc-05 names rollout %q, want %q", run.RolloutId, id)
	}
	retried, err := operator.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{MigrationId: "go-upgrade",
		Selection: &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{CurrentStepStatus: loomv1.StepStatus_STEP_STATUS_FAILED}}}))
	if err != nil || retried.Msg.Result.DoneCount != 2 {
		t.Fatalf("bulk retry: %v %v", retried, err)
	}
	if _, err := rs.ResumeRollout(ctx, connect.NewRequest(&loomv1.ResumeRolloutRequest{MigrationId: "go-upgrade", RolloutId: id})); err != nil {
		t.Fatal(err)
	}
	r = awaitRollout(t, rs, id, loomv1.RolloutState_ROLLOUT_STATE_COMPLETED)
	if p := r.Progress; p.Completed != 12 || p.Failed != 0 || p.InFlight != 0 || p.StepFailures != 2 || p.Waiting != 0 {
		t.Fatalf("completed: %v", p)
	}
	if most, n := maxConcurrentRuns(t, history); most > 3 || n != 12 {
		t.Fatalf("the history shows %d Runs started and up to %d running at once; max in flight is 3", n, most)
	}
	if n := runsStartedBeforeApproval(t, history); n != 2 {
		t.Fatalf("the history shows %d Runs started before the approval, want the 2 of the canary", n)
	}
	want := []string{"STARTED by alice", "AWAITING_APPROVAL by loom", "RESUMED by alice", "PAUSED by loom", "RESUMED by alice", "COMPLETED by loom"}
	if got := rolloutEvents(t, history); !slices.Equal(got, want) {
		t.Fatalf("rollout history %v, want %v", got, want)
	}
	// ... and in the history: the start and the approval with their
	// reasons, the second resume (no reason given) without one.
	resumed, err := history.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "go-upgrade",
		Kinds: []loomv1.EventKind{loomv1.EventKind_EVENT_KIND_ROLLOUT_RESUMED, loomv1.EventKind_EVENT_KIND_ROLLOUT_STARTED}}))
	if err != nil {
		t.Fatal(err)
	}
	if ev := resumed.Msg.Events; len(ev) != 3 || ev[1].Details["reason"] != "canary services look healthy" || ev[1].Details["approved"] != "true" ||
		ev[0].Details["reason"] != "" || ev[0].Details["approved"] != "false" ||
		ev[2].Kind != loomv1.EventKind_EVENT_KIND_ROLLOUT_STARTED || ev[2].Details["reason"] != "wave 1 of the Go bump" {
		t.Fatalf("start and resume events (newest first): %v", ev)
	}
	// Viewers (here: the Migration's migrator) read it; nobody steers an
	// ended rollout.
	if _, err := mrs.GetRollout(ctx, connect.NewRequest(&loomv1.GetRolloutRequest{MigrationId: "go-upgrade", RolloutId: id})); err != nil {
		t.Fatal(err)
	}
	_, err = mrs.PauseRollout(ctx, connect.NewRequest(&loomv1.PauseRolloutRequest{MigrationId: "go-upgrade", RolloutId: id}))
	wantCode(t, err, connect.CodePermissionDenied, "")
	_, err = rs.PauseRollout(ctx, connect.NewRequest(&loomv1.PauseRolloutRequest{MigrationId: "go-upgrade", RolloutId: id}))
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_ROLLOUT_ENDED)
	list, err := rs.ListRollouts(ctx, connect.NewRequest(&loomv1.ListRolloutsRequest{MigrationId: "go-upgrade"}))
	if err != nil || len(list.Msg.Rollouts) != 1 || list.Msg.Rollouts[0].Id != id {
		t.Fatalf("list: %v %v", list, err)
	}
}

// A rollout goes on across a restart of Loom: the Runs it started before
// and after are counted once, and it completes; a pause is answered with
// no Run starting after it, and a cancel with cancel_runs stops the rest.
func TestRolloutSurvivesARestartAndCancels(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	ids := svcIDs(10)
	l.setup(t, w.migrator.url, ids...)
	gate := make(chan struct{})
	resp := &responder{loom: l, fail: func(c, _ string, _ int32) bool {
		if c >= "svc-04" {
			<-gate // held until the restart
		}
		return false
	}}
	resp.run(t, w)
	rs, _ := rolloutClients(l, "")
	res, err := rs.StartRollout(ctx, connect.NewRequest(&loomv1.StartRolloutRequest{MigrationId: "go-upgrade",
		Selection:     &loomv1.CandidateSelection{CandidateIds: ids[:8]},
		DefaultInputs: map[string]string{"target_version": "1.23"},
		Settings:      &loomv1.RolloutSettings{MaxInFlight: 2}}))
	if err != nil {
		t.Fatal(err)
	}
	id := res.Msg.Rollout.Id
	eventually(t, "4 Runs completed", func() bool { return getRollout(t, rs, id).Progress.Completed >= 4 })
	l.stop()

	l2 := w.startLoom()
	resp.use(l2)
	close(gate)
	rs2, _ := rolloutClients(l2, "")
	r := awaitRollout(t, rs2, id, loomv1.RolloutState_ROLLOUT_STATE_COMPLETED)
	if p := r.Progress; p.Planned != 8 || p.Started != 8 || p.Completed != 8 || p.InFlight != 0 {
		t.Fatalf("after the restart: %v", p)
	}

	// A second rollout of the remaining 2, whose Runs hang: pause, then
	// cancel with its Runs.
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	resp.mu.Lock()
	resp.fail = func(string, string, int32) bool { <-hang; return false }
	resp.mu.Unlock()
	res, err = rs2.StartRollout(ctx, connect.NewRequest(&loomv1.StartRolloutRequest{MigrationId: "go-upgrade",
		Selection:     &loomv1.CandidateSelection{CandidateIds: ids[8:]},
		DefaultInputs: map[string]string{"target_version": "1.23"},
		Settings:      &loomv1.RolloutSettings{MaxInFlight: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	id2 := res.Msg.Rollout.Id
	eventually(t, "1 Run started", func() bool { return getRollout(t, rs2, id2).Progress.Started == 1 })
	p, err := rs2.PauseRollout(ctx, connect.NewRequest(&loomv1.PauseRolloutRequest{MigrationId: "go-upgrade", RolloutId: id2, Reason: "wait"}))
	if err != nil || p.Msg.Rollout.State != loomv1.RolloutState_ROLLOUT_STATE_PAUSED || p.Msg.Rollout.StateReason != "wait" {
		t.Fatalf("pause: %v %v", p, err)
	}
	c, err := rs2.CancelRollout(ctx, connect.NewRequest(&loomv1.CancelRolloutRequest{MigrationId: "go-upgrade", RolloutId: id2, CancelRuns: true, Reason: "abandon"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Msg.CancelledRuns != 1 || c.Msg.Rollout.State != loomv1.RolloutState_ROLLOUT_STATE_CANCELLED {
		t.Fatalf("cancel: %v", c.Msg)
	}
	if run := l2.getRun(t, "go-upgrade__"+ids[8]); run.Status != loomv1.RunStatus_RUN_STATUS_CANCELLED || run.CancelReason != "abandon" {
		t.Fatalf("run of %s after the cancel: %v (%q)", ids[8], run.Status, run.CancelReason)
	}
	if cand := l2.candidate(t, ids[9]); cand.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED {
		t.Fatalf("%s was started after the pause: %v", ids[9], cand.Status)
	}
}
