package migration

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EventKind says what a lifecycle event records.
type EventKind string

// The lifecycle events. Their names are stored: never rename one.
const (
	EventMigrationAnnounced     EventKind = "migration_announced"
	EventMigrationUpdated       EventKind = "migration_updated"
	EventMigrationDeleted       EventKind = "migration_deleted"
	EventCandidatesDiscovered   EventKind = "candidates_discovered"
	EventCandidateDiscovered    EventKind = "candidate_discovered"
	EventCandidateInputsUpdated EventKind = "candidate_inputs_updated"
	EventRunStarted             EventKind = "run_started"
	EventStepDispatched         EventKind = "step_dispatched"
	EventDispatchFailed         EventKind = "dispatch_failed"
	EventStepReported           EventKind = "step_reported"
	EventStepFailed             EventKind = "step_failed"
	EventStepRetried            EventKind = "step_retried"
	EventReviewFinished         EventKind = "review_finished"
	EventStepMarkedMerged       EventKind = "step_marked_merged"
	EventRunCancelled           EventKind = "run_cancelled"
	EventRunCompleted           EventKind = "run_completed"
	EventStepSkipped            EventKind = "step_skipped"
	EventPRAdopted              EventKind = "pr_adopted"
)

// EventKinds lists every kind.
var EventKinds = []EventKind{
	EventMigrationAnnounced, EventMigrationUpdated, EventMigrationDeleted, EventCandidatesDiscovered,
	EventCandidateDiscovered, EventCandidateInputsUpdated, EventRunStarted, EventStepDispatched,
	EventDispatchFailed, EventStepReported, EventStepFailed, EventStepRetried, EventReviewFinished,
	EventStepMarkedMerged, EventRunCancelled, EventRunCompleted, EventStepSkipped, EventPRAdopted,
	EventRolloutStarted, EventRolloutPaused, EventRolloutResumed, EventRolloutUpdated,
	EventRolloutAwaitingApproval, EventRolloutCancelled, EventRolloutCompleted,
}

// Event is one immutable lifecycle event. The store writes it in the same
// atomic step as the change it records.
type Event struct {
	// ID is assigned by the store: unique and time-ordered.
	ID          string
	Time        time.Time
	Kind        EventKind
	MigrationID string
	CandidateID string
	RunID       string
	Execution   int64
	Step        string
	Attempt     int
	Actor       string
	Details     map[string]string
	// Seq is, for an event of a Run's change, the Run's Seq after that
	// change; 0 when it is of no Run's change. Not kept: the store uses it
	// to record each change's events once (see the store's saveRunScript).
	Seq int64 `json:",omitempty"`
}

// EventFilter selects events. Zero fields select all.
type EventFilter struct {
	CandidateID string
	// CandidatePrefix keeps the events of the Candidates whose id starts
	// with it; events about no Candidate do not pass.
	CandidatePrefix string
	Kinds           []EventKind
	// ReportedStatuses keeps, of the events that set a step's status from
	// a report (step_reported by a Migrator, review_finished by an
	// operator), those whose status (their "status" detail) is one of
	// these; events of other kinds pass. It is how the failures reported
	// are found beside the steps Loom failed itself (step_failed).
	ReportedStatuses []StepStatus
	Since            time.Time
	Until            time.Time
}

// Matches reports whether e passes the filter.
func (f EventFilter) Matches(e Event) bool {
	if f.CandidateID != "" && e.CandidateID != f.CandidateID {
		return false
	}
	if f.CandidatePrefix != "" && (e.CandidateID == "" || !strings.HasPrefix(e.CandidateID, f.CandidatePrefix)) {
		return false
	}
	if len(f.Kinds) > 0 {
		ok := false
		for _, k := range f.Kinds {
			ok = ok || k == e.Kind
		}
		if !ok {
			return false
		}
	}
	if len(f.ReportedStatuses) > 0 && (e.Kind == EventStepReported || e.Kind == EventReviewFinished) &&
		!slices.Contains(f.ReportedStatuses, StepStatus(e.Details["status"])) {
		return false
	}
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !e.Time.Before(f.Until) {
		return false
	}
	return true
}

// EventPage is one page of events, newest first.
type EventPage struct {
	Events []Event
	// Next is the id to pass as PageRequest.After for older events.
	Next string
}

// HistoryStore keeps the lifecycle history.
type HistoryStore interface {
	// ListEvents pages through a Migration's events, newest first.
	ListEvents(ctx context.Context, migrationID string, f EventFilter, page PageRequest) (EventPage, error)
	// EventsAfter returns the events after id (oldest first), at most limit.
	EventsAfter(ctx context.Context, migrationID, candidateID, afterID string, limit int) ([]Event, error)
	// WatchEvents notifies of every new event of a Migration until ctx ends.
	WatchEvents(ctx context.Context, migrationID string) (<-chan struct{}, error)
	// WatchFleet names the Migrations whose history grew, as they come
	// (best effort: names may be dropped), until ctx ends.
	WatchFleet(ctx context.Context) (<-chan string, error)
	// MigrationIDs lists every Migration's id.
	MigrationIDs(ctx context.Context) ([]string, error)
	// EventIDNow is an event id no later than any event written after it.
	EventIDNow(ctx context.Context) (string, error)
	// LatestEventID is the id of the Migration's newest event ("" if none).
	LatestEventID(ctx context.Context, migrationID string) (string, error)
	// AppendEvents records events that come with no change of state (a
	// dispatch that failed and will be retried).
	AppendEvents(ctx context.Context, migrationID string, events []Event) error
}

