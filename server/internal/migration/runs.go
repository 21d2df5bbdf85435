package migration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Runs is the use case of starting, driving, reading and stopping Runs.
type Runs struct {
	Store     MigrationStore
	Engine    ExecutionEngine
	Migrators MigratorNotifier
	Now       Clock
	// PreviewTimeout bounds a Migrator's preview.
	PreviewTimeout time.Duration
	// Heartbeat is the longest a watcher waits without a message.
	Heartbeat time.Duration
}

// StartRequest asks for the start of one Candidate's Run.
type StartRequest struct {
	MigrationID, CandidateID string
	// Inputs are merged over the Candidate's stored inputs, and
	// DefaultInputs under them: a Candidate's stored value wins over a
	// default.
	Inputs, DefaultInputs map[string]string
	// RolloutID is the rollout starting the Run, if one is.
	RolloutID string
	// Note is the operator's why, for the history; optional.
	Note string
}

// Start starts the Run of one Candidate (RunService.StartRun, and each
// start of a rollout).
func (u *Runs) Start(ctx context.Context, req StartRequest) (Run, error) {
	migrationID, candidateID, inputs := req.MigrationID, req.CandidateID, req.Inputs
	m, c, err := u.Store.GetMigrationAndCandidate(ctx, migrationID, candidateID)
	if err != nil {
		return Run{}, err
	}
	runID := RunID(migrationID, candidateID)
	switch c.Status {
	case CandidateRunning:
		return Run{}, AlreadyExists(ReasonCandidateRunning, "candidate %q is already running (run %s)", candidateID, runID).With("run_id", runID)
	case CandidateCompleted:
		return Run{}, FailedPrecondition(ReasonCandidateCompleted, "candidate %q has completed this migration", candidateID).With("run_id", runID)
	}
	merged, err := runInputs(m, c, withDefaults(req.DefaultInputs, c.Inputs, inputs))
	if err != nil {
		return Run{}, err
	}
	steps := c.Steps
	if len(steps) == 0 {
		steps = m.Steps
	}
	manifest := Manifest{
		RolloutID:     req.RolloutID,
		RunID:         runID,
		Execution:     c.Execution + 1,
		MigrationID:   m.ID,
		MigrationName: m.Name,
		Steps:         steps,
		MigratorURL:   m.MigratorURL,
		Candidate:     c,
		Inputs:        merged,
		StartedBy:     ActorFrom(ctx),
		StartNote:     req.Note,
		DispatchLease: m.DispatchLease,
		LeaseByType:   m.LeaseByType,
	}
	// The engine decides who wins a race of two starts (one running
	// execution per Run id); the store then records it. Should this process
	// die in between, the Run's workflow records it on its own first step.
	if err := u.Engine.StartRun(ctx, manifest); err != nil {
		if errors.Is(err, ErrAlreadyExists) {
			return Run{}, AlreadyExists(ReasonCandidateRunning, "candidate %q is already running (run %s)", candidateID, runID).With("run_id", runID)
		}
		return Run{}, fmt.Errorf("start run %s: %w", runID, err)
	}
	run, err := u.Store.BeginRun(ctx, NewRun(manifest, u.Now()))
	if err != nil {
		// The Run's workflow may have recorded this very execution itself
		// and gone on, even to its end (a Migrator that completes steps at
		// once), before this call: then the start succeeded, and its view
		// says how far it got.
		var ref *Refusal
		if errors.As(err, &ref) {
			if cur, gerr := u.Store.GetRun(ctx, migrationID, candidateID); gerr == nil && cur.Execution == manifest.Execution {
				return cur, nil
			}
		}
		// The store could not be reached (or its answer was lost): the
		// execution stands. Its workflow records it on its own first
		// step, and a start tried again finds it running (already
		// exists). Withdrawing it would make that retry start a second
		// execution, and the Migrator do the first step twice (the
		// cluster test, a Redis master killed during starts, saw it).
		if errors.Is(err, ErrUnavailable) {
			return Run{}, err
		}
		// Else the Candidate changed under us (completed by a Run that
		// ended meanwhile): withdraw the execution just started.
		if cerr := u.Engine.CancelRun(context.WithoutCancel(ctx), runID, "start refused: "+err.Error(), ActorLoom); cerr != nil && !errors.Is(cerr, ErrRunNotActive) {
			err = errors.Join(err, cerr)
		}
		return Run{}, err
	}
	return run, nil
}

