package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/loomhq/loom/server/internal/migration"
)

// fakeFleet stands in for the store and the Runs use case of a rollout:
// it keeps the rollout's snapshot and view, starts Runs (recording how many
// are in flight at once) and lets the test end them.
type fakeFleet struct {
	migration.RolloutStore
	mu       sync.Mutex
	ids      []string
	view     migration.Rollout
	events   []migration.Event
	running  map[string]bool
	started  []string
	maxAtone int
	refuse   map[string]string // candidate -> refusal reason
	openPRs  int
}

func newFakeFleet(n int) *fakeFleet {
	f := &fakeFleet{running: map[string]bool{}, refuse: map[string]string{}}
	for i := range n {
		f.ids = append(f.ids, fmt.Sprintf("c-%03d", i))
	}
	return f
}

func (f *fakeFleet) RolloutCandidates(_ context.Context, _, _ string, offset, limit int) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if offset >= len(f.ids) {
		return nil, nil
	}
	return slices.Clone(f.ids[offset:min(offset+limit, len(f.ids))]), nil
}

func (f *fakeFleet) SaveRollout(_ context.Context, r migration.Rollout, events []migration.Event) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Seq > f.view.Seq {
		f.view = r
		f.events = append(f.events, events...)
	}
	return r.Seq, nil
}

func (f *fakeFleet) Start(_ context.Context, req migration.StartRequest) (migration.Run, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if reason, ok := f.refuse[req.CandidateID]; ok {
		return migration.Run{}, migration.FailedPrecondition(reason, "refused")
	}
	f.running[req.CandidateID] = true
	f.started = append(f.started, req.CandidateID)
	f.maxAtone = max(f.maxAtone, len(f.running))
	return migration.Run{RolloutID: req.RolloutID}, nil
}

func (f *fakeFleet) GetRun(context.Context, string) (migration.Run, error) {
	return migration.Run{}, migration.NotFound(migration.ReasonRunNotFound, "no run")
}

func (f *fakeFleet) CancelRun(_ context.Context, runID, _, _ string) (migration.Run, error) {
	return migration.Run{}, nil
}

func (f *fakeFleet) inFlight() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.running {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func (f *fakeFleet) end(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.running, id)
}

func (f *fakeFleet) last() migration.Rollout {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.view.Clone()
}

type rolloutHarness struct {
	testsuite.WorkflowTestSuite
	t     *testing.T
	env   *testsuite.TestWorkflowEnvironment
	fleet *fakeFleet
}

func newRolloutHarness(t *testing.T, n int) (*rolloutHarness, RolloutInput) {
	h := &rolloutHarness{t: t, fleet: newFakeFleet(n)}
	h.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	h.env = h.NewTestWorkflowEnvironment()
	h.env.SetStartTime(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	Register(h.env, &Activities{Store: &fakeStore{}, Rollouts: h.fleet, Runs: h.fleet})
	return h, RolloutInput{Rollout: migration.Rollout{
		ID: "ro-000000000001", MigrationID: "m", State: migration.RolloutRunning, CreatedBy: "u-ada",
		Settings: migration.RolloutSettings{MaxInFlight: 3, AfterCanary: migration.AfterCanaryApproval},
		Progress: migration.RolloutProgress{Planned: n}, Seq: 1,
	}}
}

// endRuns, every tick of virtual time from start, ends the Runs in flight
// as to says (completed unless it says otherwise), telling the rollout.
func (h *rolloutHarness) endRuns(start, tick time.Duration, ticks int, to func(id string) migration.RunStanding) {
	for i := range ticks {
		h.env.RegisterDelayedCallback(func() {
			for _, id := range h.fleet.inFlight() {
				st := migration.StandingCompleted
				if to != nil {
					st = to(id)
				}
				if st == migration.StandingRunning {
					continue
				}
				if st != migration.StandingFailed {
					h.fleet.end(id)
				}
				h.env.SignalWorkflow(SignalRunChanged, migration.RunChange{CandidateID: id, From: migration.StandingRunning, To: st, Step: "open-pr"})
			}
		}, start+time.Duration(i)*tick)
	}
}

// control sends an operator's action at d.
func (h *rolloutHarness) control(d time.Duration, c migration.RolloutControl) *ControlResult {
	out := &ControlResult{}
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(UpdateRolloutControl, "", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { h.t.Errorf("%s rejected: %v", c.Kind, err) },
			OnComplete: func(v any, err error) {
				if err != nil {
					h.t.Errorf("%s: %v", c.Kind, err)
				}
				if r, ok := v.(ControlResult); ok {
					*out = r
				}
			},
		}, c)
	}, d)
	return out
}

