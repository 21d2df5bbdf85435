package engine

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/loomhq/loom/server/internal/migration"
)

// Names of rollouts registered with Temporal: never rename one while
// rollouts are in flight.
const (
	// RolloutWorkflowName is the workflow type of a rollout.
	RolloutWorkflowName = "loom.Rollout"
	// UpdateRolloutControl carries a migration.RolloutControl.
	UpdateRolloutControl = "rollout-control"
	// SignalRunChanged carries a migration.RunChange from a Run the rollout
	// started.
	SignalRunChanged = "run-changed"
	// QueryRollout answers the rollout as its workflow holds it.
	QueryRollout = "rollout"

	activityStartRolloutRuns  = "StartRolloutRuns"
	activityWriteRollout      = "WriteRollout"
	activityCountOpenPRs      = "CountOpenPRs"
	activityCancelRolloutRuns = "CancelRolloutRuns"
)

// RolloutWorkflowID is the workflow id of rollout r of Migration m.
func RolloutWorkflowID(m, r string) string { return "loom-rollout:" + m + ":" + r }

// RolloutInput is the input of a rollout's workflow.
type RolloutInput struct {
	Rollout migration.Rollout
	// Carry, in a run that continues the rollout (continue-as-new), is what
	// its view does not hold.
	Carry *RolloutCarry `json:",omitempty"`
}

// RolloutCarry is the state a rollout carries into its next workflow run.
type RolloutCarry struct {
	// Window holds the latest outcomes of its Runs, oldest first: true for
	// a failed step, false for a completed Run.
	Window []bool `json:",omitempty"`
	// PaceAt is when pacing allows the next start.
	PaceAt time.Time `json:",omitzero"`
}

// ControlResult is the answer of UpdateRolloutControl.
type ControlResult struct {
	Rollout       migration.Rollout
	CancelledRuns int `json:",omitempty"`
}

// The rollout's batching and waits.
const (
	// rolloutBatch is the most Runs one StartRolloutRuns starts (at
	// migration.BulkConcurrency at a time): small enough that a pause waits
	// for at most one short batch.
	rolloutBatch = 32
	// openPRsRecheck is how often a rollout held by open pull requests
	// counts them again (a Run of its own ending wakes it sooner).
	openPRsRecheck = 15 * time.Second
	// maxRolloutChanges is how many changes a rollout's workflow run makes
	// before it continues as new.
	maxRolloutChanges = 2000
)

// RolloutWorkflow starts the Runs of a rollout's Candidates, in the order
// of its snapshot, as its settings allow; it follows them through the
// RunChange signals each of them sends, and pauses, resumes, changes and
// cancels on operators' UpdateRolloutControl updates. Its state is the
// rollout's view (counters; the next Candidate is at Started+Skipped) and a
// bounded window of outcomes: O(1) per Run.
func RolloutWorkflow(ctx workflow.Context, in RolloutInput) error {
	f := &rolloutFlow{r: in.Rollout.Clone(), written: in.Rollout.Seq}
	if in.Carry != nil {
		f.window, f.paceAt = in.Carry.Window, in.Carry.PaceAt
	}
	if err := workflow.SetQueryHandler(ctx, QueryRollout, func() (migration.Rollout, error) { return f.r.Clone(), nil }); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRolloutControl, f.control,
		workflow.UpdateHandlerOptions{Validator: f.validate}); err != nil {
		return err
	}
	f.signals = workflow.GetSignalChannel(ctx, SignalRunChanged)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var c migration.RunChange
			f.signals.Receive(ctx, &c)
			f.apply(ctx, c)
		}
	})
	workflow.Go(ctx, f.writeViews)
	return f.loop(ctx)
}

type rolloutFlow struct {
	r       migration.Rollout
	window  []bool
	paceAt  time.Time
	signals workflow.ReceiveChannel
	// events not written yet; written is the Seq of the newest view
	// written.
	events  []migration.Event
	written int64
	// starting is set while a batch of starts is in flight; wake is set by
	// anything that may let the main loop act.
	starting bool
	wake     bool
	// changes counts the changes of this workflow run (see
	// maxRolloutChanges).
	changes int
}

