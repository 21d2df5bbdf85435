package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/loomhq/loom/server/internal/migration"
)

// fakeStore keeps the run view like the real store does (the newest Seq
// wins, whatever order the writes finish in; a view of an execution not
// begun is refused as stale); the methods the workflow never reaches stay
// nil (and would panic).
type fakeStore struct {
	Store
	mu    sync.Mutex
	view  migration.Run
	begun int64 // the execution begun
	evseq int64 // the seq whose events were applied last
	// down, when set, says whether the store is unreachable now.
	down   func() bool
	saves  int
	url    string
	events []migration.Event
	obs    []migration.Observation
}

func (s *fakeStore) failWhile(down func() bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *fakeStore) BeginRun(_ context.Context, run migration.Run) (migration.Run, error) {
	s.mu.Lock()
	if s.down != nil && s.down() {
		s.mu.Unlock()
		return migration.Run{}, migration.Unavailable(migration.ReasonStoreUnavailable, "redis: connection refused")
	}
	if s.begun == run.Execution {
		defer s.mu.Unlock()
		return s.view, nil
	}
	s.begun = run.Execution
	s.mu.Unlock()
	if _, err := s.SaveRun(context.Background(), run, []migration.Event{run.StartedEvent("tester")}, nil); err != nil {
		return migration.Run{}, err
	}
	return s.last(), nil
}

func (s *fakeStore) RecordDispatchFailure(_ context.Context, ev migration.Event, _ time.Time) error {
	return s.AppendEvents(context.Background(), ev.MigrationID, []migration.Event{ev})
}

func (s *fakeStore) ClearDispatchFailure(context.Context, string, string, int64, string) error {
	return nil
}

func (s *fakeStore) AppendEvents(_ context.Context, _ string, events []migration.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, events...)
	return nil
}

func (s *fakeStore) SaveRun(_ context.Context, run migration.Run, events []migration.Event, obs []migration.Observation) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down != nil && s.down() {
		return 0, migration.Unavailable(migration.ReasonStoreUnavailable, "redis: connection refused")
	}
	if s.begun != run.Execution {
		return 0, migration.FailedPrecondition(migration.ReasonStaleExecution, "execution %d is not the current one", run.Execution)
	}
	// Like the store: events once per seq above the last applied, the
	// view only when newer.
	if run.Seq > s.evseq || s.saves == 0 {
		s.evseq = run.Seq
		s.events = append(s.events, events...)
		s.obs = append(s.obs, obs...)
	}
	if s.saves > 0 && run.Seq <= s.view.Seq {
		return s.view.Version, nil
	}
	s.saves++
	run.Version = int64(s.saves)
	s.view = run
	return run.Version, nil
}

func (s *fakeStore) GetMigration(_ context.Context, id string) (migration.Migration, error) {
	return migration.Migration{ID: id, MigratorURL: s.url}, nil
}

func (s *fakeStore) GetCandidate(_ context.Context, m, c string) (migration.Candidate, error) {
	return migration.Candidate{ID: c, MigrationID: m, Inputs: map[string]string{"target": "1.23"}}, nil
}

func (s *fakeStore) GetMigrationAndCandidate(ctx context.Context, m, c string) (migration.Migration, migration.Candidate, error) {
	s.mu.Lock()
	down := s.down != nil && s.down()
	s.mu.Unlock()
	if down {
		return migration.Migration{}, migration.Candidate{}, errors.New("redis: connection refused")
	}
	mig, _ := s.GetMigration(ctx, m)
	cand, _ := s.GetCandidate(ctx, m, c)
	return mig, cand, nil
}

func (s *fakeStore) last() migration.Run {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view.Clone()
}

// fakeMigrator records dispatches; fail, when set, decides each one's fate.
type fakeMigrator struct {
	mu         sync.Mutex
	dispatches []migration.Dispatch
	fail       func(n int, d migration.Dispatch) error
}

func (m *fakeMigrator) ExecuteStep(_ context.Context, url string, d migration.Dispatch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dispatches = append(m.dispatches, d)
	if m.fail != nil {
		return m.fail(len(m.dispatches), d)
	}
	return nil
}

func (m *fakeMigrator) PreviewRun(context.Context, string, migration.PreviewRequest) ([]migration.StepPreview, error) {
	return nil, errors.New("not used")
}

func (m *fakeMigrator) sent() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, d := range m.dispatches {
		out = append(out, d.Step.Name+"#"+string(rune('0'+d.Attempt)))
	}
	return out
}

type harness struct {
	testsuite.WorkflowTestSuite
	t        *testing.T
	env      *testsuite.TestWorkflowEnvironment
	store    *fakeStore
	migrator *fakeMigrator
	acts     *Activities
}

func newHarness(t *testing.T, steps ...migration.StepDefinition) (*harness, RunInput) {
	return newHarnessLog(t, io.Discard, steps...)
}

func newHarnessLog(t *testing.T, logTo io.Writer, steps ...migration.StepDefinition) (*harness, RunInput) {
	h := &harness{t: t, store: &fakeStore{url: "http://migrator"}, migrator: &fakeMigrator{}}
	h.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(logTo, nil))))
	h.env = h.NewTestWorkflowEnvironment()
	h.env.SetStartTime(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC))
	h.acts = &Activities{Store: h.store, Migrators: h.migrator}
	Register(h.env, h.acts)
	if len(steps) == 0 {
		steps = []migration.StepDefinition{{Name: "open-pr", Type: "pr"}, {Name: "review", Type: "manual-review"}}
	}
	return h, RunInput{
		Manifest: migration.Manifest{
			RunID: "m__c", Execution: 1, MigrationID: "m", Steps: steps,
			Candidate: migration.Candidate{ID: "c", MigrationID: "m"},
			Inputs:    map[string]string{"target": "1.23"},
		},
		DispatchWindow: time.Hour,
		Version:        CurrentVersion,
	}
}