// withDefaults is the inputs to merge over a Candidate's stored ones when
// defaults apply under them: the defaults the Candidate has no value for,
// then inputs.
func withDefaults(defaults, stored, inputs map[string]string) map[string]string {
	if len(defaults) == 0 {
		return inputs
	}
	out := make(map[string]string, len(defaults)+len(inputs))
	for k, v := range defaults {
		if strings.TrimSpace(stored[k]) == "" {
			out[k] = v
		}
	}
	maps.Copy(out, inputs)
	return out
}

// runInputs merges the inputs given for a Run of c over those stored on c
// and checks that every required input of m has a value after the merge:
// StartRun and PreviewRun refuse alike (MISSING_INPUTS, metadata "missing"
// naming the inputs, comma-separated, in the Migration's order).
func runInputs(m Migration, c Candidate, inputs map[string]string) (map[string]string, error) {
	merged := maps.Clone(c.Inputs)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, inputs)
	var missing []string
	for _, in := range m.RequiredInputs {
		if strings.TrimSpace(merged[in.Name]) == "" {
			missing = append(missing, in.Name)
		}
	}
	if len(missing) > 0 {
		return nil, FailedPrecondition(ReasonMissingInputs, "missing required inputs: %s", strings.Join(missing, ", ")).
			With("missing", strings.Join(missing, ","))
	}
	return merged, nil
}

// CancelRun cancels a running Run; its Candidate goes back to not_started.
func (u *Runs) CancelRun(ctx context.Context, runID, reason, actor string) (Run, error) {
	view, err := u.GetRun(ctx, runID)
	if err != nil {
		return Run{}, err
	}
	if view.Status != RunRunning {
		return Run{}, FailedPrecondition(ReasonRunNotRunning, "run %s is %s", runID, view.Status).
			With("run_id", runID).With("run_status", string(view.Status))
	}
	err = u.Engine.CancelRun(ctx, runID, reason, actor)
	if errors.Is(err, ErrRunNotActive) {
		// The view says running but no execution runs: the process that
		// started it died before its first step. Record the cancel here.
		view.Finish(RunCancelled, reason, u.Now())
		if _, err := u.Store.SaveRun(ctx, view, []Event{view.FinishedEvent(actor)}, nil); err != nil {
			return Run{}, err
		}
	} else if err != nil {
		return Run{}, fmt.Errorf("cancel run %s: %w", runID, err)
	}
	return u.GetRun(ctx, runID)
}

// Act applies a step action (a Migrator's report, a retry, an operator's
// override) to a running Run.
func (u *Runs) Act(ctx context.Context, runID string, a StepAction) (Acted, error) {
	acted, err := u.Engine.Act(ctx, runID, a)
	if err == nil && !acted.Changed && a.Kind == ActionReport {
		u.repairIfBehind(ctx, runID, acted.Step)
	}
	if errors.Is(err, ErrFailedPrecondition) {
		return acted, u.refusedAgainstView(ctx, runID, a, err)
	}
	if !errors.Is(err, ErrRunNotActive) {
		return acted, err
	}
	// No execution runs: answer from the view, so that a late duplicate of a
	// finished step (or an operator's skip sent again) is accepted and
	// anything else gets the precise refusal.
	view, verr := u.GetRun(ctx, runID)
	if verr != nil {
		return Acted{}, verr
	}
	if view.IsRepeat(a) {
		step, _ := view.Result(a.Step)
		return Acted{Step: step, Run: view}, nil
	}
	if view.Status != RunRunning {
		probe := view.Clone()
		_, err := probe.Apply(a, u.Now()) // the refusal, with where the Run stands
		return Acted{}, err
	}
	// The view says running but the engine has no running execution: it
	// may be starting again (a restart of Temporal answers so for a moment),
	// or the workflow ended without recording it (an older Loom could).
	// Retry later: the reconciler records how it ended, if it did.
	return Acted{}, Unavailable(ReasonExecutionEngineFailure,
		"run %s has no running execution in the engine though its view says running: retry later (if its workflow ended, ReconcileRuns — loom reconcile — records how)", runID).With("run_id", runID)
}

// catchUpWindow is how long after its last change a Run's view that
// allows an action the engine refuses is taken to be catching up (see
// refusedAgainstView); past it, the disagreement is not transient and the
// engine's refusal stands.
const catchUpWindow = time.Minute

// inspectWait bounds how long refusedAgainstView asks the engine where
// the Run stands: a workflow whose worker just died answers queries only
// once its task is retried elsewhere (up to the workflow task timeout).
const inspectWait = 3 * time.Second