// changed records a change of the view, with its events.
func (f *rolloutFlow) changed(ctx workflow.Context, events ...migration.Event) {
	f.r.Seq++
	f.r.UpdateTime = workflow.Now(ctx)
	f.events = append(f.events, events...)
	f.changes++
	f.wake = true
}

func (f *rolloutFlow) event(ctx workflow.Context, kind migration.EventKind, actor string, details map[string]string) migration.Event {
	return f.r.Event(kind, workflow.Now(ctx), actor, details)
}

func (f *rolloutFlow) loop(ctx workflow.Context) error {
	for {
		f.wake = false
		now := workflow.Now(ctx)
		p, s := &f.r.Progress, f.r.Settings
		cursor := p.Started + p.Skipped
		if f.r.State.Ended() {
			// A cancel's handler may still be cancelling Runs: it answers
			// before the workflow ends.
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return err
			}
			f.flush(ctx)
			return nil
		}
		if s.CanarySize > 0 && !p.CanaryPassed && cursor >= s.CanarySize && p.InFlight <= 0 &&
			(f.r.State == migration.RolloutRunning || f.r.State == migration.RolloutPaused) && cursor < p.Planned {
			p.CanaryPassed = true
			if s.AfterCanary != migration.AfterCanaryAutomatic && f.r.State == migration.RolloutRunning {
				f.r.State, f.r.StateReason, f.r.StateActor = migration.RolloutAwaitingApproval,
					fmt.Sprintf("the canary wave of %d completed: approve to start the other %d", s.CanarySize, p.Planned-cursor), migration.ActorLoom
				f.changed(ctx, f.event(ctx, migration.EventRolloutAwaitingApproval, migration.ActorLoom, nil))
			} else {
				f.changed(ctx)
			}
			continue
		}
		if cursor >= p.Planned && p.InFlight <= 0 && f.r.State != migration.RolloutAwaitingApproval {
			f.r.State, f.r.StateReason, f.r.StateActor, f.r.EndTime = migration.RolloutCompleted, "", migration.ActorLoom, now
			p.HeldBy = ""
			f.changed(ctx, f.event(ctx, migration.EventRolloutCompleted, migration.ActorLoom, p.CountsDetails()))
			continue
		}
		if f.continueDue(ctx) {
			return f.continueAsNew(ctx)
		}
		n, held, wait, err := f.allowance(ctx, now)
		if err != nil {
			return err
		}
		if n > 0 {
			f.startBatch(ctx, cursor, n)
			continue
		}
		if held != p.HeldBy {
			p.HeldBy = held
			f.changed(ctx)
		}
		cond := func() bool { return f.wake }
		if wait > 0 {
			if _, err := workflow.AwaitWithTimeout(ctx, wait, cond); err != nil {
				return err
			}
		} else if err := workflow.Await(ctx, cond); err != nil {
			return err
		}
	}
}