// outcome is what happened to one update.
type outcome struct {
	// unchanged: answered by the validator as a repeat, not recorded.
	unchanged bool
	rejected  error
	result    ActionResult
	err       error
	done      bool
}

// at sends a step action after d of virtual time.
func (h *harness) at(d time.Duration, a migration.StepAction) *outcome {
	o := &outcome{}
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(UpdateStepAction, "", &testsuite.TestUpdateCallback{
			OnReject: func(err error) {
				o.done = true
				// A repeat the validator answers itself is a success that
				// changed nothing (see Engine.Act).
				if step, ok := unchanged(err); ok {
					o.result, o.unchanged = ActionResult{Step: step}, true
					return
				}
				o.rejected = err
			},
			OnComplete: func(v any, err error) {
				o.err, o.done = err, true
				if r, ok := v.(ActionResult); ok {
					o.result = r
				}
			},
		}, a)
	}, d)
	return o
}

func report(step string, attempt int, s migration.StepStatus) migration.StepAction {
	a := migration.StepAction{Kind: migration.ActionReport, Execution: 1, Step: step, Attempt: attempt, Status: s, Actor: migration.ActorMigrator}
	if s == migration.StepOpen {
		a.PRURL = "https://git.example/pr/1"
	}
	return a
}

func (h *harness) run(in RunInput) error {
	h.env.ExecuteWorkflow(RunWorkflow, in)
	if !h.env.IsWorkflowCompleted() {
		h.t.Fatal("workflow did not complete")
	}
	return h.env.GetWorkflowError()
}

func wantRejected(t *testing.T, o *outcome, reason string) {
	t.Helper()
	if !o.done || o.rejected == nil {
		t.Fatalf("update not rejected: %+v", o)
	}
	var ref *migration.Refusal
	if err := decodeError(o.rejected); !errors.As(err, &ref) || ref.Reason != reason {
		t.Fatalf("rejection %v, want reason %s", o.rejected, reason)
	}
}

func TestRunWalksOpenMergedThenReviewCompleted(t *testing.T) {
	h, in := newHarness(t)
	opened := h.at(time.Minute, report("open-pr", 1, migration.StepOpen))
	merged := h.at(3*24*time.Hour, report("open-pr", 1, migration.StepMerged))
	review := h.at(3*24*time.Hour+time.Minute, report("review", 1, migration.StepAwaitingReview))
	finished := h.at(5*24*time.Hour, migration.StepAction{Kind: migration.ActionFinishReview, Step: "review", Attempt: 1, Status: migration.StepCompleted, Message: "LGTM", Actor: "alice"})

	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*outcome{opened, merged, review, finished} {
		if !o.done || o.rejected != nil || o.err != nil {
			t.Fatalf("update failed: %+v", o)
		}
	}
	// A report is answered with its step alone; an operator's action with
	// the whole Run.
	if !opened.result.Changed || opened.result.Step.PRURL != "https://git.example/pr/1" || opened.result.Run != nil {
		t.Fatalf("open answered %+v", opened.result)
	}
	if r := finished.result.Run; r == nil || r.Results[1].Status != migration.StepCompleted || finished.result.Step.Message != "LGTM" {
		t.Fatalf("review finished answered %+v", finished.result)
	}
	if got := strings.Join(h.migrator.sent(), ","); got != "open-pr#1,review#1" {
		t.Fatalf("dispatches %s", got)
	}
	last := h.store.last()
	if last.Status != migration.RunCompleted || len(last.Results) != 2 ||
		last.Results[0].Status != migration.StepMerged || last.Results[1].Status != migration.StepCompleted ||
		last.Results[1].Actor != "alice" || last.Results[1].Message != "LGTM" {
		t.Fatalf("final run %+v", last)
	}
	if d := h.migrator.dispatches[0]; d.Inputs["target"] != "1.23" || d.Candidate.ID != "c" || d.Execution != 1 {
		t.Fatalf("dispatch %+v", d)
	}
}

func TestFailedStepWaitsForRetry(t *testing.T) {
	h, in := newHarness(t, migration.StepDefinition{Name: "only", Type: "pr"})
	failed := h.at(time.Minute, func() migration.StepAction {
		a := report("only", 1, migration.StepFailed)
		a.Message = "tests failed"
		return a
	}())
	// Nothing happens for a week: the Run holds.
	early := h.at(7*24*time.Hour, report("only", 1, migration.StepCompleted))
	retried := h.at(7*24*time.Hour+time.Minute, migration.StepAction{Kind: migration.ActionRetry, Step: "only", Attempt: 1, Actor: "bob"})
	retriedTwice := h.at(7*24*time.Hour+2*time.Minute, migration.StepAction{Kind: migration.ActionRetry, Step: "only", Attempt: 1, Actor: "carol"})
	done := h.at(7*24*time.Hour+5*time.Minute, report("only", 2, migration.StepCompleted))

	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	if failed.err != nil || failed.rejected != nil {
		t.Fatalf("failure report: %+v", failed)
	}
	wantRejected(t, early, migration.ReasonTransitionNotAllowed)
	if retried.err != nil || retried.rejected != nil || retried.result.Run == nil || retried.result.Run.Current().Attempt != 2 || retried.result.Step.Attempt != 2 {
		t.Fatalf("retry: %+v", retried)
	}
	wantRejected(t, retriedTwice, migration.ReasonStaleAttempt)
	if done.err != nil || done.rejected != nil {
		t.Fatalf("completion: %+v", done)
	}
	if got := strings.Join(h.migrator.sent(), ","); got != "only#1,only#2" {
		t.Fatalf("dispatches %s", got)
	}
	if last := h.store.last(); last.Status != migration.RunCompleted || last.Results[0].Attempt != 2 {
		t.Fatalf("final run %+v", last)
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	for _, tc := range []struct {
		name     string
		before   []migration.StepAction
		cancelAt time.Duration
	}{
		{"waiting for a merge", []migration.StepAction{report("open-pr", 1, migration.StepOpen)}, 48 * time.Hour},
		{"held by a failed step", []migration.StepAction{report("open-pr", 1, migration.StepFailed)}, 48 * time.Hour},
		// Within the step's lease: later, it would be dispatched again.
		{"waiting for the first report", nil, 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, in := newHarness(t)
			for i, a := range tc.before {
				h.at(time.Duration(i+1)*time.Minute, a)
			}
			h.env.RegisterDelayedCallback(func() {
				h.env.SignalWorkflow(SignalCancel, CancelRequest{Reason: "wrong target", Actor: "alice"})
				h.env.CancelWorkflow()
			}, tc.cancelAt)
			err := h.run(in)
			var canceled *temporal.CanceledError
			if !errors.As(err, &canceled) {
				t.Fatalf("workflow ended with %v, want cancelled", err)
			}
			last := h.store.last()
			if last.Status != migration.RunCancelled || last.CancelReason != "wrong target" || last.EndTime.IsZero() {
				t.Fatalf("final run %+v", last)
			}
			if got := strings.Join(h.migrator.sent(), ","); got != "open-pr#1" {
				t.Fatalf("dispatches %s", got)
			}
		})
	}
}