type actorKey struct{}

// WithActor returns ctx naming who acts: recorded in the events the
// request causes.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom names who acts in ctx, "loom" when nobody does.
func ActorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return ActorLoom
}

// event is an event of the Run.
func (r *Run) event(kind EventKind, now time.Time, actor string, details map[string]string) Event {
	e := Event{Time: now, Kind: kind, MigrationID: r.MigrationID, CandidateID: r.CandidateID, RunID: r.ID,
		Execution: r.Execution, Actor: actor, Details: details}
	if c := r.Current(); c != nil {
		e.Step, e.Attempt = c.StepName, c.Attempt
	}
	return e
}

// StartedEvent records the start of an execution, with its inputs.
func (r *Run) StartedEvent(actor string) Event {
	d := map[string]string{}
	for k, v := range r.Inputs {
		d["inputs."+k] = v
	}
	if r.StartNote != "" {
		d["note"] = r.StartNote
	}
	return r.event(EventRunStarted, r.StartTime, actor, d)
}

// DispatchedEvent records the dispatch of the current attempt.
func (r *Run) DispatchedEvent(now time.Time) Event {
	return r.event(EventStepDispatched, now, ActorLoom, nil)
}

// RedispatchedEvent records a step dispatched again, same attempt, and why.
func (r *Run) RedispatchedEvent(now time.Time, reason string) Event {
	return r.event(EventStepDispatched, now, ActorLoom, map[string]string{"reason": reason})
}

// FailedEvent records a step Loom failed itself.
func (r *Run) FailedEvent(now time.Time, reason string) Event {
	return r.event(EventStepFailed, now, ActorLoom, map[string]string{"reason": reason})
}

// FinishedEvent records the end of the Run.
func (r *Run) FinishedEvent(actor string) Event {
	var e Event
	if r.Status == RunCancelled {
		e = r.event(EventRunCancelled, r.EndTime, actor, map[string]string{"reason": r.CancelReason})
	} else {
		e = r.event(EventRunCompleted, r.EndTime, ActorLoom, nil)
	}
	e.Step, e.Attempt = "", 0
	return e
}

// ActionEvents records an applied action: what happened to the current step,
// as seen right after Apply.
func (r *Run) ActionEvents(a StepAction, now time.Time) []Event {
	c := r.Current()
	switch a.Kind {
	case ActionReport:
		d := map[string]string{"status": string(c.Status)}
		if a.PRURL != "" {
			d["pr_url"] = a.PRURL
		}
		if a.Message != "" {
			d["message"] = a.Message
		}
		maps.Copy(d, prefixed("metadata.", a.Metadata))
		return []Event{r.event(EventStepReported, now, a.Actor, d)}
	case ActionRetry:
		d := map[string]string{"failed_attempt": strconv.Itoa(a.Attempt)}
		if a.Message != "" {
			// Only when given: a retry without a note records what it
			// always did.
			d["note"] = a.Message
		}
		retried := r.event(EventStepRetried, now, a.Actor, d)
		retried.Attempt = a.Attempt
		return []Event{retried, r.DispatchedEvent(now)}
	case ActionFinishReview:
		return []Event{r.event(EventReviewFinished, now, a.Actor, map[string]string{"status": string(c.Status), "message": a.Message})}
	case ActionMarkMerged:
		return []Event{r.event(EventStepMarkedMerged, now, a.Actor, map[string]string{"message": a.Message})}
	case ActionSkip:
		return []Event{r.event(EventStepSkipped, now, a.Actor, map[string]string{"reason": a.Message})}
	case ActionAdoptPR:
		d := map[string]string{"pr_url": a.PRURL}
		if a.Message != "" {
			d["note"] = a.Message
		}
		return []Event{r.event(EventPRAdopted, now, a.Actor, d)}
	case ActionRedispatch:
		ev := r.RedispatchedEvent(now, "the Migrator started again and asked for its steps in progress")
		ev.Actor = a.Actor
		return []Event{ev}
	}
	return nil
}

func prefixed(prefix string, m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[prefix+k] = v
	}
	return out
}

// Observation is a duration measured when a step succeeds.
type Observation struct {
	Step string
	// Merge is true for open → merged (time to merge), false for
	// dispatch → success.
	Merge    bool
	Duration time.Duration
	// Seq is, as Event.Seq, the Run's Seq after the change measured: the
	// store counts an observation once per change, even when a save of a
	// workflow task that then died counted it already.
	Seq int64 `json:",omitempty"`
}

// Observations measures the current step if it just succeeded.
func (r *Run) Observations(now time.Time) []Observation {
	c := r.Current()
	if c == nil || !c.Status.Succeeded() || c.Status == StepSkipped {
		// A skipped step did not do its work: nothing to measure.
		return nil
	}
	out := []Observation{{Step: c.StepName, Duration: now.Sub(c.StartTime)}}
	if c.Status == StepMerged && !c.OpenTime.IsZero() {
		out = append(out, Observation{Step: c.StepName, Merge: true, Duration: now.Sub(c.OpenTime)})
	}
	return out
}
