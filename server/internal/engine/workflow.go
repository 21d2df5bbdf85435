package engine

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/loomhq/loom/server/internal/migration"
)

// Names registered with Temporal. They are recorded in every history:
// never rename one while Runs are in flight.
const (
	// WorkflowName is the workflow type of a Run.
	WorkflowName = "loom.Run"
	// UpdateStepAction carries a migration.StepAction to a running Run.
	UpdateStepAction = "step-action"
	// SignalCancel carries the reason of a cancel, sent just before it.
	SignalCancel = "cancel"
	// QueryRun answers the Run as the workflow holds it (the truth the
	// reconciler compares views with).
	QueryRun = "run"

	activityBeginRun     = "BeginRun"
	activitySaveRun      = "SaveRun"
	activityWriteView    = "WriteView"
	activityDispatchStep = "DispatchStep"

	// errTypeMigratorRefused marks a dispatch the Migrator refused for good.
	errTypeMigratorRefused = "MigratorRefused"
	// errTypeUnchanged rejects a repeated report in the validator, with the
	// step as it stands in the details: the caller gets changed=false.
	errTypeUnchanged = "loom.unchanged"
	// errTypeStoreUnavailable marks a dispatch that could not read the
	// Migration or Candidate: not the Migrator's fault, so it does not count
	// against the dispatch window.
	errTypeStoreUnavailable = "StoreUnavailable"
	// errKindPrefix prefixes the type of an application error that carries a
	// migration.Refusal; the rest of the type is the refusal's reason.
	errKindPrefix = "loom.refusal."
)

// RunInput is the input of a Run's workflow.
type RunInput struct {
	Manifest migration.Manifest
	// DispatchWindow is how long a dispatch keeps retrying while the
	// Migrator cannot be reached before the step fails.
	DispatchWindow time.Duration
	// DispatchLease is the server's lease of an accepted dispatch, for
	// Migrations that set none.
	DispatchLease time.Duration `json:",omitempty"`
	// Version is the workflow version the execution was started at (see
	// runVersion); 0 for executions started before it was carried here.
	Version workflow.Version `json:",omitempty"`
	// Carry, in a run that continues an execution (continue-as-new), is
	// where the execution stands.
	Carry *Carried `json:",omitempty"`
}

// Carried is the state an execution carries into its next workflow run:
// its Run (written to the store already) and its dispatch's standing.
type Carried struct {
	Run migration.Run
	// Accepted is set when the current attempt's dispatch was accepted, at
	// AcceptedAt (its lease's start); otherwise the new run dispatches it.
	Accepted   bool      `json:",omitempty"`
	AcceptedAt time.Time `json:",omitempty"`
	// Heard is set when the Migrator reported on the current attempt.
	Heard bool `json:",omitempty"`
	// Told is the standing the Run last told its rollout.
	Told migration.RunStanding `json:",omitempty"`
}

// SaveInput is the input of the SaveRun activity: a view with the events
// and durations of its change.
type SaveInput struct {
	Run          migration.Run
	Events       []migration.Event
	Observations []migration.Observation
}

// WriteInput is the input of the WriteView local activity: the Run's
// newest state with the events and durations of every change since the last
// write.
type WriteInput struct {
	// Begin, on an execution's first write, is the Run as it started: the
	// store records the execution (BeginRun) before its view.
	Begin        *migration.Run
	Run          migration.Run
	Events       []migration.Event
	Observations []migration.Observation
	// Tell, for a Run started by a rollout whose standing changed, is the
	// signal to send it once the view is written (see tellRollout).
	Tell *RolloutTell `json:",omitempty"`
}

// RolloutTell is a RunChange for a rollout's workflow, with the request id
// under which Temporal deduplicates it: sent again by a retried write, it
// is counted once.
type RolloutTell struct {
	WorkflowID string
	RequestID  string
	Change     migration.RunChange
}

// ViewWritten is the answer of WriteView.
type ViewWritten struct {
	Version int64
}

// ActionResult is the answer of UpdateStepAction, recorded in the Run's
// history: a Migrator's report gets its Step back, an operator's action the
// whole Run too. (Runs started before Step existed answer with Run alone.)
type ActionResult struct {
	Step    migration.StepResult `json:",omitzero"`
	Run     *migration.Run       `json:",omitempty"`
	Changed bool
}

// acted is the answer to a.
func (r ActionResult) acted(a migration.StepAction) migration.Acted {
	out := migration.Acted{Step: r.Step, Changed: r.Changed}
	if r.Run != nil {
		out.Run = *r.Run
		if out.Step.StepName == "" {
			out.Step, _ = r.Run.Result(a.Step)
		}
	}
	return out
}