func TestOutOfOrderAndStaleReportsAreRefused(t *testing.T) {
	h, in := newHarness(t)
	wrongStep := h.at(time.Minute, report("review", 1, migration.StepCompleted))
	wrongAttempt := h.at(2*time.Minute, report("open-pr", 2, migration.StepOpen))
	oldExecution := h.at(3*time.Minute, func() migration.StepAction { a := report("open-pr", 1, migration.StepOpen); a.Execution = 7; return a }())
	opened := h.at(4*time.Minute, report("open-pr", 1, migration.StepOpen))
	duplicate := h.at(5*time.Minute, report("open-pr", 1, migration.StepOpen))
	reviewOnOpen := h.at(6*time.Minute, report("open-pr", 1, migration.StepAwaitingReview))
	merged := h.at(7*time.Minute, report("open-pr", 1, migration.StepMerged))
	lateDuplicate := h.at(8*time.Minute, report("open-pr", 1, migration.StepMerged))
	h.at(9*time.Minute, report("review", 1, migration.StepCompleted))

	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	wantRejected(t, wrongStep, migration.ReasonStepNotCurrent)
	wantRejected(t, wrongAttempt, migration.ReasonStaleAttempt)
	wantRejected(t, oldExecution, migration.ReasonStaleExecution)
	wantRejected(t, reviewOnOpen, migration.ReasonTransitionNotAllowed)
	if opened.err != nil || !opened.result.Changed || merged.err != nil {
		t.Fatalf("legal reports: %+v %+v", opened, merged)
	}
	if duplicate.err != nil || duplicate.rejected != nil || duplicate.result.Changed {
		t.Fatalf("duplicate: %+v", duplicate)
	}
	if lateDuplicate.err != nil || lateDuplicate.rejected != nil || lateDuplicate.result.Changed {
		t.Fatalf("late duplicate of a finished step: %+v", lateDuplicate)
	}
	if last := h.store.last(); last.Status != migration.RunCompleted {
		t.Fatalf("final run %+v", last)
	}
}

func TestMigratorDownForAWhile(t *testing.T) {
	h, in := newHarness(t, migration.StepDefinition{Name: "only", Type: "pr"})
	h.migrator.fail = func(n int, _ migration.Dispatch) error {
		if n <= 5 {
			return migration.Unavailable(migration.ReasonMigratorUnavailable, "connection refused")
		}
		return nil
	}
	// Tries at 0, 1, 3, 7 and 15 s fail; the one at 31 s is accepted.
	h.at(5*time.Minute, report("only", 1, migration.StepCompleted))
	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	if n := len(h.migrator.dispatches); n != 6 {
		t.Fatalf("%d dispatch attempts, want 6", n)
	}
	// The first try was made in the workflow task, the others by the
	// activity: the history numbers them all in one sequence.
	var tries []string
	for _, e := range h.store.events {
		if e.Kind == migration.EventDispatchFailed {
			tries = append(tries, e.Details["try"])
		}
	}
	if got := strings.Join(tries, ","); got != "1,2,3,4,5" {
		t.Fatalf("failed tries recorded: %s", got)
	}
	if last := h.store.last(); last.Status != migration.RunCompleted {
		t.Fatalf("final run %+v", last)
	}
}

func TestMigratorDownForTooLongFailsTheStep(t *testing.T) {
	h, in := newHarness(t, migration.StepDefinition{Name: "only", Type: "pr"})
	h.migrator.fail = func(int, migration.Dispatch) error {
		return migration.Unavailable(migration.ReasonMigratorUnavailable, "connection refused")
	}
	var failed migration.Run
	h.env.RegisterDelayedCallback(func() {
		failed = h.store.last()
		h.env.CancelWorkflow()
	}, 3*time.Hour)
	_ = h.run(in)
	c := failed.Current()
	if c == nil || c.Status != migration.StepFailed || !strings.Contains(c.Message, "dispatch failed") || !strings.Contains(c.Message, "connection refused") {
		t.Fatalf("step after the dispatch window: %+v", c)
	}
}

func TestMigratorRefusalFailsTheStepAtOnce(t *testing.T) {
	h, in := newHarness(t, migration.StepDefinition{Name: "only", Type: "pr"})
	h.migrator.fail = func(int, migration.Dispatch) error {
		return migration.FailedPrecondition(migration.ReasonMigratorRefused, "unknown step type pr")
	}
	retried := h.at(time.Hour, migration.StepAction{Kind: migration.ActionRetry, Step: "only", Attempt: 1})
	var afterRetry migration.Run
	h.env.RegisterDelayedCallback(func() {
		afterRetry = h.store.last()
		h.env.CancelWorkflow()
	}, 2*time.Hour)
	_ = h.run(in)
	if n := len(h.migrator.dispatches); n != 2 {
		t.Fatalf("%d dispatches, want one per attempt", n)
	}
	if retried.rejected != nil || retried.err != nil {
		t.Fatalf("retry: %+v", retried)
	}
	c := afterRetry.Current()
	if c.Status != migration.StepFailed || c.Attempt != 2 || !strings.Contains(c.Message, "unknown step type pr") {
		t.Fatalf("step: %+v", c)
	}
}