// refusedAgainstView answers the engine's failed_precondition refusal of a
// when the Run's stored view says a is allowed: the view and the engine
// disagree. The view is written by the Run's workflow from inside a
// workflow task; a replica that dies in the middle of one can leave the
// view showing a change Temporal never recorded (a step open that Temporal
// still has in progress) until the task is retried elsewhere or the
// Migrator's report is sent again (seconds). An operator who acted on what
// the view showed is then answered unavailable (retry: the Run is catching
// up), not failed_precondition (do not retry: the state forbids it), which
// would be false a few seconds later.
//
// The refusal stands when the view refuses a too, when the Run is not
// running or the action names another execution, when the view has not
// changed for catchUpWindow (not a transient disagreement), and when the
// engine says it is ahead of the view (a view behind, about to be written:
// the refusal is the answer it will give). When the engine does not say
// in time, the caller is told to retry, which then finds them agreeing.
func (u *Runs) refusedAgainstView(ctx context.Context, runID string, a StepAction, refusal error) error {
	view, err := u.GetRun(ctx, runID)
	if err != nil || view.Status != RunRunning || (a.Execution != 0 && a.Execution != view.Execution) ||
		u.Now().Sub(view.UpdateTime) > catchUpWindow {
		return refusal
	}
	probe := view.Clone()
	if _, err := probe.Apply(a, u.Now()); err != nil {
		return refusal // the view refuses it too: they agree
	}
	ictx, cancel := context.WithTimeout(ctx, inspectWait)
	defer cancel()
	if ins, err := u.Engine.Inspect(ictx, runID); err == nil && ins.Run != nil &&
		ins.Run.Execution == view.Execution && ins.Run.Seq > view.Seq {
		return refusal // the view is behind the engine, which knows better
	}
	return Unavailable(ReasonExecutionEngineFailure,
		"run %s is catching up: its view (version %d) allows this but the execution engine has not recorded that state (%v); retry in a few seconds",
		runID, view.Version, refusal).With("run_id", runID)
}

// ResumeSteps dispatches again every step of a Migration's running Runs
// that is in progress, each with its attempt: its Migrator started again
// and may have lost the steps it was executing. Runs whose step moved on
// meanwhile are left alone. It returns how many were dispatched again.
func (u *Runs) ResumeSteps(ctx context.Context, migrationID, actor string) (int64, error) {
	if _, err := u.Store.GetMigration(ctx, migrationID); err != nil {
		return 0, err
	}
	var resumed atomic.Int64
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	after := ""
	for {
		page, err := u.Store.ListRuns(ctx, migrationID, RunFilter{Status: RunRunning, CurrentStepStatus: StepInProgress},
			PageRequest{After: after, Limit: MaxCandidatePageSize})
		if err != nil {
			return resumed.Load(), err
		}
		for _, r := range page.Runs {
			c := r.Current()
			a := StepAction{Kind: ActionRedispatch, Execution: r.Execution, Step: c.StepName, Attempt: c.Attempt, Actor: actor}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				_, err := u.Engine.Act(ctx, r.ID, a)
				var ref *Refusal
				switch {
				case err == nil:
					resumed.Add(1)
				case errors.Is(err, ErrRunNotActive), errors.As(err, &ref) && !errors.Is(err, ErrUnavailable):
					// Ended or moved on meanwhile: nothing to resume.
				default:
					failed.CompareAndSwap(nil, &err)
				}
			})
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return resumed.Load(), *err
	}
	return resumed.Load(), nil
}

// repairIfBehind compares the view of runID with a repeated report's answer
// (the step as the engine holds it) and, when the view is behind (a Redis
// that crashed with its last writes unsynced), copies the engine's Run into
// it. A Migrator repeating itself is how a view behind would show.
func (u *Runs) repairIfBehind(ctx context.Context, runID string, step StepResult) {
	view, err := u.GetRun(ctx, runID)
	if err != nil || view.Status != RunRunning {
		return
	}
	if got, ok := view.Result(step.StepName); ok && got.Status == step.Status && got.Attempt == step.Attempt {
		return
	}
	ins, err := u.Engine.Inspect(ctx, runID)
	if err != nil || ins.State != EngineRunning || ins.Run == nil || ins.Run.Execution != view.Execution || ins.Run.Seq <= view.Seq {
		return
	}
	_, _ = u.Store.SaveRun(ctx, *ins.Run, nil, nil)
}