// allowance says how many Runs may start now, or why none may and how long
// until that may change (0: until something happens).
func (f *rolloutFlow) allowance(ctx workflow.Context, now time.Time) (n int, held string, wait time.Duration, err error) {
	p, s := f.r.Progress, f.r.Settings
	cursor := p.Started + p.Skipped
	switch {
	case f.r.State != migration.RolloutRunning || cursor >= p.Planned:
		return 0, "", 0, nil
	case s.CanarySize > 0 && !p.CanaryPassed && cursor >= s.CanarySize:
		return 0, fmt.Sprintf("the canary wave (%d) is in flight", s.CanarySize), 0, nil
	case p.InFlight >= s.MaxInFlight:
		return 0, fmt.Sprintf("max in flight (%d) reached", s.MaxInFlight), 0, nil
	}
	n = min(p.Planned-cursor, s.MaxInFlight-p.InFlight, rolloutBatch)
	if s.CanarySize > 0 && !p.CanaryPassed {
		n = min(n, s.CanarySize-cursor)
	}

	if s.MaxStartsPerMinute > 0 {
		if now.Before(f.paceAt) {
			return 0, "pacing: next start at " + f.paceAt.UTC().Format(time.RFC3339), f.paceAt.Sub(now), nil
		}
		interval := time.Minute / time.Duration(s.MaxStartsPerMinute)
		burst := max(1, s.MaxStartsPerMinute/60)
		n = min(n, burst, 1+int(now.Sub(f.paceAt)/interval))
	}
	if s.MaxOpenPRs > 0 {
		var open int
		if err := workflow.ExecuteLocalActivity(rolloutLocalCtx(ctx), activityCountOpenPRs, f.r.MigrationID).Get(ctx, &open); err != nil {
			return 0, "", 0, err
		}
		if open >= s.MaxOpenPRs {
			return 0, fmt.Sprintf("%d pull requests open (max %d)", open, s.MaxOpenPRs), openPRsRecheck, nil
		}
		n = min(n, s.MaxOpenPRs-open)
	}
	return n, "", 0, nil
}

// startBatch starts the next n Candidates from cursor and counts what it
// did. A batch that could start only part (the store or engine failing)
// counts that part; the rest is tried again by the next batch.
func (f *rolloutFlow) startBatch(ctx workflow.Context, cursor, n int) {
	f.starting = true
	var res StartBatchResult
	err := workflow.ExecuteLocalActivity(rolloutLocalCtx(ctx), activityStartRolloutRuns, StartBatchInput{
		MigrationID: f.r.MigrationID, RolloutID: f.r.ID, Offset: cursor, Count: n,
		DefaultInputs: f.r.DefaultInputs, Actor: f.r.CreatedBy,
	}).Get(ctx, &res)
	f.starting = false
	if err != nil {
		// Only a cancel of the workflow ends the activity's retries.
		return
	}
	now := workflow.Now(ctx)
	p := &f.r.Progress
	p.Started += res.Started
	p.InFlight += res.Started
	p.Skipped += res.Skipped
	if res.SkipReason != "" {
		p.SkippedReason = res.SkipReason
	}
	p.HeldBy = ""
	if s := f.r.Settings; s.MaxStartsPerMinute > 0 && res.Started > 0 {
		interval := time.Minute / time.Duration(s.MaxStartsPerMinute)
		base := f.paceAt
		if earliest := now.Add(-time.Duration(max(1, s.MaxStartsPerMinute/60)-1) * interval); base.Before(earliest) {
			base = earliest
		}
		f.paceAt = base.Add(time.Duration(res.Started) * interval)
	}
	f.changed(ctx)
}

// apply counts a Run's change of standing; a failure may pause the
// rollout.
func (f *rolloutFlow) apply(ctx workflow.Context, c migration.RunChange) {
	if c.From == c.To {
		return
	}
	p := &f.r.Progress
	if c.From == migration.StandingFailed {
		p.Failed--
	}
	switch c.To {
	case migration.StandingFailed:
		p.Failed++
		p.StepFailures++
		f.outcome(true)
	case migration.StandingCompleted:
		p.InFlight--
		p.Completed++
		f.outcome(false)
	case migration.StandingCancelled:
		p.InFlight--
		p.Cancelled++
	}
	f.changed(ctx)
	if c.To != migration.StandingFailed || f.r.State != migration.RolloutRunning {
		return
	}
	s := f.r.Settings
	switch {
	case s.CanarySize > 0 && !p.CanaryPassed:
		f.pause(ctx, fmt.Sprintf("canary Run %s failed at step %s", c.CandidateID, c.Step))
	case !s.PauseOnFailures.Off():
		n := 0
		for _, failed := range f.window[max(0, len(f.window)-s.PauseOnFailures.Window):] {
			if failed {
				n++
			}
		}
		if n >= s.PauseOnFailures.Failures {
			f.pause(ctx, fmt.Sprintf("%d of the last %d outcomes of its Runs were failed steps (threshold %d of %d; latest: %s at step %s)",
				n, min(len(f.window), s.PauseOnFailures.Window), s.PauseOnFailures.Failures, s.PauseOnFailures.Window, c.CandidateID, c.Step))
		}
	}
}

