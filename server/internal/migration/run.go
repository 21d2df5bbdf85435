package migration

import (
	"fmt"
	"maps"
	"strconv"
	"time"
)

// RunStatus is where a Run stands.
type RunStatus string

// The Run statuses. A Run whose current step failed is still running.
const (
	RunRunning   RunStatus = "running"
	RunCompleted RunStatus = "completed"
	RunCancelled RunStatus = "cancelled"
)

// RunStatuses lists every Run status.
var RunStatuses = []RunStatus{RunRunning, RunCompleted, RunCancelled}

// StepStatus is the status of one step of a Run.
type StepStatus string

// The step statuses; allowed holds the moves a Migrator's reports may make,
// Run.Apply the others (retry, review, mark merged, skip, adopt a pull
// request, cancel).
const (
	StepInProgress     StepStatus = "in_progress"
	StepOpen           StepStatus = "open"
	StepMerged         StepStatus = "merged"
	StepAwaitingReview StepStatus = "awaiting_review"
	StepCompleted      StepStatus = "completed"
	StepFailed         StepStatus = "failed"
	// StepSkipped is a step an operator skipped (ActionSkip): done, the Run
	// moves on; its message is the operator's reason.
	StepSkipped StepStatus = "skipped"
)

// StepStatuses lists every step status.
var StepStatuses = []StepStatus{StepInProgress, StepOpen, StepMerged, StepAwaitingReview, StepCompleted, StepFailed, StepSkipped}

// Succeeded reports whether the step is done and the Run may move on: merged,
// completed, or skipped by an operator.
func (s StepStatus) Succeeded() bool {
	return s == StepMerged || s == StepCompleted || s == StepSkipped
}

// Run is one execution of a Migration against one Candidate, as its
// workflow keeps it and as the run view shows it.
type Run struct {
	ID          string
	MigrationID string
	CandidateID string
	Execution   int64
	Status      RunStatus
	Steps       []StepDefinition
	// Results holds one entry per step reached, in step order.
	Results      []StepResult
	Inputs       map[string]string
	StartTime    time.Time
	UpdateTime   time.Time
	EndTime      time.Time
	CancelReason string
	// StartedBy is who started this execution.
	StartedBy string
	// StartNote is why it was started, when its starter said; recorded in
	// run_started only, not kept in the view.
	StartNote string `json:",omitempty"`
	// RolloutID is the rollout that started this execution, if one did.
	RolloutID string `json:",omitempty"`
	// Seq counts the changes of this execution; the store keeps a view only
	// when its Seq is newer than the one it has.
	Seq int64
	// Version is assigned by the store: it grows with every stored change,
	// across executions.
	Version int64
}

// StepResult is the outcome so far of one step of a Run.
type StepResult struct {
	StepName   string
	Status     StepStatus
	Metadata   map[string]string
	PRURL      string
	Message    string
	Attempt    int
	StartTime  time.Time
	UpdateTime time.Time
	EndTime    time.Time
	// LastReport is when the Migrator last reported on this attempt (or its
	// dispatch, before any report): the clock of StepDefinition.ReportTimeout.
	LastReport time.Time
	// OpenTime is when the attempt's pull request was first reported open.
	OpenTime time.Time
	Actor    string
	// Dispatches counts the dispatches of this attempt: 1, and one more each
	// time its lease ran out (zero in views written before it was kept).
	Dispatches int

	// While Loom cannot hand the attempt to its Migrator: the failed tries
	// so far, the last one's error and when the next is due. Kept by the
	// store beside the view (set on reads); never part of the workflow's
	// state.
	DispatchFailures  int
	LastDispatchError string
	NextDispatchTime  time.Time
}

// Current returns the result of the step the Run is on, or nil before the
// first dispatch.
func (r *Run) Current() *StepResult {
	if len(r.Results) == 0 {
		return nil
	}
	return &r.Results[len(r.Results)-1]
}

// Result returns the latest result of the step named name, if reached.
func (r *Run) Result(name string) (StepResult, bool) {
	for i := len(r.Results) - 1; i >= 0; i-- {
		if r.Results[i].StepName == name {
			return r.Results[i], true
		}
	}
	return StepResult{}, false
}