func eventKinds(events []migration.Event) []migration.EventKind {
	var out []migration.EventKind
	for _, e := range events {
		out = append(out, e.Kind)
	}
	return out
}

func TestRolloutKeepsAtMostMaxInFlightAndCompletes(t *testing.T) {
	h, in := newRolloutHarness(t, 20)
	h.endRuns(time.Second, time.Second, 30, nil)
	h.env.ExecuteWorkflow(RolloutWorkflow, in)
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	r := h.fleet.last()
	if r.State != migration.RolloutCompleted || r.Progress.Completed != 20 || r.Progress.Started != 20 || r.Progress.InFlight != 0 {
		t.Fatalf("rollout = %s %+v, want completed with 20 Runs", r.State, r.Progress)
	}
	if h.fleet.maxAtone != 3 {
		t.Fatalf("at most %d Runs in flight at once, want exactly max_in_flight 3", h.fleet.maxAtone)
	}
	// Within a batch, starts run concurrently: compare as sets.
	if started := slices.Sorted(slices.Values(h.fleet.started)); !slices.Equal(started, h.fleet.ids) {
		t.Fatalf("started %v, want each of the snapshot once", started)
	}
	if got := eventKinds(h.fleet.events); !slices.Equal(got, []migration.EventKind{migration.EventRolloutCompleted}) {
		t.Fatalf("events %v", got)
	}
}