// CancelRequest is the payload of SignalCancel.
type CancelRequest struct {
	Reason string
	Actor  string
}

// RunWorkflow walks the steps of one Run execution in order: each step is
// dispatched to the Migrator, then the workflow waits, for weeks if need be,
// for the step to succeed; a failed step holds the Run until an operator
// retries it or cancels the Run. Step changes arrive as UpdateStepAction
// updates, refused by the validator when the transition table forbids them.
//
// A completed execution returns its final Run (executions of version 1 and
// before return nothing).
func RunWorkflow(ctx workflow.Context, in RunInput) (*migration.Run, error) {
	f := &runFlow{in: in, run: migration.NewRun(in.Manifest, workflow.Now(ctx))}
	f.initial = f.run.Clone()
	f.told = migration.StandingRunning
	if c := in.Carry; c != nil {
		if c.Told != "" {
			f.told = c.Told
		}
		f.run = c.Run.Clone()
		f.begun, f.written = true, c.Run.Seq
		if cur := f.run.Current(); cur != nil {
			if c.Accepted {
				f.acked, f.ackedAt = stepAttempt{cur.StepName, cur.Attempt}, c.AcceptedAt
			}
			if c.Heard {
				f.heard = stepAttempt{cur.StepName, cur.Attempt}
			}
		}
	}
	if err := f.setup(ctx); err != nil {
		return nil, err
	}
	if err := f.execute(ctx); err != nil {
		return nil, err
	}
	if !f.background {
		return nil, nil
	}
	final := f.run.Clone()
	return &final, nil
}

type runFlow struct {
	in  RunInput
	run migration.Run
	// dispatchDue is set when the current attempt still has to be sent to
	// the Migrator: a new step, or a retry.
	dispatchDue bool
	// heard is the step and attempt the Migrator last reported on.
	heard stepAttempt
	// acked is the step and attempt whose dispatch the Migrator accepted,
	// at ackedAt: the start of its lease.
	acked   stepAttempt
	ackedAt time.Time
	// stopDispatch cancels the dispatch in flight, if any: a step can move
	// on (a report arrived, an operator retried) while its dispatch still
	// retries an unreachable Migrator.
	stopDispatch workflow.CancelFunc
	// failure is an error of the dispatch goroutine that must end the Run.
	failure error
	// events and observations of the changes not saved yet: the next save
	// writes them with the view, atomically.
	events       []migration.Event
	observations []migration.Observation
	saving       bool
	serialSaves  bool
	// background is set for executions whose view is written by writeViews
	// (see there); older ones save synchronously, as they were recorded.
	background bool
	// cleanRetries is set for executions whose retried step starts its next
	// attempt without the failed attempt's pull request URL and metadata
	// (migration.Run.BeginStep). Older ones carry them over, as they did
	// when their histories were recorded: whether a later report changes
	// the step, and so whether a write follows, depends on it.
	cleanRetries bool
	// begun: the store has recorded this execution (BeginRun).
	begun bool
	// initial is the Run as it started, for the first write's BeginRun.
	initial migration.Run
	// written is the Seq of the newest view written; writing is set while
	// a write is in flight.
	written int64
	writing bool
	// told is the standing the Run last told its rollout (see tellFor).
	told migration.RunStanding
	// actions counts the actions this workflow run applied, and dispatching
	// is set while a dispatch is in flight: see continueDue.
	actions     int
	dispatching int
}

// maxActionsPerRun is how many step actions a workflow run applies before
// it continues as new (each costs about six history events).
const maxActionsPerRun = 1000

// errContinueAsNew ends runStep when the workflow run should continue as
// new.
var errContinueAsNew = errors.New("continue as new")

// continueDue reports whether the execution should go on in a new workflow
// run, with a fresh history: its history grew long (Temporal suggests it,
// or it applied maxActionsPerRun actions) and nothing is in flight that a
// new run could not pick up. A Run that waits weeks for a merge while its
// Migrator reports every minute stays far below Temporal's limits.
func (f *runFlow) continueDue(ctx workflow.Context) bool {
	if !f.background || f.dispatching > 0 || f.run.Status != migration.RunRunning {
		return false
	}
	return f.actions >= maxActionsPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
}

// continueAsNew hands the execution over to a new workflow run once every
// update in flight is answered and every change is written.
func (f *runFlow) continueAsNew(ctx workflow.Context) error {
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return f.stop(ctx, err)
	}
	f.flush(ctx)
	c := f.run.Current()
	carry := &Carried{Run: f.run.Clone()}
	if c != nil && f.acked == (stepAttempt{c.StepName, c.Attempt}) {
		carry.Accepted, carry.AcceptedAt = true, f.ackedAt
	}
	carry.Heard = c != nil && f.heard == (stepAttempt{c.StepName, c.Attempt})
	carry.Told = f.told
	f.logger(ctx).Info("continuing as new", "actions", f.actions, "history_length", workflow.GetInfo(ctx).GetCurrentHistoryLength())
	in := f.in
	in.Version, in.Carry = CurrentVersion, carry
	return workflow.NewContinueAsNewError(ctx, WorkflowName, in)
}