// ReconcileReport says what Reconcile checked and fixed.
type ReconcileReport struct {
	Checked int64
	Fixed   []RunFix
}

// RunFix is one Run view Reconcile fixed: what it now shows, and why.
type RunFix struct {
	RunID  string
	Status RunStatus
	Reason string
}

// Reconcile brings the views of running Runs (of migrationID, or of every
// Migration when empty) back in line with the engine, which holds the
// truth: a Run whose workflow ended while its view still says running is
// recorded as it ended (a failed or missing workflow as cancelled, with the
// reason), which moves its Candidate to match. Views of workflows still
// running are theirs to write. The reconciler never invents state: it only
// copies what the engine says.
func (u *Runs) Reconcile(ctx context.Context, migrationID string) (ReconcileReport, error) {
	var ids []string
	if migrationID != "" {
		if _, err := u.Store.GetMigration(ctx, migrationID); err != nil {
			return ReconcileReport{}, err
		}
		ids = []string{migrationID}
	} else {
		for after := ""; ; {
			page, err := u.Store.ListMigrations(ctx, PageRequest{After: after, Limit: MaxMigrationPageSize})
			if err != nil {
				return ReconcileReport{}, err
			}
			for _, m := range page.Migrations {
				ids = append(ids, m.ID)
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
	}
	var rep ReconcileReport
	for _, m := range ids {
		for after := ""; ; {
			page, err := u.Store.ListRuns(ctx, m, RunFilter{Status: RunRunning}, PageRequest{After: after, Limit: MaxCandidatePageSize})
			if err != nil {
				return rep, err
			}
			for _, view := range page.Runs {
				rep.Checked++
				fix, err := u.reconcileRun(ctx, view)
				if err != nil {
					return rep, fmt.Errorf("reconcile run %s: %w", view.ID, err)
				}
				if fix != nil {
					rep.Fixed = append(rep.Fixed, *fix)
				}
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
	}
	return rep, nil
}

// reconcileRun fixes the view of one Run that says running, when the
// engine says its workflow ended.
func (u *Runs) reconcileRun(ctx context.Context, view Run) (*RunFix, error) {
	ins, err := u.Engine.Inspect(ctx, view.ID)
	if err != nil || ins.State == EngineRunning {
		return nil, err
	}
	// Read the view again: the workflow may have written its end meanwhile.
	if view, err = u.GetRun(ctx, view.ID); err != nil || view.Status != RunRunning {
		return nil, err
	}
	now := u.Now()
	final := view.Clone()
	var reason string
	switch ins.State {
	case EngineCompleted:
		reason = "its workflow completed"
		if ins.Run != nil && ins.Run.Execution == view.Execution && ins.Run.Status == RunCompleted {
			final = ins.Run.Clone()
			final.Seq = max(final.Seq, view.Seq) + 1
			final.UpdateTime = now
		} else {
			final.Finish(RunCompleted, "", now)
		}
	case EngineCancelled:
		reason = "its workflow was cancelled"
		final.Finish(RunCancelled, "cancelled", now)
	case EngineFailed:
		reason = "its workflow ended with an error (" + ins.Reason + "); start it again"
		final.Finish(RunCancelled, reason, now)
	case EngineMissing:
		reason = "no workflow runs it (its start did not finish, or the engine lost it); start it again"
		final.Finish(RunCancelled, reason, now)
	default:
		return nil, fmt.Errorf("unknown engine state %q", ins.State)
	}
	ev := final.FinishedEvent(ActorLoom)
	if ev.Details == nil {
		ev.Details = map[string]string{}
	}
	ev.Details["reconciled"] = reason
	if _, err := u.Store.SaveRun(ctx, final, []Event{ev}, nil); err != nil {
		return nil, err
	}
	return &RunFix{RunID: view.ID, Status: final.Status, Reason: reason}, nil
}

// GetRun returns the view of a Run.
func (u *Runs) GetRun(ctx context.Context, runID string) (Run, error) {
	m, c, ok := ParseRunID(runID)
	if !ok {
		return Run{}, InvalidArgument("run_id", ReasonInvalidRunID, "run id %q is not {migration_id}__{candidate_id}", runID)
	}
	return u.getRun(ctx, runID, m, c)
}

// getRun reads the view of Run runID (of Candidate c of Migration m). A
// Run the store has no view of, but whose execution the engine says is
// running, was started and is not recorded yet: a start answered
// unavailable (the store down after the engine started it) stands, its
// retry answers already_exists, and the view is written by the Run's
// workflow once the store answers it again. Such a Run is answered
// unavailable (retry in a few seconds), not not_found, which would be
// false. The engine is asked only for a view not found, for at most
// notRecordedWait; when it cannot say, not_found stands, as for a
// Candidate never run (by far the most common case, which must not wait
// long for an engine that is down).
func (u *Runs) getRun(ctx context.Context, runID, m, c string) (Run, error) {
	run, err := u.Store.GetRun(ctx, m, c)
	var ref *Refusal
	if err == nil || u.Engine == nil || !errors.As(err, &ref) || ref.Reason != ReasonRunNotFound {
		return run, err
	}
	ictx, cancel := context.WithTimeout(ctx, notRecordedWait)
	defer cancel()
	if ins, ierr := u.Engine.Inspect(ictx, runID); ierr == nil && ins.State == EngineRunning {
		return Run{}, Unavailable(ReasonStoreUnavailable,
			"run %s was started and its execution is running, but it is not recorded yet (the store was unavailable when it started); retry in a few seconds", runID).With("run_id", runID)
	}
	return run, err
}

// notRecordedWait bounds how long getRun asks the engine about a Run with
// no view.
const notRecordedWait = 500 * time.Millisecond

// ListRuns returns a page of a Migration's Runs in Candidate id order.
func (u *Runs) ListRuns(ctx context.Context, migrationID string, f RunFilter, page PageRequest) (RunPage, error) {
	page.Limit = clampPage(page.Limit, DefaultCandidatePageSize, MaxCandidatePageSize)
	return u.Store.ListRuns(ctx, migrationID, f, page)
}

// WatchRun sends the Run after afterVersion, then every newer version, and
// calls heartbeat when nothing changed for u.Heartbeat. It returns once a
// completed or cancelled Run was sent, or when ctx ends.
func (u *Runs) WatchRun(ctx context.Context, runID string, afterVersion int64, send func(Run) error, heartbeat func(time.Time) error) error {
	m, c, ok := ParseRunID(runID)
	if !ok {
		return InvalidArgument("run_id", ReasonInvalidRunID, "run id %q is not {migration_id}__{candidate_id}", runID)
	}
	return watchView(ctx, watchedView[Run]{
		subscribe: func(ctx context.Context) (<-chan struct{}, error) { return u.Store.WatchRun(ctx, m, c) },
		read:      func(ctx context.Context) (Run, error) { return u.getRun(ctx, runID, m, c) },
		version:   func(r Run) int64 { return r.Version },
		ended:     func(r Run) bool { return r.Status != RunRunning },
		interrupted: func(last int64) error {
			return Unavailable(ReasonStoreUnavailable, "the watch of run %s was interrupted; watch again from version %d", runID, last)
		},
	}, u.Heartbeat, u.Now, afterVersion, send, heartbeat)
}

// PreviewRun asks the Migrator what each step would change for a
// Candidate. Nothing is stored.
func (u *Runs) PreviewRun(ctx context.Context, migrationID, candidateID string, inputs map[string]string) ([]StepPreview, error) {
	m, c, err := u.Store.GetMigrationAndCandidate(ctx, migrationID, candidateID)
	if err != nil {
		return nil, err
	}
	// A preview shows what a start with these inputs would do: a start
	// that would be refused is refused here too, before the Migrator is
	// asked to compute diffs from an input it lacks.
	merged, err := runInputs(m, c, inputs)
	if err != nil {
		return nil, err
	}
	steps := c.Steps
	if len(steps) == 0 {
		steps = m.Steps
	}
	timeout := u.PreviewTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	previews, err := u.Migrators.PreviewRun(ctx, m.MigratorURL, PreviewRequest{
		MigrationID: m.ID,
		Steps:       steps,
		Candidate:   c,
		Inputs:      merged,
	})
	if err != nil {
		return nil, err
	}
	// Answer in step order with one entry per step, whatever the Migrator sent.
	byName := make(map[string]StepPreview, len(previews))
	for _, p := range previews {
		byName[p.StepName] = p
	}
	out := make([]StepPreview, len(steps))
	for i, s := range steps {
		p, ok := byName[s.Name]
		if !ok {
			p = StepPreview{StepName: s.Name, Error: "the Migrator returned no preview for this step"}
		}
		out[i] = p
	}
	return out, nil
}