func TestSilentMigratorFailsTheStepWithNoReport(t *testing.T) {
	h, in := newHarness(t, migration.StepDefinition{Name: "only", Type: "pr", ReportTimeout: time.Hour})
	progress := h.at(50*time.Minute, func() migration.StepAction {
		a := report("only", 1, migration.StepInProgress)
		a.Message = "cloning"
		return a
	}())
	var state migration.Run
	h.env.RegisterDelayedCallback(func() { state = h.store.last() }, 100*time.Minute)
	var later migration.Run
	h.env.RegisterDelayedCallback(func() {
		later = h.store.last()
		h.env.CancelWorkflow()
	}, 3*time.Hour)
	_ = h.run(in)
	if progress.err != nil || progress.rejected != nil {
		t.Fatalf("progress report: %+v", progress)
	}
	// The report at 50 min restarted the clock: still in progress at 100 min.
	if c := state.Current(); c.Status != migration.StepInProgress {
		t.Fatalf("at 100 min: %+v", c)
	}
	if c := later.Current(); c.Status != migration.StepFailed || !strings.HasPrefix(c.Message, "no report") {
		t.Fatalf("at 3 h: %+v", c)
	}
}

// A Migrator that got the step although its answer never came back reports
// on it: the Run moves on without waiting for the dispatch to give up.
func TestAReportWhileTheDispatchRetriesMovesTheRunOn(t *testing.T) {
	h, in := newHarness(t)
	h.migrator.fail = func(_ int, d migration.Dispatch) error {
		if d.Step.Name == "open-pr" {
			return migration.Unavailable(migration.ReasonMigratorUnavailable, "answer lost")
		}
		return nil
	}
	h.at(20*time.Second, report("open-pr", 1, migration.StepOpen))
	h.at(40*time.Second, report("open-pr", 1, migration.StepMerged))
	done := h.at(60*time.Second, report("review", 1, migration.StepCompleted))
	if err := h.run(in); err != nil {
		t.Fatalf("%v; last saved: %+v; done %+v", err, h.store.last(), done)
	}
	if done.err != nil || done.rejected != nil {
		t.Fatalf("the second step was not reached in time: %+v", done)
	}
	last := h.store.last()
	if last.Status != migration.RunCompleted || !last.EndTime.Before(time.Date(2026, 11, 26, 9, 2, 0, 0, time.UTC)) {
		t.Fatalf("run %s at %v", last.Status, last.EndTime)
	}
}

func (s *fakeStore) kinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		k := string(e.Kind)
		if e.Step != "" {
			k += ":" + e.Step
		}
		if st := e.Details["status"]; st != "" {
			k += ":" + st
		}
		out = append(out, k)
	}
	return out
}

func TestTheWorkflowRecordsEveryTransition(t *testing.T) {
	h, in := newHarness(t)
	h.at(time.Minute, report("open-pr", 1, migration.StepOpen))
	h.at(3*time.Hour, report("open-pr", 1, migration.StepMerged))
	h.at(3*time.Hour+time.Minute, report("review", 1, migration.StepFailed))
	h.at(4*time.Hour, migration.StepAction{Kind: migration.ActionRetry, Step: "review", Attempt: 1, Message: "the runner was out of disk", Actor: "alice"})
	h.at(4*time.Hour+time.Minute, report("review", 2, migration.StepAwaitingReview))
	h.at(5*time.Hour, migration.StepAction{Kind: migration.ActionFinishReview, Step: "review", Attempt: 2, Status: migration.StepCompleted, Actor: "bob"})
	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"run_started", "step_dispatched:open-pr", "step_reported:open-pr:open", "step_reported:open-pr:merged",
		"step_dispatched:review", "step_reported:review:failed", "step_retried:review", "step_dispatched:review",
		"step_reported:review:awaiting_review", "review_finished:review:completed", "run_completed",
	}
	if got := h.store.kinds(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events\n got %v\nwant %v", got, want)
	}
	for _, e := range h.store.events {
		// The operator's note travels with the Update into the retry's event.
		if e.Kind == migration.EventStepRetried && (e.Actor != "alice" || e.Attempt != 1 || e.Details["note"] != "the runner was out of disk") {
			t.Errorf("retry event %+v", e)
		}
		if e.Kind == migration.EventReviewFinished && (e.Actor != "bob" || e.Attempt != 2) {
			t.Errorf("review event %+v", e)
		}
	}
	var merge, pr time.Duration
	for _, o := range h.store.obs {
		if o.Step == "open-pr" && o.Merge {
			merge = o.Duration
		} else if o.Step == "open-pr" {
			pr = o.Duration
		}
	}
	if merge != 3*time.Hour-time.Minute || pr != 3*time.Hour {
		t.Fatalf("durations: time to merge %v, dispatch to merged %v (observations %+v)", merge, pr, h.store.obs)
	}
}