// logger is the Run's logger: Temporal's workflow logger (silent while a
// history replays), whose lines the server's handler completes with
// migration_id, candidate_id and run_id (see runAttrs); callers add the step
// and attempt.
func (f *runFlow) logger(ctx workflow.Context) log.Logger {
	return log.With(workflow.GetLogger(ctx), "execution", f.in.Manifest.Execution)
}

// record notes events for the next save. Every call follows the change
// that made them (which raised the Run's Seq): each event carries that Seq,
// so the store records it once even when a save of a workflow task that
// died already recorded it (see the store's saveRunScript).
func (f *runFlow) record(_ time.Time, events ...migration.Event) {
	for i := range events {
		if events[i].Seq == 0 {
			events[i].Seq = f.run.Seq
		}
	}
	f.events = append(f.events, events...)
}

type stepAttempt struct {
	step    string
	attempt int
}

// The workflow's versions. A change that would break the replay of Runs in
// flight raises CurrentVersion: an execution runs the code of the version it
// started at, carried in its input (RunInput.Version), so a new Run pays
// nothing for it (a workflow.GetVersion call costs each Run a marker and a
// search-attribute update in Temporal). Histories recorded at each version
// are replayed by TestReplayRecordedHistories.
const (
	// Executions started before their input carried the version tell
	// version 1 from 0 by a GetVersion marker of this id.
	legacyVersionID = "serial-saves"
	// 1: saves one at a time.
	versionSerialSaves workflow.Version = 1
	// 2: the view is written in the background by writeViews, the first
	// write records the execution, a report's answer is its step alone.
	versionBackgroundWrites workflow.Version = 2
	// 3: a retry starts the next attempt clean, without the failed
	// attempt's pull request URL and metadata (see cleanRetries).
	versionCleanRetries workflow.Version = 3

	// CurrentVersion is the version new executions start at.
	CurrentVersion = versionCleanRetries
)

func (f *runFlow) setup(ctx workflow.Context) error {
	v := f.in.Version
	if v == 0 {
		v = workflow.GetVersion(ctx, legacyVersionID, workflow.DefaultVersion, versionSerialSaves)
	}
	f.serialSaves = v >= versionSerialSaves
	f.background = v >= versionBackgroundWrites
	f.cleanRetries = v >= versionCleanRetries
	if f.background {
		// The writer outlives a cancel: it still has the cancel to write.
		wctx, _ := workflow.NewDisconnectedContext(ctx)
		workflow.Go(wctx, f.writeViews)
		workflow.Go(ctx, f.watchLeases)
	}
	if err := workflow.SetQueryHandler(ctx, QueryRun, func() (migration.Run, error) { return f.run.Clone(), nil }); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateStepAction, f.act,
		workflow.UpdateHandlerOptions{Validator: f.validate})
}

// validate tries the action on a copy of the Run; a refusal rejects the
// update before it reaches the history.
func (f *runFlow) validate(ctx workflow.Context, a migration.StepAction) error {
	probe := f.run.Clone()
	now := workflow.Now(ctx)
	changed, err := probe.Apply(a, now)
	if err != nil {
		return encodeRefusal(err)
	}
	if !changed && f.background && a.Kind == migration.ActionReport && !f.renews(a, now) {
		// A repeat that changes nothing, and renews nothing that is not
		// fresh: answered from here, so the Run's history does not grow
		// with a Migrator that repeats itself.
		step, _ := f.run.Result(a.Step)
		return temporal.NewApplicationErrorWithOptions("unchanged", errTypeUnchanged,
			temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{step}})
	}
	return nil
}

// renewEvery is how often a repeated report is recorded to renew the
// step's lease and report timeout; repeats in between are answered by the
// validator alone.
const renewEvery = time.Minute

// renews reports whether a, a repeated report, renews the current
// attempt's clocks (lease, report timeout) after renewEvery.
func (f *runFlow) renews(a migration.StepAction, now time.Time) bool {
	c := f.run.Current()
	return c != nil && f.run.Status == migration.RunRunning && c.StepName == a.Step && c.Attempt == a.Attempt &&
		now.Sub(c.LastReport) >= renewEvery
}