// outcome appends to the window, keeping what the threshold reads (none
// without one: a threshold set later counts from then on).
func (f *rolloutFlow) outcome(failed bool) {
	keep := f.r.Settings.PauseOnFailures.Window
	if f.r.Settings.PauseOnFailures.Off() {
		keep = 0
	}
	f.window = append(f.window, failed)
	if len(f.window) > keep {
		f.window = append([]bool(nil), f.window[len(f.window)-keep:]...)
	}
}

// pause pauses the rollout by itself.
func (f *rolloutFlow) pause(ctx workflow.Context, reason string) {
	f.r.State, f.r.StateReason, f.r.StateActor = migration.RolloutPaused, reason, migration.ActorLoom
	workflow.GetLogger(ctx).Info("rollout paused itself", "rollout_id", f.r.ID, "reason", reason)
	f.changed(ctx, f.event(ctx, migration.EventRolloutPaused, migration.ActorLoom, map[string]string{"reason": reason}))
}

// validate refuses an action on an ended rollout before it reaches the
// history.
func (f *rolloutFlow) validate(_ workflow.Context, c migration.RolloutControl) error {
	if f.r.State.Ended() {
		return encodeRefusal(migration.FailedPrecondition(migration.ReasonRolloutEnded, "rollout %s is %s", f.r.ID, f.r.State).
			With("rollout_id", f.r.ID).With("state", string(f.r.State)))
	}
	return nil
}

// control applies an operator's action and answers once it took effect:
// no batch of starts is in flight any more, and the view is written.
func (f *rolloutFlow) control(ctx workflow.Context, c migration.RolloutControl) (ControlResult, error) {
	var res ControlResult
	now := workflow.Now(ctx)
	switch c.Kind {
	case migration.ControlPause:
		if f.r.State == migration.RolloutRunning || f.r.State == migration.RolloutAwaitingApproval {
			reason := c.Reason
			if reason == "" {
				reason = "paused by " + c.Actor
			}
			f.r.State, f.r.StateReason, f.r.StateActor = migration.RolloutPaused, reason, c.Actor
			f.changed(ctx, f.event(ctx, migration.EventRolloutPaused, c.Actor, map[string]string{"reason": reason}))
		}
	case migration.ControlResume:
		if f.r.State == migration.RolloutPaused || f.r.State == migration.RolloutAwaitingApproval {
			approved := f.r.State == migration.RolloutAwaitingApproval
			// The operator's reason, if any, replaces the pause's: it says
			// why the rollout runs again. (Controls sent before resumes had
			// a reason carry none: the state and event are what they were.)
			f.r.State, f.r.StateReason, f.r.StateActor = migration.RolloutRunning, c.Reason, c.Actor
			// Failures before the resume were judged by the operator.
			f.window = nil
			d := map[string]string{"approved": strconv.FormatBool(approved)}
			if c.Reason != "" {
				d["reason"] = c.Reason
			}
			f.changed(ctx, f.event(ctx, migration.EventRolloutResumed, c.Actor, d))
		}
	case migration.ControlUpdate:
		f.r.Settings = f.r.Settings.Apply(c.Settings, c.Mask)
		d := migration.SettingsDetails(f.r.Settings)
		if c.Reason != "" {
			d["reason"] = c.Reason
		}
		f.changed(ctx, f.event(ctx, migration.EventRolloutUpdated, c.Actor, d))
	case migration.ControlCancel:
		reason := c.Reason
		if reason == "" {
			reason = "cancelled by " + c.Actor
		}
		f.r.State, f.r.StateReason, f.r.StateActor, f.r.EndTime = migration.RolloutCancelled, reason, c.Actor, now
		if err := workflow.Await(ctx, func() bool { return !f.starting }); err != nil {
			return res, err
		}
		if c.CancelRuns {
			p := f.r.Progress
			err := workflow.ExecuteActivity(cancelRunsCtx(ctx), activityCancelRolloutRuns, CancelRunsInput{
				MigrationID: f.r.MigrationID, RolloutID: f.r.ID, Upto: p.Started + p.Skipped, Reason: reason, Actor: c.Actor,
			}).Get(ctx, &res.CancelledRuns)
			if err != nil {
				return res, err
			}
		}
		f.changed(ctx, f.event(ctx, migration.EventRolloutCancelled, c.Actor, map[string]string{
			"reason": reason, "cancel_runs": strconv.FormatBool(c.CancelRuns), "cancelled_runs": strconv.Itoa(res.CancelledRuns)}))
	default:
		return res, encodeRefusal(migration.InvalidArgument("kind", migration.ReasonUnknownControl, "no rollout action %q", c.Kind))
	}
	f.changed(ctx)
	seq := f.r.Seq
	if err := workflow.Await(ctx, func() bool { return !f.starting && f.written >= seq }); err != nil {
		return res, err
	}
	res.Rollout = f.r.Clone()
	return res, nil
}