// The store down for a long while delays the Run's view and its next
// dispatch, never the Run: reports are answered, and once the store is back
// the view and the history catch up with every event, once, in order, and
// the Run goes on to the end.
func TestTheStoreDownForALongWhileOnlyDelaysTheRun(t *testing.T) {
	h, in := newHarness(t)
	start := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	back := start.Add(90 * time.Minute)
	h.store.failWhile(func() bool { now := h.env.Now(); return now.After(start.Add(30*time.Second)) && now.Before(back) })
	opened := h.at(time.Minute, report("open-pr", 1, migration.StepOpen))
	merged := h.at(10*time.Minute, report("open-pr", 1, migration.StepMerged))
	var during migration.Run
	h.env.RegisterDelayedCallback(func() { during = h.store.last() }, 80*time.Minute)
	review := h.at(95*time.Minute, report("review", 1, migration.StepCompleted))
	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*outcome{opened, merged, review} {
		if !o.done || o.rejected != nil || o.err != nil {
			t.Fatalf("a report: %+v", o)
		}
	}
	if len(during.Results) != 1 || during.Results[0].Status != migration.StepInProgress {
		t.Fatalf("the view during the outage should be the last one written: %+v", during.Results)
	}
	if got := strings.Join(h.migrator.sent(), ","); got != "open-pr#1,review#1" {
		t.Fatalf("dispatches: %s", got)
	}
	if d := h.migrator.dispatches[1]; d.Inputs["target"] != "1.23" {
		t.Fatalf("the dispatch after the outage: %+v", d)
	}
	last := h.store.last()
	if last.Status != migration.RunCompleted || last.Results[1].Status != migration.StepCompleted {
		t.Fatalf("the view after the outage: %+v", last)
	}
	want := "run_started,step_dispatched:open-pr,step_reported:open-pr:open,step_reported:open-pr:merged,step_dispatched:review,step_reported:review:completed,run_completed"
	if got := strings.Join(h.store.kinds(), ","); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
}

// A report and the dispatch of the next step it lets go are one write; so
// are the last report and the Run's completion.
func TestAReportAndTheNextDispatchAreOneWrite(t *testing.T) {
	h, in := newHarness(t)
	h.at(time.Minute, report("open-pr", 1, migration.StepOpen))
	h.at(2*time.Minute, report("open-pr", 1, migration.StepMerged))
	h.at(3*time.Minute, report("review", 1, migration.StepCompleted))
	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	// The execution's begin (no StartRun recorded it here), then: open-pr
	// dispatched, its open report, merged + review dispatched, review
	// completed + Run completed.
	if h.store.saves != 5 {
		t.Fatalf("%d view writes, want 5", h.store.saves)
	}
}

// A Migrator that accepted a step and then went silent (it may have died
// with it) gets the step again, same attempt, once its lease runs out;
// every report renews the lease; a step open for review or merge holds no
// lease.
func TestASilentMigratorGetsTheStepAgainAfterItsLease(t *testing.T) {
	h, in := newHarness(t,
		migration.StepDefinition{Name: "build", Type: "build"},
		migration.StepDefinition{Name: "open-pr", Type: "pr"})
	in.Manifest.DispatchLease = 5 * time.Minute
	in.Manifest.LeaseByType = map[string]time.Duration{"build": 20 * time.Minute}
	// build: a progress report at 15 min renews its 20 min lease: dispatched
	// again at 35 min, then completed at 40 min.
	h.at(15*time.Minute, func() migration.StepAction {
		a := report("build", 1, migration.StepInProgress)
		a.Message = "compiling"
		return a
	}())
	var atThirty, atThirtySix []string
	h.env.RegisterDelayedCallback(func() { atThirty = h.migrator.sent() }, 30*time.Minute)
	h.env.RegisterDelayedCallback(func() { atThirtySix = h.migrator.sent() }, 36*time.Minute)
	h.at(40*time.Minute, report("build", 1, migration.StepCompleted))
	// open-pr: 5 min lease; silent until 12 min after its dispatch, so
	// dispatched twice more (at 45 and 50 min); opened at 52 min, then open
	// for two days with no lease; merged.
	h.at(52*time.Minute, report("open-pr", 1, migration.StepOpen))
	h.at(48*time.Hour, report("open-pr", 1, migration.StepMerged))
	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(atThirty, ","); got != "build#1" {
		t.Errorf("at 30 min (lease renewed at 15): %s", got)
	}
	if got := strings.Join(atThirtySix, ","); got != "build#1,build#1" {
		t.Errorf("at 36 min (20 min after the last report): %s", got)
	}
	if got := strings.Join(h.migrator.sent(), ","); got != "build#1,build#1,open-pr#1,open-pr#1,open-pr#1" {
		t.Errorf("dispatches: %s", got)
	}
	var again []string
	for _, e := range h.store.events {
		if e.Kind == migration.EventStepDispatched && e.Details["reason"] != "" {
			again = append(again, e.Step+": "+e.Details["reason"])
		}
	}
	want := []string{
		"build: no report for 20m0s since the Migrator accepted the step: dispatched again",
		"open-pr: no report for 5m0s since the Migrator accepted the step: dispatched again",
		"open-pr: no report for 5m0s since the Migrator accepted the step: dispatched again",
	}
	if strings.Join(again, "\n") != strings.Join(want, "\n") {
		t.Errorf("redispatches recorded:\n%s\nwant\n%s", strings.Join(again, "\n"), strings.Join(want, "\n"))
	}
	if last := h.store.last(); last.Status != migration.RunCompleted {
		t.Fatalf("final run %+v", last)
	}
}