func (f *runFlow) act(ctx workflow.Context, a migration.StepAction) (ActionResult, error) {
	f.actions++
	now := workflow.Now(ctx)
	var failed migration.StepResult
	if c := f.run.Current(); c != nil && a.Kind == migration.ActionRetry {
		failed = *c
	}
	changed, err := f.run.Apply(a, now)
	if err != nil {
		return ActionResult{}, encodeRefusal(err)
	}
	if a.Kind == migration.ActionRetry && !f.cleanRetries {
		// An execution of an older version: see cleanRetries.
		c := f.run.Current()
		c.PRURL, c.Metadata = failed.PRURL, failed.Metadata
	}
	if a.Kind == migration.ActionReport {
		// Any report, even a repeated one, shows the Migrator is alive.
		if c := f.run.Current(); c.StepName == a.Step && c.Attempt == a.Attempt {
			c.LastReport = now
			f.heard = stepAttempt{a.Step, a.Attempt}
		}
	}
	if a.Kind == migration.ActionRetry {
		f.dispatchDue = true
	}
	if a.Kind == migration.ActionRedispatch {
		f.acked = stepAttempt{}
		f.dispatchDue = true
	}
	if changed && a.Kind == migration.ActionAdoptPR {
		// The pull request exists: a dispatch still retrying must not have
		// the Migrator open another. (A skipped step's dispatch is stopped
		// by runStep, which moves on.)
		f.cancelDispatch()
	}
	if changed {
		cur := f.run.Current()
		f.logger(ctx).Info("step changed", "step", a.Step, "attempt", a.Attempt, "action", string(a.Kind),
			"status", string(cur.Status), "actor", a.Actor)
		f.record(now, f.run.ActionEvents(a, now)...)
		// An action is what makes a step succeed: measure it then, once.
		for _, o := range f.run.Observations(now) {
			o.Seq = f.run.Seq
			f.observations = append(f.observations, o)
		}
		if err := f.save(ctx); err != nil {
			return ActionResult{}, err
		}
	}
	res := ActionResult{Changed: changed}
	res.Step, _ = f.run.Result(a.Step)
	if a.Kind != migration.ActionReport || !f.background {
		run := f.run.Clone()
		res.Run = &run
	}
	return res, nil
}

func (f *runFlow) execute(ctx workflow.Context) error {
	if !f.background {
		if err := f.begin(ctx); err != nil {
			return f.stop(ctx, err)
		}
	}
	first := 0
	if f.in.Carry != nil {
		// A continued execution goes on with the step it was on; an attempt
		// in progress whose dispatch was not accepted yet is sent again.
		first = len(f.run.Results) - 1
		c := f.run.Current()
		f.dispatchDue = c.Status == migration.StepInProgress && f.acked != (stepAttempt{c.StepName, c.Attempt})
		f.logger(ctx).Info("run continued", "step", c.StepName, "attempt", c.Attempt)
	} else {
		f.logger(ctx).Info("run started", "steps", len(f.run.Steps))
	}
	for i := first; i < len(f.run.Steps); i++ {
		if f.in.Carry == nil || i > first {
			now := workflow.Now(ctx)
			f.run.BeginStep(i, 1, now)
			f.record(now, f.run.DispatchedEvent(now))
			f.dispatchDue = true
		}
		if err := f.save(ctx); err != nil {
			return f.stop(ctx, err)
		}
		if i == 0 && f.background {
			// Nothing goes to the Migrator before the store has recorded the
			// execution (the first write, in this same workflow task).
			if err := workflow.Await(ctx, func() bool { return f.begun || f.failure != nil }); err != nil {
				return f.stop(ctx, err)
			}
			if f.failure != nil {
				return f.stop(ctx, f.failure)
			}
		}
		if err := f.runStep(ctx, i); err != nil {
			if errors.Is(err, errContinueAsNew) {
				return f.continueAsNew(ctx)
			}
			return f.stop(ctx, err)
		}
	}
	f.run.Finish(migration.RunCompleted, "", workflow.Now(ctx))
	f.record(f.run.EndTime, f.run.FinishedEvent(migration.ActorLoom))
	if err := f.save(ctx); err != nil {
		return err
	}
	if f.background {
		// The Run is completed whatever happens now: a cancel arriving
		// meanwhile must not stop the view from saying so.
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		f.flush(dctx)
	}
	f.logger(ctx).Info("run completed")
	// Let update handlers still saving finish, so their callers get answers.
	return workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
}