// CurrentDefinition returns the definition of the current step.
func (r *Run) CurrentDefinition() StepDefinition {
	return r.Steps[len(r.Results)-1]
}

// Clone returns a deep copy of r, so a change can be tried without touching r.
func (r Run) Clone() Run {
	r.Results = append([]StepResult(nil), r.Results...)
	for i := range r.Results {
		r.Results[i].Metadata = maps.Clone(r.Results[i].Metadata)
	}
	r.Inputs = maps.Clone(r.Inputs)
	return r
}

// CurrentStepName is the name of the current step, empty once completed or
// before the first dispatch.
func (r *Run) CurrentStepName() string {
	if c := r.Current(); c != nil && r.Status == RunRunning {
		return c.StepName
	}
	return ""
}

// CurrentStepStatus is the status of the current step, empty once completed
// or before the first dispatch.
func (r *Run) CurrentStepStatus() StepStatus {
	if c := r.Current(); c != nil && r.Status == RunRunning {
		return c.Status
	}
	return ""
}

// BeginStep records the dispatch of step index i at the given attempt: the
// step is in progress. A retry (i already reached) replaces the failed
// attempt's result with a clean one: its pull request, metadata and
// message belonged to that attempt, and stay in the history's events.
func (r *Run) BeginStep(i, attempt int, now time.Time) {
	res := StepResult{
		StepName:   r.Steps[i].Name,
		Status:     StepInProgress,
		Attempt:    attempt,
		StartTime:  now,
		UpdateTime: now,
		LastReport: now,
		Actor:      ActorLoom,
		Dispatches: 1,
	}
	if i < len(r.Results) {
		r.Results[i] = res
	} else {
		r.Results = append(r.Results, res)
	}
	r.touch(now)
}

// Redispatch records that the current attempt is dispatched again (its
// lease ran out). The Migrator's silence goes on: LastReport stays.
func (r *Run) Redispatch(now time.Time) {
	c := r.Current()
	c.Dispatches++
	c.UpdateTime = now
	r.touch(now)
}

// FailStep fails the current step with a reason (dispatch refused, no
// report in time).
func (r *Run) FailStep(message string, now time.Time) {
	c := r.Current()
	c.Status, c.Message, c.UpdateTime, c.Actor = StepFailed, message, now, ActorLoom
	r.touch(now)
}

// Finish ends the Run completed or cancelled.
func (r *Run) Finish(status RunStatus, reason string, now time.Time) {
	r.Status, r.EndTime, r.CancelReason = status, now, reason
	r.touch(now)
}

func (r *Run) touch(now time.Time) {
	r.UpdateTime = now
	r.Seq++
}

// Actors recorded on steps besides operators' names.
const (
	ActorLoom     = "loom"
	ActorMigrator = "migrator"
)

// ActionKind says who asks for a step change and how.
type ActionKind string

// The step actions. Each is checked against the transition table before it
// changes anything.
const (
	// ActionReport is a Migrator's report (EventService).
	ActionReport ActionKind = "report"
	// ActionRetry dispatches a failed step again as its next attempt.
	ActionRetry ActionKind = "retry"
	// ActionFinishReview finishes an awaiting_review step as completed or failed.
	ActionFinishReview ActionKind = "finish_review"
	// ActionMarkMerged marks an open step merged outside Loom.
	ActionMarkMerged ActionKind = "mark_merged"
	// ActionRedispatch dispatches the current attempt of a step in progress
	// again, at its Migrator's request (it restarted: EventService.ResumeSteps).
	ActionRedispatch ActionKind = "redispatch"
	// ActionSkip skips the current step (in progress, open, awaiting review
	// or failed) with a reason (Message): the step is skipped and the Run
	// moves on.
	ActionSkip ActionKind = "skip"
	// ActionAdoptPR tells Loom the current step's pull request already
	// exists, at PRURL: a step in progress or failed becomes open with it,
	// and waits for its merge as after a Migrator's open report.
	ActionAdoptPR ActionKind = "adopt_pr"
)