// writeViews writes the rollout's view, with its events, in the
// background: one write at a time, each carrying every change since the
// last, retried without deadline while the store is down. A rollout whose
// view is gone (its Migration deleted) is cancelled.
func (f *rolloutFlow) writeViews(ctx workflow.Context) {
	failures := 0
	for {
		if err := workflow.Await(ctx, func() bool { return f.r.Seq > f.written }); err != nil {
			return
		}
		in := WriteRolloutInput{Rollout: f.r.Clone(), Events: f.events}
		err := workflow.ExecuteLocalActivity(writeCtx(ctx), activityWriteRollout, in).Get(ctx, nil)
		var refused *temporal.ApplicationError
		switch {
		case err == nil:
		case errors.As(err, &refused) && refused.NonRetryable() && !isTimeout(err):
			workflow.GetLogger(ctx).Warn("the rollout's view is gone: the rollout ends", "rollout_id", f.r.ID, "error", err)
			if !f.r.State.Ended() {
				f.r.State, f.r.StateReason, f.r.EndTime = migration.RolloutCancelled, "its view is gone (the Migration was deleted)", workflow.Now(ctx)
				f.wake = true
			}
			f.r.Seq++
		default:
			failures++
			wait := min(time.Second<<min(failures-1, 6), time.Minute)
			workflow.GetLogger(ctx).Warn("the rollout's view could not be written; retrying", "rollout_id", f.r.ID, "retry_in", wait, "error", err)
			_ = workflow.Sleep(ctx, wait)
			continue
		}
		failures = 0
		f.events = f.events[len(in.Events):]
		f.written = max(f.written, in.Rollout.Seq)
		if err != nil {
			f.written = f.r.Seq
		}
	}
}

// flush waits until every change is written.
func (f *rolloutFlow) flush(ctx workflow.Context) {
	_ = workflow.Await(ctx, func() bool { return f.written >= f.r.Seq })
}

func (f *rolloutFlow) continueDue(ctx workflow.Context) bool {
	return f.changes >= maxRolloutChanges || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
}

// continueAsNew hands the rollout over to a new workflow run once every
// update is answered, every signal received is counted and every change
// written.
func (f *rolloutFlow) continueAsNew(ctx workflow.Context) error {
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	for {
		var c migration.RunChange
		for f.signals.ReceiveAsync(&c) {
			f.apply(ctx, c)
		}
		f.flush(ctx)
		if f.signals.Len() == 0 {
			break
		}
	}
	return workflow.NewContinueAsNewError(ctx, RolloutWorkflowName, RolloutInput{
		Rollout: f.r.Clone(), Carry: &RolloutCarry{Window: f.window, PaceAt: f.paceAt}})
}

func rolloutLocalCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    200 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
		},
	})
}

func cancelRunsCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Hour,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
		},
	})
}