// runStep dispatches step i and waits until it succeeds, dispatching again
// after every retry.
func (f *runFlow) runStep(ctx workflow.Context, i int) error {
	defer f.cancelDispatch()
	for {
		if f.dispatchDue {
			f.dispatchDue = false
			f.cancelDispatch()
			f.startDispatch(ctx, i)
		}
		if err := f.awaitOutcome(ctx, i); err != nil {
			return err
		}
		if f.failure != nil {
			return f.failure
		}
		c := f.run.Current()
		switch {
		case c.Status.Succeeded():
			return nil
		case f.dispatchDue:
			continue
		case f.continueDue(ctx):
			return errContinueAsNew
		case c.Status == migration.StepFailed:
			// Held until an operator retries the step, skips it, adopts a
			// pull request for it, or cancels the Run. (Before skip and
			// adopt, only a retry moved a failed step: histories replay
			// the same with the status check.)
			if err := workflow.Await(ctx, func() bool {
				return f.dispatchDue || f.continueDue(ctx) || f.run.Current().Status != migration.StepFailed
			}); err != nil {
				return err
			}
		}
	}
}

// awaitOutcome waits until the current attempt succeeds, fails, or is to be
// dispatched again. A step with a report timeout fails when its Migrator
// stays silent in in_progress for longer.
func (f *runFlow) awaitOutcome(ctx workflow.Context, i int) error {
	done := func() bool {
		c := f.run.Current()
		return c.Status.Succeeded() || c.Status == migration.StepFailed || f.dispatchDue || f.failure != nil || f.continueDue(ctx)
	}
	timeout := f.run.Steps[i].ReportTimeout
	for !done() {
		c := f.run.Current()
		if timeout <= 0 || c.Status != migration.StepInProgress {
			return workflow.Await(ctx, func() bool {
				return done() || (timeout > 0 && f.run.Current().Status == migration.StepInProgress)
			})
		}
		attempt, lastReport := c.Attempt, c.LastReport
		wait := lastReport.Add(timeout).Sub(workflow.Now(ctx))
		if wait > 0 {
			heard, err := workflow.AwaitWithTimeout(ctx, wait, func() bool {
				c := f.run.Current()
				return done() || c.Attempt != attempt || c.Status != migration.StepInProgress || !c.LastReport.Equal(lastReport)
			})
			if err != nil {
				return err
			}
			if heard {
				continue
			}
		}
		now := workflow.Now(ctx)
		reason := fmt.Sprintf("no report: the Migrator said nothing for %s while the step was in progress", timeout)
		f.logger(ctx).Warn("step failed", "step", c.StepName, "attempt", attempt, "reason", reason)
		f.run.FailStep(reason, now)
		f.record(now, f.run.FailedEvent(now, reason))
		return f.save(ctx)
	}
	return nil
}

// watchLeases dispatches again, same attempt, a step whose Migrator accepted
// it and then went silent for its lease (it may have died with the step):
// a Migrator still working on it ignores the duplicate. Every report renews
// the lease; a step open or awaiting review holds none.
//
// Timers are never cancelled (each cancel is a command and an event in the
// Run's history): one is started only when a lease falls due before every
// pending one, and a timer that fires only makes the watch look again. A
// Run whose steps are quick starts one timer in all, dropped when it ends.
func (f *runFlow) watchLeases(ctx workflow.Context) {
	type holding struct {
		step              stepAttempt
		ackedAt, reported time.Time
	}
	held := func() (holding, time.Duration, bool) {
		c := f.run.Current()
		if c == nil || f.run.Status != migration.RunRunning || c.Status != migration.StepInProgress || f.acked != (stepAttempt{c.StepName, c.Attempt}) {
			return holding{}, 0, false
		}
		return holding{f.acked, f.ackedAt, c.LastReport}, f.lease(f.run.CurrentDefinition()), true
	}
	var timerAt time.Time // the earliest pending timer, zero when none
	ticks := 0
	for {
		if err := workflow.Await(ctx, func() bool { _, _, ok := held(); return ok }); err != nil {
			return
		}
		h, lease, _ := held()
		due := latest(h.reported, h.ackedAt).Add(lease)
		now := workflow.Now(ctx)
		if !now.Before(due) {
			reason := fmt.Sprintf("no report for %s since the Migrator accepted the step: dispatched again", lease)
			f.logger(ctx).Warn("lease expired", "step", h.step.step, "attempt", h.step.attempt, "reason", reason)
			f.acked = stepAttempt{}
			f.run.Redispatch(now)
			f.record(now, f.run.RedispatchedEvent(now, reason))
			f.dispatchDue = true
			continue
		}
		if timerAt.IsZero() || due.Before(timerAt) {
			timerAt = due
			timer := workflow.NewTimer(ctx, due.Sub(now))
			workflow.Go(ctx, func(gctx workflow.Context) {
				_ = timer.Get(gctx, nil)
				if timerAt.Equal(due) {
					timerAt = time.Time{}
				}
				ticks++
			})
		}
		seen := ticks
		if err := workflow.Await(ctx, func() bool {
			now, _, ok := held()
			return ticks != seen || !ok || now != h
		}); err != nil {
			return
		}
	}
}