// A Migrator that started again asks for its steps in progress: each is
// dispatched again, same attempt, and the history says why; a step open
// for review or merge is not.
func TestARedispatchResendsAStepInProgressOnly(t *testing.T) {
	h, in := newHarness(t)
	redispatch := migration.StepAction{Kind: migration.ActionRedispatch, Execution: 1, Step: "open-pr", Attempt: 1, Actor: "go-upgrader"}
	again := h.at(time.Minute, redispatch)
	h.at(2*time.Minute, report("open-pr", 1, migration.StepOpen))
	tooLate := h.at(3*time.Minute, redispatch)
	h.at(4*time.Minute, report("open-pr", 1, migration.StepMerged))
	h.at(5*time.Minute, report("review", 1, migration.StepCompleted))
	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	if again.err != nil || again.rejected != nil || again.result.Step.Dispatches != 2 {
		t.Fatalf("redispatch of a step in progress: %+v", again)
	}
	wantRejected(t, tooLate, migration.ReasonTransitionNotAllowed)
	if got := strings.Join(h.migrator.sent(), ","); got != "open-pr#1,open-pr#1,review#1" {
		t.Fatalf("dispatches: %s", got)
	}
	n := 0
	for _, e := range h.store.events {
		if e.Kind == migration.EventStepDispatched && strings.Contains(e.Details["reason"], "started again") {
			n++
			if e.Actor != "go-upgrader" {
				t.Errorf("the redispatch is recorded as %s's", e.Actor)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d redispatches recorded, want 1", n)
	}
}

// A Migrator repeating the same report every 5 s for 10 minutes: the
// repeats are answered by the validator (nothing recorded) but for one a
// minute, which renews the step's lease, so it is never dispatched again.
func TestRepeatedReportsDoNotGrowTheHistory(t *testing.T) {
	h, in := newHarness(t, migration.StepDefinition{Name: "only", Type: "pr"})
	in.Manifest.DispatchLease = 2 * time.Minute
	progress := report("only", 1, migration.StepInProgress)
	progress.Message = "cloning"
	var outs []*outcome
	for s := 5 * time.Second; s <= 10*time.Minute; s += 5 * time.Second {
		outs = append(outs, h.at(s, progress))
	}
	h.at(10*time.Minute+time.Second, report("only", 1, migration.StepCompleted))
	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	recorded := 0
	for _, o := range outs {
		if !o.done || o.rejected != nil || o.err != nil {
			t.Fatalf("a repeat: %+v", o)
		}
		if !o.unchanged {
			recorded++
		}
		if o.result.Step.Message != "cloning" || o.result.Step.Status != migration.StepInProgress {
			t.Fatalf("a repeat's answer: %+v", o.result.Step)
		}
	}
	if recorded < 9 || recorded > 12 {
		t.Errorf("%d of %d repeats recorded, want about one a minute", recorded, len(outs))
	}
	if got := strings.Join(h.migrator.sent(), ","); got != "only#1" {
		t.Errorf("dispatches: %s (the repeats must renew the lease)", got)
	}
}

// A Run whose step stays in progress 60 days while its Migrator reports
// progress every minute continues as new, carrying its state, before its
// history nears Temporal's limits: no report is lost, none answered twice,
// the lease and the Run go on, and the Run completes.
func TestSixtyDaysOfReportsEveryMinuteStayWithinLimits(t *testing.T) {
	const days = 60
	total := days * 24 * 60
	store, migrator := &fakeStore{url: "http://migrator"}, &fakeMigrator{}
	start := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	_, in := newHarness(t, migration.StepDefinition{Name: "long", Type: "pr"})
	in.Manifest.DispatchLease = 10 * time.Minute
	delivered, runs := 0, 0
	for {
		runs++
		if runs > 2*total/maxActionsPerRun+5 {
			t.Fatal("too many continuations")
		}
		h := &harness{t: t, store: store, migrator: migrator}
		h.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		h.env = h.NewTestWorkflowEnvironment()
		h.env.SetStartTime(start)
		Register(h.env, &Activities{Store: store, Migrators: migrator})
		h.env.SetTestTimeout(time.Minute)
		// One report a minute from where the last run stopped, each
		// scheduling the next (the test environment holds few callbacks);
		// those past this run's end never fire.
		var next func(k int)
		next = func(k int) {
			h.env.RegisterDelayedCallback(func() {
				a := report("long", 1, migration.StepInProgress)
				a.Message = fmt.Sprint("progress ", k)
				if k == total {
					a.Status, a.Message = migration.StepCompleted, ""
				}
				h.env.UpdateWorkflow(UpdateStepAction, "", &testsuite.TestUpdateCallback{
					OnReject: func(err error) { t.Errorf("report %d refused: %v", k, err) },
					OnComplete: func(_ any, err error) {
						if err != nil {
							t.Errorf("report %d: %v", k, err)
						}
						if k < total {
							delivered++
						}
					},
				}, a)
				if k < total {
					next(k + 1)
				}
			}, time.Minute)
		}
		next(delivered)
		h.env.ExecuteWorkflow(RunWorkflow, in)
		err := h.env.GetWorkflowError()
		var can *workflow.ContinueAsNewError
		if !errors.As(err, &can) {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &in); err != nil {
			t.Fatal(err)
		}
		start = h.env.Now()
	}
	if delivered != total {
		t.Fatalf("%d of %d reports delivered", delivered, total)
	}
	if min := total / maxActionsPerRun; runs < min {
		t.Fatalf("%d workflow runs for %d reports: it did not continue as new", runs, total)
	}
	last := store.last()
	if last.Status != migration.RunCompleted {
		t.Fatalf("the Run after 60 days: %+v", last)
	}
	reports := 0
	for _, e := range store.events {
		if e.Kind == migration.EventStepReported && e.Details["status"] == "in_progress" {
			if want := fmt.Sprint("progress ", reports); e.Details["message"] != want {
				t.Fatalf("report %d recorded as %q", reports, e.Details["message"])
			}
			reports++
		}
	}
	if reports != total {
		t.Fatalf("%d progress events recorded, want %d", reports, total)
	}
	if got := strings.Join(migrator.sent(), ","); got != "long#1" {
		t.Fatalf("dispatches: %s", got)
	}
	t.Logf("%d reports over %d days in %d workflow runs of at most %d actions each", total, days, runs, maxActionsPerRun)
}

// A retried step starts its next attempt clean: the failed attempt's pull
// request URL, metadata and message are not the new attempt's (they stay in
// the history's events). Executions started before version 3 keep carrying
// them over, as their recorded histories did.
func TestARetryStartsTheNextAttemptClean(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version workflow.Version
		carried bool
	}{
		{"current version", CurrentVersion, false},
		{"executions of version 2", versionBackgroundWrites, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, in := newHarness(t, migration.StepDefinition{Name: "only", Type: "pr"})
			in.Version = tc.version
			opened := report("only", 1, migration.StepOpen)
			opened.Metadata = map[string]string{"branch": "loom/only-1"}
			h.at(time.Minute, opened)
			failed := report("only", 1, migration.StepFailed)
			failed.Message = "CI is red"
			h.at(2*time.Minute, failed)
			retried := h.at(3*time.Minute, migration.StepAction{Kind: migration.ActionRetry, Step: "only", Attempt: 1, Actor: "bob"})
			var view migration.Run
			h.env.RegisterDelayedCallback(func() { view = h.store.last() }, 4*time.Minute)
			reopened := report("only", 2, migration.StepOpen)
			reopened.PRURL = "https://git.example/pr/2"
			h.at(5*time.Minute, reopened)
			h.at(6*time.Minute, report("only", 2, migration.StepMerged))

			if err := h.run(in); err != nil {
				t.Fatal(err)
			}
			if !retried.done || retried.err != nil || retried.rejected != nil || retried.result.Run == nil {
				t.Fatalf("retry: %+v", retried)
			}
			wantPR, wantMeta := "", map[string]string(nil)
			if tc.carried {
				wantPR, wantMeta = "https://git.example/pr/1", opened.Metadata
			}
			for what, s := range map[string]migration.StepResult{
				"the retry's answer": retried.result.Step, "its Run": *retried.result.Run.Current(), "the view after it": view.Results[0],
			} {
				if s.Attempt != 2 || s.Status != migration.StepInProgress || s.PRURL != wantPR || !maps.Equal(s.Metadata, wantMeta) ||
					s.Message != "" || !s.OpenTime.IsZero() {
					t.Errorf("%s: attempt %d %s pr %q metadata %v message %q open %v; want attempt 2 in_progress, pr %q, metadata %v, no message",
						what, s.Attempt, s.Status, s.PRURL, s.Metadata, s.Message, s.OpenTime, wantPR, wantMeta)
				}
			}
			// The failed attempt's pull request stays in the history.
			var prs []string
			for _, e := range h.store.events {
				if e.Kind == migration.EventStepReported && e.Details["pr_url"] != "" {
					prs = append(prs, fmt.Sprintf("#%d %s", e.Attempt, e.Details["pr_url"]))
				}
			}
			if got := strings.Join(prs, ", "); got != "#1 https://git.example/pr/1, #2 https://git.example/pr/2" {
				t.Errorf("pull requests in the history: %s", got)
			}
			if last := h.store.last(); last.Status != migration.RunCompleted || last.Results[0].PRURL != "https://git.example/pr/2" {
				t.Errorf("final run %+v", last.Results[0])
			}
		})
	}
}