func TestRolloutCanaryWaitsForApproval(t *testing.T) {
	h, in := newRolloutHarness(t, 10)
	in.Rollout.Settings.CanarySize = 2
	var atApproval migration.Rollout
	var startedBefore int
	h.endRuns(time.Second, time.Second, 60, nil)
	h.env.RegisterDelayedCallback(func() {
		atApproval = h.fleet.last()
		startedBefore = len(h.fleet.started)
	}, 10*time.Second)
	res := h.control(20*time.Second, migration.RolloutControl{Kind: migration.ControlResume, Actor: "u-ada", Reason: "canary dashboards are green"})
	h.env.ExecuteWorkflow(RolloutWorkflow, in)
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if atApproval.State != migration.RolloutAwaitingApproval || !atApproval.Progress.CanaryPassed || startedBefore != 2 {
		t.Fatalf("before approval: %s, canary passed %v, %d started; want awaiting_approval after the 2 canary Runs only",
			atApproval.State, atApproval.Progress.CanaryPassed, startedBefore)
	}
	// The approval's reason is the rollout's state reason and its event's.
	if res.Rollout.State != migration.RolloutRunning || res.Rollout.StateActor != "u-ada" || res.Rollout.StateReason != "canary dashboards are green" {
		t.Fatalf("resume answered %s by %q (%q)", res.Rollout.State, res.Rollout.StateActor, res.Rollout.StateReason)
	}
	for _, e := range h.fleet.events {
		if e.Kind == migration.EventRolloutResumed && (e.Actor != "u-ada" || e.Details["reason"] != "canary dashboards are green" || e.Details["approved"] != "true") {
			t.Errorf("resume event %+v", e)
		}
	}
	if r := h.fleet.last(); r.State != migration.RolloutCompleted || r.Progress.Completed != 10 {
		t.Fatalf("rollout = %s %+v", r.State, r.Progress)
	}
	want := []migration.EventKind{migration.EventRolloutAwaitingApproval, migration.EventRolloutResumed, migration.EventRolloutCompleted}
	if got := eventKinds(h.fleet.events); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func TestRolloutPausesItselfAtTheFailureThresholdAndResumes(t *testing.T) {
	h, in := newRolloutHarness(t, 12)
	in.Rollout.Settings.MaxInFlight = 4
	in.Rollout.Settings.PauseOnFailures = migration.FailureThreshold{Failures: 2, Window: 5}
	failing := map[string]bool{"c-000": true, "c-001": true}
	var paused migration.Rollout
	var startedWhilePaused int
	h.endRuns(time.Second, time.Second, 60, func(id string) migration.RunStanding {
		if failing[id] {
			delete(failing, id)
			return migration.StandingFailed
		}
		if id == "c-000" || id == "c-001" {
			return migration.StandingRunning // failed, waiting for a retry
		}
		return migration.StandingCompleted
	})
	h.env.RegisterDelayedCallback(func() { paused = h.fleet.last(); startedWhilePaused = len(h.fleet.started) }, 5*time.Second)
	h.env.RegisterDelayedCallback(func() {
		if n := len(h.fleet.started); n != startedWhilePaused {
			t.Errorf("%d Runs started while paused", n-startedWhilePaused)
		}
		// An operator retries both failed steps; they recover and complete.
		for _, id := range []string{"c-000", "c-001"} {
			h.env.SignalWorkflow(SignalRunChanged, migration.RunChange{CandidateID: id, From: migration.StandingFailed, To: migration.StandingRunning})
		}
	}, 25*time.Second)
	h.env.RegisterDelayedCallback(func() {
		for _, id := range []string{"c-000", "c-001"} {
			h.fleet.end(id)
			h.env.SignalWorkflow(SignalRunChanged, migration.RunChange{CandidateID: id, From: migration.StandingRunning, To: migration.StandingCompleted})
		}
	}, 26*time.Second)
	h.control(30*time.Second, migration.RolloutControl{Kind: migration.ControlResume, Actor: "u-ada"})
	h.env.ExecuteWorkflow(RolloutWorkflow, in)
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if paused.State != migration.RolloutPaused || paused.StateActor != migration.ActorLoom || paused.Progress.Failed != 2 || paused.StateReason == "" {
		t.Fatalf("after 2 failures: %s by %q (%q), %+v; want paused by loom with the reason", paused.State, paused.StateActor, paused.StateReason, paused.Progress)
	}
	r := h.fleet.last()
	if r.State != migration.RolloutCompleted || r.Progress.Completed != 12 || r.Progress.Failed != 0 || r.Progress.StepFailures != 2 {
		t.Fatalf("rollout = %s %+v", r.State, r.Progress)
	}
}

func TestRolloutPauseStopsStartsAndCancelEnds(t *testing.T) {
	h, in := newRolloutHarness(t, 50)
	in.Rollout.Settings.MaxInFlight = 5
	h.endRuns(time.Second, time.Second, 100, nil)
	var startedAtPause int
	paused := h.control(3500*time.Millisecond, migration.RolloutControl{Kind: migration.ControlPause, Actor: "u-bob", Reason: "lunch"})
	h.env.RegisterDelayedCallback(func() { startedAtPause = len(h.fleet.started) }, 3501*time.Millisecond)
	h.env.RegisterDelayedCallback(func() {
		if n := len(h.fleet.started); n != startedAtPause {
			t.Errorf("%d Runs started after the pause was answered", n-startedAtPause)
		}
	}, 30*time.Second)
	h.control(31*time.Second, migration.RolloutControl{Kind: migration.ControlCancel, Actor: "u-bob"})
	h.env.ExecuteWorkflow(RolloutWorkflow, in)
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if paused.Rollout.State != migration.RolloutPaused || paused.Rollout.StateReason != "lunch" {
		t.Fatalf("pause answered %s (%q)", paused.Rollout.State, paused.Rollout.StateReason)
	}
	if r := h.fleet.last(); r.State != migration.RolloutCancelled || r.Progress.Started != startedAtPause || r.Progress.Waiting() != 50-startedAtPause {
		t.Fatalf("rollout = %s %+v", r.State, r.Progress)
	}
}

func TestRolloutSkipsRefusedCandidatesAndPaces(t *testing.T) {
	h, in := newRolloutHarness(t, 6)
	in.Rollout.Settings.MaxInFlight = 10
	in.Rollout.Settings.MaxStartsPerMinute = 2
	h.fleet.refuse["c-002"] = migration.ReasonCandidateCompleted
	h.endRuns(time.Second, 10*time.Second, 40, nil)
	var at61s int
	h.env.RegisterDelayedCallback(func() { at61s = len(h.fleet.started) }, 61*time.Second)
	h.env.ExecuteWorkflow(RolloutWorkflow, in)
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if at61s > 3 {
		t.Fatalf("%d Runs started in the first minute at 2 per minute", at61s)
	}
	r := h.fleet.last()
	if r.State != migration.RolloutCompleted || r.Progress.Skipped != 1 || r.Progress.Completed != 5 ||
		r.Progress.SkippedReason != "c-002: "+migration.ReasonCandidateCompleted {
		t.Fatalf("rollout = %s %+v", r.State, r.Progress)
	}
}

func TestRolloutMaxInFlightChangesWhileItRuns(t *testing.T) {
	h, in := newRolloutHarness(t, 30)
	in.Rollout.Settings.MaxInFlight = 2
	// Nothing ends before 10 s: the rollout holds at 2, then at 6.
	h.endRuns(10*time.Second, time.Second, 60, nil)
	var before, after int
	h.env.RegisterDelayedCallback(func() { before = len(h.fleet.inFlight()) }, 4*time.Second)
	res := h.control(5*time.Second, migration.RolloutControl{Kind: migration.ControlUpdate, Actor: "u-ada", Reason: "the runners scaled up",
		Settings: migration.RolloutSettings{MaxInFlight: 6, MaxStartsPerMinute: 999}, Mask: []string{migration.SettingMaxInFlight}})
	h.env.RegisterDelayedCallback(func() { after = len(h.fleet.inFlight()) }, 9*time.Second)
	h.env.ExecuteWorkflow(RolloutWorkflow, in)
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if before != 2 || after != 6 {
		t.Fatalf("in flight %d before the update and %d after, want 2 then 6", before, after)
	}
	if s := res.Rollout.Settings; s.MaxInFlight != 6 || s.MaxStartsPerMinute != 0 {
		t.Fatalf("settings after the update: %+v (only the masked field changes)", s)
	}
	if r := h.fleet.last(); r.State != migration.RolloutCompleted || h.fleet.maxAtone != 6 {
		t.Fatalf("rollout = %s, at most %d in flight", r.State, h.fleet.maxAtone)
	}
	if got := eventKinds(h.fleet.events); !slices.Equal(got, []migration.EventKind{migration.EventRolloutUpdated, migration.EventRolloutCompleted}) {
		t.Fatalf("events %v", got)
	}
	if d := h.fleet.events[0].Details; d["reason"] != "the runners scaled up" || d["max_in_flight"] != "6" || d["rollout_id"] == "" {
		t.Fatalf("rollout_updated details %v", d)
	}
}

// A Run started by a rollout tells it each change of standing, from the
// write of the view that shows it, each under its own request id.
func TestARunTellsItsRolloutEachChangeOfStanding(t *testing.T) {
	h, in := newHarness(t, migration.StepDefinition{Name: "only", Type: "pr"})
	var mu sync.Mutex
	var tells []RolloutTell
	h.acts.Signal = func(_ context.Context, tl RolloutTell) error {
		mu.Lock()
		defer mu.Unlock()
		tells = append(tells, tl)
		return nil
	}
	in.Manifest.RolloutID = "ro-000000000001"
	h.at(time.Minute, report("only", 1, migration.StepFailed))
	h.at(2*time.Minute, migration.StepAction{Kind: migration.ActionRetry, Step: "only", Attempt: 1, Actor: "alice"})
	h.at(3*time.Minute, report("only", 2, migration.StepCompleted))
	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	var got []string
	ids := map[string]bool{}
	for _, tl := range tells {
		got = append(got, fmt.Sprintf("%s>%s", tl.Change.From, tl.Change.To))
		ids[tl.RequestID] = true
		if tl.WorkflowID != RolloutWorkflowID("m", "ro-000000000001") || tl.Change.CandidateID != "c" {
			t.Fatalf("tell %+v", tl)
		}
	}
	if want := []string{"running>failed", "failed>running", "running>completed"}; !slices.Equal(got, want) || len(ids) != 3 {
		t.Fatalf("tells %v (%d request ids), want %v, each its own id", got, len(ids), want)
	}
}