// lease is how long an accepted dispatch of step s may go without a report:
// the Migration's lease for the step's type, else its default, else the
// server's, else defaultLease.
func (f *runFlow) lease(s migration.StepDefinition) time.Duration {
	m := f.in.Manifest
	for _, d := range []time.Duration{m.LeaseByType[s.Type], m.DispatchLease, f.in.DispatchLease} {
		if d > 0 {
			return d
		}
	}
	return defaultLease
}

// defaultLease is the lease when neither the Migration nor the server sets
// one.
const defaultLease = 10 * time.Minute

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// earliest is the earlier of two deadlines, a zero one meaning none.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

func (f *runFlow) cancelDispatch() {
	if f.stopDispatch != nil {
		f.stopDispatch()
		f.stopDispatch = nil
	}
}

// startDispatch sends the current attempt of step i to the Migrator in the
// background, retrying transient failures for the dispatch window, while the
// Run waits for the step's outcome. When it gives up, or the Migrator
// refuses, the step fails with the reason, unless the Migrator has reported
// on this attempt meanwhile (it got the step) or the step moved on.
func (f *runFlow) startDispatch(ctx workflow.Context, i int) {
	attempt := f.run.Current().Attempt
	window := f.in.DispatchWindow
	if window <= 0 {
		window = time.Hour
	}
	dctx, cancel := workflow.WithCancel(ctx)
	f.stopDispatch = cancel
	m := f.in.Manifest
	d := migration.Dispatch{
		RunID:       m.RunID,
		Execution:   m.Execution,
		MigrationID: m.MigrationID,
		Step:        f.run.Steps[i],
		StepIndex:   i,
		Attempt:     attempt,
		Candidate:   m.Candidate,
	}
	if f.background {
		// The activity reads the Candidate anyway (for its inputs): the
		// id is enough, and keeps the Run's history small.
		d.Candidate = migration.Candidate{ID: m.Candidate.ID}
	}
	f.logger(ctx).Info("dispatching step", "step", d.Step.Name, "attempt", attempt)
	f.dispatching++
	workflow.Go(dctx, func(gctx workflow.Context) {
		defer func() { f.dispatching-- }()
		actx := workflow.WithActivityOptions(gctx, workflow.ActivityOptions{
			StartToCloseTimeout:    30 * time.Second,
			ScheduleToCloseTimeout: window,
			RetryPolicy: &temporal.RetryPolicy{
				InitialInterval:        time.Second,
				BackoffCoefficient:     2,
				MaximumInterval:        time.Minute,
				NonRetryableErrorTypes: []string{errTypeMigratorRefused},
			},
		})
		var err error
		if f.background {
			// A Migrator answers a dispatch at once: the first try is made in
			// the workflow task itself, which saves the activity's trips
			// through Temporal. Only when it fails to get an answer does the
			// dispatch become an activity retried for the whole window.
			lctx := workflow.WithLocalActivityOptions(gctx, workflow.LocalActivityOptions{
				StartToCloseTimeout:    dispatchAtOnce,
				ScheduleToCloseTimeout: dispatchAtOnce,
				RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 1},
			})
			err = workflow.ExecuteLocalActivity(lctx, activityDispatchStep, DispatchInput{Dispatch: d}).Get(gctx, nil)
			if err == nil {
				f.accepted(gctx, d.Step.Name, attempt)
				return
			}
			if temporal.IsCanceledError(err) || gctx.Err() != nil {
				return
			}
			if refusedForGood(err) {
				f.failDispatch(gctx, d, attempt, err)
				return
			}
			f.logger(gctx).Info("the Migrator did not take the step at once; dispatching it with retries", "step", d.Step.Name, "attempt", attempt, "error", err)
		}
		for {
			err = workflow.ExecuteActivity(actx, activityDispatchStep, DispatchInput{Dispatch: d, TriedAtOnce: f.background}).Get(gctx, nil)
			if err == nil {
				f.accepted(gctx, d.Step.Name, attempt)
				return
			}
			if temporal.IsCanceledError(err) || gctx.Err() != nil {
				return
			}
			if !f.background || !storeOutage(err) {
				break
			}
			// The window ran out while the store could not be read: the
			// Migrator was never tried. Dispatch again, with a new window.
			f.logger(gctx).Warn("the store was unreachable for the whole dispatch window; dispatching again", "step", d.Step.Name, "attempt", attempt, "error", err)
		}
		f.failDispatch(gctx, d, attempt, err)
	})
}