// An operator's skip is a success for the Run: it moves on to the next
// step, and completes when the skipped step was the last; the Migrator's
// later report on the skipped step is refused.
func TestASkippedStepMovesTheRunOnAndCompletesIt(t *testing.T) {
	h, in := newHarness(t)
	skip := migration.StepAction{Kind: migration.ActionSkip, Step: "open-pr", Attempt: 1, Message: "done by hand", Actor: "alice"}
	skipped := h.at(time.Minute, skip)
	again := h.at(2*time.Minute, skip)
	late := h.at(3*time.Minute, report("open-pr", 1, migration.StepOpen))
	review := h.at(4*time.Minute, report("review", 1, migration.StepAwaitingReview))
	last := h.at(5*time.Minute, migration.StepAction{Kind: migration.ActionSkip, Step: "review", Attempt: 1, Message: "nobody to review", Actor: "bob"})
	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*outcome{skipped, again, review, last} {
		if !o.done || o.rejected != nil || o.err != nil {
			t.Fatalf("update failed: %+v", o)
		}
	}
	if !skipped.result.Changed || skipped.result.Step.Status != migration.StepSkipped || again.result.Changed {
		t.Fatalf("skip answered %+v, its repeat %+v", skipped.result, again.result)
	}
	wantRejected(t, late, migration.ReasonStepNotCurrent)
	if got := strings.Join(h.migrator.sent(), ","); got != "open-pr#1,review#1" {
		t.Fatalf("dispatches %s", got)
	}
	run := h.store.last()
	if run.Status != migration.RunCompleted || run.Results[0].Status != migration.StepSkipped || run.Results[0].Message != "done by hand" ||
		run.Results[0].Actor != "alice" || run.Results[1].Status != migration.StepSkipped || run.Results[1].Actor != "bob" {
		t.Fatalf("final run %+v", run)
	}
	var skips []string
	for _, e := range h.store.events {
		if e.Kind == migration.EventStepSkipped {
			skips = append(skips, e.Step+":"+e.Actor+":"+e.Details["reason"])
		}
	}
	if got := strings.Join(skips, ","); got != "open-pr:alice:done by hand,review:bob:nobody to review" {
		t.Fatalf("skip events %s", got)
	}
	// A skipped step did no work: it is not measured as a success.
	if len(h.store.obs) != 0 {
		t.Fatalf("observations %+v", h.store.obs)
	}
}