// StepAction is a request to change the current step of a Run.
type StepAction struct {
	Kind ActionKind
	// Execution the caller acts on; 0 means the current one (operators name
	// the step and attempt, which is enough to make their actions safe).
	Execution int64
	Step      string
	Attempt   int
	// Status is the reported status (ActionReport) or the outcome
	// (ActionFinishReview).
	Status StepStatus
	// PRURL is the reported pull request (ActionReport) or the adopted one
	// (ActionAdoptPR); Message the report's message, the review's note, the
	// reason of a skip, or the operator's note on a retry (recorded in the
	// history only: the new attempt starts without a message).
	PRURL    string
	Message  string
	Metadata map[string]string
	Actor    string
}

// allowed is the step transition table of a Migrator's reports. Failed →
// in_progress is only reachable through ActionRetry.
var allowed = map[StepStatus][]StepStatus{
	StepInProgress:     {StepInProgress, StepOpen, StepAwaitingReview, StepMerged, StepCompleted, StepFailed},
	StepOpen:           {StepOpen, StepMerged, StepFailed},
	StepAwaitingReview: {StepCompleted, StepFailed},
}

func reportAllowed(from, to StepStatus) bool {
	for _, s := range allowed[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Apply checks a against the Run and, when allowed, changes the current
// step. It reports whether anything changed: repeating the current status
// with the same data is accepted and changes nothing. Refusals change nothing
// and say where the step stands.
func (r *Run) Apply(a StepAction, now time.Time) (changed bool, err error) {
	if r.IsRepeat(a) || r.repeatsCurrent(a) {
		return false, nil
	}
	if err := r.check(a); err != nil {
		return false, err
	}
	c := r.Current()
	switch a.Kind {
	case ActionRetry:
		r.BeginStep(len(r.Results)-1, c.Attempt+1, now)
		r.Current().Actor = a.Actor
		return true, nil
	case ActionRedispatch:
		r.Redispatch(now)
		return true, nil
	case ActionFinishReview:
		c.Status, c.Message = a.Status, a.Message
	case ActionMarkMerged:
		c.Status = StepMerged
		if a.Message != "" {
			c.Message = a.Message
		}
	case ActionSkip:
		c.Status, c.Message = StepSkipped, a.Message
	case ActionAdoptPR:
		// The failure or progress message of the attempt belonged to the
		// work the pull request replaces; it stays in the history. The
		// operator's note, if any, says why the step is open.
		c.Status, c.PRURL, c.Message = StepOpen, a.PRURL, a.Message
		if c.OpenTime.IsZero() {
			c.OpenTime = now
		}
	case ActionReport:
		next := *c
		next.Status = a.Status
		if a.PRURL != "" {
			next.PRURL = a.PRURL
		}
		if a.Message != "" {
			next.Message = a.Message
		}
		if len(a.Metadata) > 0 {
			next.Metadata = maps.Clone(a.Metadata)
		}
		if next.Status == c.Status && next.PRURL == c.PRURL && next.Message == c.Message && maps.Equal(next.Metadata, c.Metadata) {
			return false, nil
		}
		next.LastReport = now
		if next.Status == StepOpen && next.OpenTime.IsZero() {
			next.OpenTime = now
		}
		*c = next
	}
	c.Actor = a.Actor
	c.UpdateTime = now
	if c.Status.Succeeded() {
		c.EndTime = now
	}
	r.touch(now)
	return true, nil
}

// IsDuplicateReport reports whether a is a Migrator's report that repeats
// the final status of a step the Run has already moved past (or finished
// with): a late duplicate delivery, harmless, accepted without change.
func (r *Run) IsDuplicateReport(a StepAction) bool {
	if a.Kind != ActionReport || !a.Status.Succeeded() || (a.Execution != 0 && a.Execution != r.Execution) {
		return false
	}
	for i, res := range r.Results {
		past := i < len(r.Results)-1 || r.Status != RunRunning
		if past && res.StepName == a.Step && res.Attempt == a.Attempt && res.Status == a.Status {
			return true
		}
	}
	return false
}

// IsRepeat reports whether a changes nothing because it already happened:
// a Migrator's late duplicate report (IsDuplicateReport), or an operator's
// skip or adoption sent again with the same values for the same step and
// attempt, whether the Run is still on that step or has moved past it.
// Accepted without change.
func (r *Run) IsRepeat(a StepAction) bool {
	if r.IsDuplicateReport(a) {
		return true
	}
	if (a.Kind != ActionSkip && a.Kind != ActionAdoptPR) || (a.Execution != 0 && a.Execution != r.Execution) {
		return false
	}
	res, ok := r.Result(a.Step)
	if !ok || res.Attempt != a.Attempt {
		return false
	}
	if a.Kind == ActionSkip {
		return res.Status == StepSkipped && res.Message == a.Message
	}
	return res.PRURL == a.PRURL && (res.Status == StepOpen || res.Status == StepMerged)
}

// repeatsCurrent reports whether a is a Migrator's report of exactly the
// current step's state (status and data): a duplicate delivery, accepted
// without change whatever the status, even those the table lets no report
// repeat (awaiting_review, failed).
func (r *Run) repeatsCurrent(a StepAction) bool {
	c := r.Current()
	if a.Kind != ActionReport || c == nil || r.Status != RunRunning || (a.Execution != 0 && a.Execution != r.Execution) ||
		a.Step != c.StepName || a.Attempt != c.Attempt || a.Status != c.Status {
		return false
	}
	return (a.PRURL == "" || a.PRURL == c.PRURL) && (a.Message == "" || a.Message == c.Message) &&
		(len(a.Metadata) == 0 || maps.Equal(a.Metadata, c.Metadata))
}

func (r *Run) check(a StepAction) error {
	c := r.Current()
	switch {
	case a.Kind == ActionSkip && a.Message == "":
		return InvalidArgument("reason", ReasonMissingReason, "a skip needs a reason")
	case a.Kind == ActionAdoptPR && a.PRURL == "":
		return InvalidArgument("pr_url", ReasonMissingPRURL, "adopting a pull request needs its URL")
	}
	refuse := func(reason, format string, args ...any) error {
		ref := FailedPrecondition(reason, format, args...).
			With("run_id", r.ID).
			With("execution", strconv.FormatInt(r.Execution, 10)).
			With("run_status", string(r.Status))
		if c != nil {
			ref.With("current_step", c.StepName).
				With("current_status", string(c.Status)).
				With("current_attempt", strconv.Itoa(c.Attempt))
		}
		return ref
	}
	switch {
	case r.Status != RunRunning:
		return refuse(ReasonRunNotRunning, "run %s is %s", r.ID, r.Status)
	case a.Execution != 0 && a.Execution != r.Execution:
		return refuse(ReasonStaleExecution, "execution %d of run %s is not the current one (%d)", a.Execution, r.ID, r.Execution)
	case c == nil:
		return refuse(ReasonStepNotCurrent, "run %s has not dispatched a step yet", r.ID)
	case a.Step != c.StepName:
		return refuse(ReasonStepNotCurrent, "step %q is not the current step of run %s (%q is)", a.Step, r.ID, c.StepName)
	case a.Attempt != c.Attempt:
		return refuse(ReasonStaleAttempt, "attempt %d of step %q is not the current one (%d)", a.Attempt, a.Step, c.Attempt)
	}
	var ok bool
	switch a.Kind {
	case ActionReport:
		ok = reportAllowed(c.Status, a.Status)
	case ActionRetry:
		ok = c.Status == StepFailed
	case ActionFinishReview:
		ok = c.Status == StepAwaitingReview && (a.Status == StepCompleted || a.Status == StepFailed)
	case ActionMarkMerged:
		ok = c.Status == StepOpen
	case ActionRedispatch:
		ok = c.Status == StepInProgress
	case ActionSkip:
		ok = c.Status == StepInProgress || c.Status == StepOpen || c.Status == StepAwaitingReview || c.Status == StepFailed
	case ActionAdoptPR:
		// An open step has its pull request: adopting another is refused
		// (the same one is a repeat, accepted above).
		ok = c.Status == StepInProgress || c.Status == StepFailed
	default:
		return fmt.Errorf("unknown step action %q", a.Kind)
	}
	if !ok {
		what := string(a.Kind)
		if a.Kind == ActionReport || a.Kind == ActionFinishReview {
			what += " " + string(a.Status)
		}
		return refuse(ReasonTransitionNotAllowed, "step %q is %s: %s is not allowed", c.StepName, c.Status, what)
	}
	return nil
}