// accepted notes that the Migrator accepted the dispatch of step at
// attempt: its lease starts.
func (f *runFlow) accepted(ctx workflow.Context, step string, attempt int) {
	f.acked, f.ackedAt = stepAttempt{step, attempt}, workflow.Now(ctx)
}

// dispatchAtOnce bounds the first try of a dispatch, made in the workflow
// task: a Migrator must answer a dispatch at once (it does the work in the
// background), and the workflow task must not be held long.
const dispatchAtOnce = 5 * time.Second

// failDispatch fails the step d dispatched because its dispatch failed
// with err, unless the Migrator has reported on this attempt meanwhile (it
// got the step) or the step moved on.
func (f *runFlow) failDispatch(ctx workflow.Context, d migration.Dispatch, attempt int, err error) {
	c := f.run.Current()
	if c.StepName != d.Step.Name || c.Attempt != attempt || c.Status != migration.StepInProgress || f.heard == (stepAttempt{c.StepName, attempt}) {
		return
	}
	now := workflow.Now(ctx)
	reason := "dispatch failed: " + dispatchFailure(err)
	f.logger(ctx).Warn("step failed", "step", d.Step.Name, "attempt", attempt, "reason", reason)
	f.run.FailStep(reason, now)
	f.record(now, f.run.FailedEvent(now, reason))
	if err := f.save(ctx); err != nil && ctx.Err() == nil {
		f.failure = err
	}
}

// refusedForGood reports whether a dispatch failed in a way no retry can
// change: the Migrator refused it, or the Migration or Candidate is gone.
func refusedForGood(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.NonRetryable() && !isTimeout(err)
}

// storeOutage reports whether a dispatch gave up because the store could
// not be read on its last try.
func storeOutage(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == errTypeStoreUnavailable
}

// dispatchFailure is the reason an operator reads on a step whose dispatch
// failed: the Migrator's own message when it refused, the last transport
// error otherwise.
func dispatchFailure(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	var timeoutErr *temporal.TimeoutError
	if errors.As(err, &timeoutErr) {
		msg := "the Migrator could not be reached within the dispatch window"
		var last *temporal.ApplicationError
		if errors.As(timeoutErr.Unwrap(), &last) {
			msg += " (last error: " + last.Message() + ")"
		}
		return msg
	}
	return err.Error()
}

func (f *runFlow) localCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    200 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
		},
	})
}

// begin records the execution in the store (idempotent: StartRun usually
// did it already).
func (f *runFlow) begin(ctx workflow.Context) error {
	var stored migration.Run
	if err := workflow.ExecuteLocalActivity(f.localCtx(ctx), activityBeginRun, f.run).Get(ctx, &stored); err != nil {
		return err
	}
	f.run.Version = stored.Version
	return nil
}

// save writes the Run's view with the events and durations recorded since
// the last save. Writes can finish out of order (the main loop and an update
// handler may both save); the store keeps the newest Seq, and applies each
// save's events once.
//
// In executions with background writes it does nothing: writeViews picks up
// every change.
func (f *runFlow) save(ctx workflow.Context) error {
	if f.background {
		return nil
	}
	// One save at a time, so that events reach the history in the order
	// they happened (an update handler and the main loop may both save).
	if f.serialSaves {
		if err := workflow.Await(ctx, func() bool { return !f.saving }); err != nil {
			return err
		}
		f.saving = true
		defer func() { f.saving = false }()
	}
	events, obs := f.events, f.observations
	f.events, f.observations = nil, nil
	var stored migration.Run
	if err := workflow.ExecuteLocalActivity(f.localCtx(ctx), activitySaveRun, SaveInput{Run: f.run.Clone(), Events: events, Observations: obs}).Get(ctx, &stored); err != nil {
		return err
	}
	f.run.Version = max(f.run.Version, stored.Version)
	return nil
}

// unwritten reports whether the Run changed since its last write.
func (f *runFlow) unwritten() bool {
	return f.run.Seq > f.written || len(f.events) > 0 || len(f.observations) > 0 || !f.begun
}