// An adopted pull request puts the step in open, as the Migrator's open
// report does: the Migrator's merged report then moves the Run on.
func TestAnAdoptedPullRequestWaitsForItsMerge(t *testing.T) {
	h, in := newHarness(t)
	adopt := migration.StepAction{Kind: migration.ActionAdoptPR, Step: "open-pr", Attempt: 1, PRURL: "https://git.example/pr/7", Actor: "alice"}
	adopted := h.at(time.Minute, adopt)
	again := h.at(2*time.Minute, adopt)
	other := h.at(3*time.Minute, func() migration.StepAction { a := adopt; a.PRURL = "https://git.example/pr/8"; return a }())
	var open migration.Run
	h.env.RegisterDelayedCallback(func() { open = h.store.last() }, 24*time.Hour)
	merged := h.at(2*24*time.Hour, report("open-pr", 1, migration.StepMerged))
	h.at(2*24*time.Hour+time.Minute, report("review", 1, migration.StepCompleted))
	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*outcome{adopted, again, merged} {
		if !o.done || o.rejected != nil || o.err != nil {
			t.Fatalf("update failed: %+v", o)
		}
	}
	if !adopted.result.Changed || again.result.Changed {
		t.Fatalf("adopt answered %+v, its repeat %+v", adopted.result, again.result)
	}
	wantRejected(t, other, migration.ReasonTransitionNotAllowed)
	if c := open.Current(); open.Status != migration.RunRunning || c.StepName != "open-pr" || c.Status != migration.StepOpen ||
		c.PRURL != "https://git.example/pr/7" || c.Actor != "alice" {
		t.Fatalf("after a day: %+v", open)
	}
	run := h.store.last()
	if run.Status != migration.RunCompleted || run.Results[0].Status != migration.StepMerged || run.Results[0].PRURL != "https://git.example/pr/7" {
		t.Fatalf("final run %+v", run)
	}
	var adoptions []string
	for _, e := range h.store.events {
		if e.Kind == migration.EventPRAdopted {
			adoptions = append(adoptions, e.Step+":"+e.Actor+":"+e.Details["pr_url"])
		}
	}
	if got := strings.Join(adoptions, ","); got != "open-pr:alice:https://git.example/pr/7" {
		t.Fatalf("adoption events %s", got)
	}
}

// A skip or an adoption of a step whose dispatch still retries an
// unreachable Migrator stops the dispatch; a failed step can be skipped or
// adopted too, and the Run goes on.
func TestASkipOrAdoptionStopsTheDispatchInFlight(t *testing.T) {
	for _, kind := range []migration.ActionKind{migration.ActionSkip, migration.ActionAdoptPR} {
		t.Run(string(kind), func(t *testing.T) {
			h, in := newHarness(t, migration.StepDefinition{Name: "only", Type: "pr"}, migration.StepDefinition{Name: "next", Type: "pr"})
			h.migrator.fail = func(_ int, d migration.Dispatch) error {
				if d.Step.Name == "only" {
					return migration.Unavailable(migration.ReasonMigratorUnavailable, "connection refused")
				}
				return nil
			}
			a := migration.StepAction{Kind: kind, Step: "only", Attempt: 1, Message: "not needed", PRURL: "https://git.example/pr/3", Actor: "alice"}
			if kind == migration.ActionSkip {
				a.PRURL = ""
			} else {
				a.Message = ""
				h.at(2*time.Hour, report("only", 1, migration.StepMerged))
			}
			tries := func() int {
				h.migrator.mu.Lock()
				defer h.migrator.mu.Unlock()
				n := 0
				for _, d := range h.migrator.dispatches {
					if d.Step.Name == "only" {
						n++
					}
				}
				return n
			}
			var before int
			h.env.RegisterDelayedCallback(func() { before = tries() }, 5*time.Minute-time.Second)
			acted := h.at(5*time.Minute, a)
			h.at(3*time.Hour, report("next", 1, migration.StepCompleted))
			if err := h.run(in); err != nil {
				t.Fatal(err)
			}
			if acted.rejected != nil || acted.err != nil || !acted.result.Changed {
				t.Fatalf("%s: %+v", kind, acted)
			}
			// The dispatch retried until the action, and never after.
			if n := tries(); before < 5 || n != before {
				t.Fatalf("%d tries of the dispatch before the %s, %d in all", before, kind, n)
			}
			run := h.store.last()
			if run.Status != migration.RunCompleted || !run.Results[0].Status.Succeeded() || run.Results[0].Actor == migration.ActorLoom {
				t.Fatalf("final run %+v", run)
			}
		})
	}
}

// A failed step, held for a retry, can be skipped or get its pull request
// adopted instead: the Run moves on.
func TestAFailedStepCanBeSkippedOrAdopted(t *testing.T) {
	for _, kind := range []migration.ActionKind{migration.ActionSkip, migration.ActionAdoptPR} {
		t.Run(string(kind), func(t *testing.T) {
			h, in := newHarness(t, migration.StepDefinition{Name: "only", Type: "pr"})
			h.at(time.Minute, report("only", 1, migration.StepFailed))
			a := migration.StepAction{Kind: kind, Step: "only", Attempt: 1, Actor: "alice"}
			if kind == migration.ActionSkip {
				a.Message = "fixed by hand"
			} else {
				a.PRURL = "https://git.example/pr/9"
				h.at(3*24*time.Hour, report("only", 1, migration.StepMerged))
			}
			acted := h.at(2*24*time.Hour, a)
			if err := h.run(in); err != nil {
				t.Fatal(err)
			}
			if acted.rejected != nil || acted.err != nil || !acted.result.Changed {
				t.Fatalf("%s: %+v", kind, acted)
			}
			if run := h.store.last(); run.Status != migration.RunCompleted {
				t.Fatalf("final run %+v", run)
			}
		})
	}
}

// A refusal keeps, across Temporal, the field it names: the API's
// BadRequest is built from it.
func TestARefusalCarriesItsFieldAcrossTemporal(t *testing.T) {
	h, in := newHarness(t)
	skip := h.at(time.Minute, migration.StepAction{Kind: migration.ActionSkip, Step: "open-pr", Attempt: 1, Actor: "alice"}) // no reason
	h.at(2*time.Minute, migration.StepAction{Kind: migration.ActionSkip, Step: "open-pr", Attempt: 1, Message: "by hand", Actor: "alice"})
	h.at(3*time.Minute, migration.StepAction{Kind: migration.ActionSkip, Step: "review", Attempt: 1, Message: "by hand", Actor: "alice"})
	if err := h.run(in); err != nil {
		t.Fatal(err)
	}
	wantRejected(t, skip, migration.ReasonMissingReason)
	var ref *migration.Refusal
	if errors.As(decodeError(skip.rejected), &ref); ref.Field != "reason" || ref.Kind != migration.ErrInvalidArgument {
		t.Fatalf("refusal %+v: the field is lost", ref)
	}
}