// writeViews writes the Run's view, with the events and durations of its
// changes, in the background for the whole execution. Temporal holds the
// truth of a Run; its view in the store follows:
//
//   - one write at a time, so events reach the history in the order they
//     happened, and each write carries every change made since the last, so
//     a report and the next step's dispatch made in one workflow task are one
//     write;
//   - a write that fails is retried with a capped backoff and no deadline:
//     the store being down delays the view, never the Run, and pending
//     events are kept until written;
//   - a write the store refuses for good (the Migration or Candidate is
//     gone) is logged and dropped; the first write's refusal (the Candidate
//     changed under the start) ends the Run.
func (f *runFlow) writeViews(ctx workflow.Context) {
	failures := 0
	for {
		if err := workflow.Await(ctx, f.unwritten); err != nil {
			return
		}
		in := WriteInput{Run: f.run.Clone(), Events: f.events, Observations: f.observations}
		in.Tell = f.tellFor(in.Run)
		if !f.begun {
			initial := f.initial
			in.Begin = &initial
		}
		f.writing = true
		var out ViewWritten
		err := workflow.ExecuteLocalActivity(writeCtx(ctx), activityWriteView, in).Get(ctx, &out)
		f.writing = false
		var refused *temporal.ApplicationError
		switch {
		case err == nil:
		case errors.As(err, &refused) && refused.NonRetryable() && !isTimeout(err):
			if !f.begun {
				f.failure = err
				return
			}
			f.logger(ctx).Error("the store refused the run view: dropped", "seq", in.Run.Seq, "events", len(in.Events), "error", err)
		default:
			failures++
			wait := min(time.Second<<min(failures-1, 6), time.Minute)
			f.logger(ctx).Warn("the run view could not be written; retrying", "seq", in.Run.Seq, "retry_in", wait, "failures", failures, "error", err)
			_ = workflow.Sleep(ctx, wait)
			continue
		}
		failures = 0
		if in.Tell != nil {
			f.told = in.Tell.Change.To
		}
		// Changes recorded while the write was in flight stay pending.
		f.events = f.events[len(in.Events):]
		f.observations = f.observations[len(in.Observations):]
		f.written, f.begun = in.Run.Seq, true
		f.run.Version = max(f.run.Version, out.Version)
	}
}

func isTimeout(err error) bool {
	var timeout *temporal.TimeoutError
	return errors.As(err, &timeout)
}

// writeCtx bounds one write below a workflow task's timeout, so a slow store
// never holds the task; writeViews retries after it.
func writeCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    5 * time.Second,
		ScheduleToCloseTimeout: 8 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    100 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    2 * time.Second,
		},
	})
}

// tellFor is the signal that tells the rollout which started the Run that
// the Run's standing changed (its step failed, a retry recovered it, it
// completed or was cancelled), sent by the write of the view that shows
// it, so the rollout counts what the store shows. The write sends it with
// Temporal's client rather than as a workflow command: a command would cost
// the Run five history events and a workflow task to record its delivery
// (which it would have to await, as Temporal drops a signal whose sender
// closed). nil when there is nothing to tell.
func (f *runFlow) tellFor(run migration.Run) *RolloutTell {
	if f.in.Manifest.RolloutID == "" {
		return nil
	}
	to := run.Standing()
	if to == f.told {
		return nil
	}
	change := migration.RunChange{CandidateID: run.CandidateID, Execution: run.Execution, From: f.told, To: to}
	if to == migration.StandingFailed {
		change.Step = run.CurrentStepName()
	}
	return &RolloutTell{
		WorkflowID: RolloutWorkflowID(run.MigrationID, f.in.Manifest.RolloutID),
		RequestID:  fmt.Sprintf("%s/%d/%d/%s", run.ID, run.Execution, run.Seq, to),
		Change:     change,
	}
}

// flush waits until every change is written (or dropped).
func (f *runFlow) flush(ctx workflow.Context) {
	_ = workflow.Await(ctx, func() bool { return !f.unwritten() && !f.writing })
}

// stop ends the workflow on err. A cancel records the Run cancelled (its
// Candidate back to not_started) in a context that the cancel does not
// reach, then ends the workflow as cancelled.
func (f *runFlow) stop(ctx workflow.Context, err error) error {
	if !temporal.IsCanceledError(err) {
		return err
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	var req CancelRequest
	ch := workflow.GetSignalChannel(dctx, SignalCancel)
	for ch.ReceiveAsync(&req) {
	}
	f.run.Finish(migration.RunCancelled, req.Reason, workflow.Now(dctx))
	actor := req.Actor
	if actor == "" {
		actor = migration.ActorLoom
	}
	f.record(f.run.EndTime, f.run.FinishedEvent(actor))
	if serr := f.save(dctx); serr != nil {
		return serr
	}
	if f.background {
		f.flush(dctx)
	}
	f.logger(dctx).Info("run cancelled", "reason", req.Reason, "actor", actor)
	_ = workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(dctx) })
	return err
}

// encodeRefusal carries a migration.Refusal across Temporal: its kind and
// reason in the error type, its metadata and the field at fault as details.
func encodeRefusal(err error) error {
	var ref *migration.Refusal
	if !errors.As(err, &ref) {
		return err
	}
	return temporal.NewApplicationErrorWithOptions(ref.Message, errKindPrefix+kindName(ref.Kind)+"."+ref.Reason,
		temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{ref.Metadata, ref.Field}})
}
