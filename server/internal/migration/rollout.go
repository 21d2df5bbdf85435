package migration

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"time"
)

// A Rollout starts the Runs of a selection of one Migration's Candidates,
// durably and at a pace (see proto/loom/v1/rollout.proto). It is executed
// by the RolloutEngine as a workflow of its own; its view is kept by the
// RolloutStore, written by that workflow only.

// RolloutState is where a rollout stands.
type RolloutState string

// The rollout states.
const (
	RolloutRunning          RolloutState = "running"
	RolloutAwaitingApproval RolloutState = "awaiting_approval"
	RolloutPaused           RolloutState = "paused"
	RolloutCompleted        RolloutState = "completed"
	RolloutCancelled        RolloutState = "cancelled"
)

// Ended reports whether the rollout will change no more.
func (s RolloutState) Ended() bool { return s == RolloutCompleted || s == RolloutCancelled }

// CanaryContinuation says what follows a successful canary wave.
type CanaryContinuation string

// The continuations after a canary wave.
const (
	AfterCanaryApproval  CanaryContinuation = "approval"
	AfterCanaryAutomatic CanaryContinuation = "automatic"
)

// FailureThreshold pauses a rollout when Failures of the latest Window
// outcomes of its Runs were failures (an outcome: a step failed, or a Run
// completed). The zero value never pauses.
type FailureThreshold struct {
	Failures int `json:",omitempty"`
	Window   int `json:",omitempty"`
}

// Off reports whether the threshold never pauses.
func (t FailureThreshold) Off() bool { return t.Failures <= 0 || t.Window <= 0 }

// RolloutSettings say how a rollout paces itself and when it pauses.
type RolloutSettings struct {
	MaxInFlight        int
	CanarySize         int                `json:",omitempty"`
	AfterCanary        CanaryContinuation `json:",omitempty"`
	PauseOnFailures    FailureThreshold   `json:",omitzero"`
	MaxStartsPerMinute int                `json:",omitempty"`
	MaxOpenPRs         int                `json:",omitempty"`
}

// The settings an UpdateRollout may change, by their API names.
const (
	SettingMaxInFlight        = "max_in_flight"
	SettingMaxStartsPerMinute = "max_starts_per_minute"
	SettingMaxOpenPRs         = "max_open_pull_requests"
	SettingPauseOnFailures    = "pause_on_failures"
)

// Apply returns s with the fields named in mask taken from n.
func (s RolloutSettings) Apply(n RolloutSettings, mask []string) RolloutSettings {
	for _, f := range mask {
		switch f {
		case SettingMaxInFlight:
			s.MaxInFlight = n.MaxInFlight
		case SettingMaxStartsPerMinute:
			s.MaxStartsPerMinute = n.MaxStartsPerMinute
		case SettingMaxOpenPRs:
			s.MaxOpenPRs = n.MaxOpenPRs
		case SettingPauseOnFailures:
			s.PauseOnFailures = n.PauseOnFailures
		}
	}
	return s
}

// SettingsDetails are settings as event details.
func SettingsDetails(s RolloutSettings) map[string]string {
	d := map[string]string{
		"max_in_flight":          strconv.Itoa(s.MaxInFlight),
		"max_starts_per_minute":  strconv.Itoa(s.MaxStartsPerMinute),
		"max_open_pull_requests": strconv.Itoa(s.MaxOpenPRs),
	}
	if s.CanarySize > 0 {
		d["canary_size"], d["after_canary"] = strconv.Itoa(s.CanarySize), string(s.AfterCanary)
	}
	if !s.PauseOnFailures.Off() {
		d["pause_on_failures"] = fmt.Sprintf("%d/%d", s.PauseOnFailures.Failures, s.PauseOnFailures.Window)
	}
	return d
}

// check refuses settings a rollout cannot run with, naming the field.
func (s RolloutSettings) check(prefix string) error {
	switch {
	case s.MaxInFlight < 1 || s.MaxInFlight > MaxRolloutInFlight:
		return InvalidArgument(prefix+"max_in_flight", ReasonInvalidSetting, "max_in_flight must be 1 to %d", MaxRolloutInFlight)
	case s.CanarySize < 0:
		return InvalidArgument(prefix+"canary_size", ReasonInvalidSetting, "canary_size must not be negative")
	case s.MaxStartsPerMinute < 0:
		return InvalidArgument(prefix+"max_starts_per_minute", ReasonInvalidSetting, "max_starts_per_minute must not be negative")
	case s.MaxOpenPRs < 0:
		return InvalidArgument(prefix+"max_open_pull_requests", ReasonInvalidSetting, "max_open_pull_requests must not be negative")
	case !s.PauseOnFailures.Off() && s.PauseOnFailures.Failures > s.PauseOnFailures.Window:
		return InvalidArgument(prefix+"pause_on_failures", ReasonInvalidSetting, "failures must be at most window")
	}
	return nil
}

// MaxRolloutInFlight bounds RolloutSettings.MaxInFlight.
const MaxRolloutInFlight = 10000

// MaxRolloutCandidates is the most Candidates one rollout may select: its
// selection is resolved and checked whole before it starts.
const MaxRolloutCandidates = 100_000

// RolloutProgress is how far a rollout got.
type RolloutProgress struct {
	Planned   int
	Started   int `json:",omitempty"`
	InFlight  int `json:",omitempty"`
	Completed int `json:",omitempty"`
	// Failed counts the Runs in flight whose current step failed.
	Failed    int `json:",omitempty"`
	Cancelled int `json:",omitempty"`
	// Skipped counts the Candidates StartRun refused when their turn came;
	// SkippedReason is the latest refusal.
	Skipped       int    `json:",omitempty"`
	SkippedReason string `json:",omitempty"`
	// HeldBy says why no Run starts while Candidates wait.
	HeldBy       string `json:",omitempty"`
	StepFailures int    `json:",omitempty"`
	CanaryPassed bool   `json:",omitempty"`
}

// Waiting is how many Candidates have not had their turn yet.
func (p RolloutProgress) Waiting() int { return p.Planned - p.Started - p.Skipped }

// Rollout is a rollout as its workflow keeps it and its view shows it.
type Rollout struct {
	ID          string
	MigrationID string
	State       RolloutState
	// StateReason and StateActor say why and by whom it was last paused,
	// resumed or cancelled (a resume's reason is the operator's, if given),
	// or started, when its starter said why.
	StateReason string `json:",omitempty"`
	StateActor  string `json:",omitempty"`
	// Filter is the selection's filter; nil for a list of ids (the list is
	// in the store's snapshot only).
	Filter        *CandidateFilter  `json:",omitempty"`
	DefaultInputs map[string]string `json:",omitempty"`
	Settings      RolloutSettings
	Progress      RolloutProgress
	CreatedBy     string
	CreateTime    time.Time
	UpdateTime    time.Time
	EndTime       time.Time `json:",omitzero"`
	// Seq counts the workflow's changes: the store keeps a view only when
	// its Seq is newer than the one it has.
	Seq int64
	// Version is the store's: it grows with every stored change.
	Version int64 `json:"-"`
}

// Clone returns a copy sharing nothing mutable with r.
func (r Rollout) Clone() Rollout {
	r.DefaultInputs = maps.Clone(r.DefaultInputs)
	if r.Filter != nil {
		f := *r.Filter
		f.Metadata = maps.Clone(f.Metadata)
		r.Filter = &f
	}
	return r
}

// Event is an event of the rollout's Migration about the rollout.
func (r *Rollout) Event(kind EventKind, now time.Time, actor string, details map[string]string) Event {
	d := map[string]string{"rollout_id": r.ID}
	maps.Copy(d, details)
	return Event{Time: now, Kind: kind, MigrationID: r.MigrationID, Actor: actor, Details: d}
}

// CountsDetails are the progress counts as event details.
func (p RolloutProgress) CountsDetails() map[string]string {
	return map[string]string{
		"planned": strconv.Itoa(p.Planned), "started": strconv.Itoa(p.Started), "completed": strconv.Itoa(p.Completed),
		"failed": strconv.Itoa(p.Failed), "cancelled": strconv.Itoa(p.Cancelled), "skipped": strconv.Itoa(p.Skipped),
	}
}

// The lifecycle events of rollouts: in the Migration's history, with the
// rollout's id in the details.
const (
	EventRolloutStarted          EventKind = "rollout_started"
	EventRolloutPaused           EventKind = "rollout_paused"
	EventRolloutResumed          EventKind = "rollout_resumed"
	EventRolloutUpdated          EventKind = "rollout_updated"
	EventRolloutAwaitingApproval EventKind = "rollout_awaiting_approval"
	EventRolloutCancelled        EventKind = "rollout_cancelled"
	EventRolloutCompleted        EventKind = "rollout_completed"
)

// RolloutNotFound is the refusal of an unknown rollout.
func RolloutNotFound(migrationID, rolloutID string) *Refusal {
	return NotFound(ReasonRolloutNotFound, "migration %q has no rollout %q", migrationID, rolloutID).With("rollout_id", rolloutID)
}

// RunStanding is where a Run stands for the rollout that started it: the
// Run tells its rollout each time it changes (RunChange).
type RunStanding string

// The standings of a Run for its rollout.
const (
	StandingRunning   RunStanding = "running"
	StandingFailed    RunStanding = "failed"
	StandingCompleted RunStanding = "completed"
	StandingCancelled RunStanding = "cancelled"
)

// Standing is where r stands for its rollout.
func (r *Run) Standing() RunStanding {
	switch {
	case r.Status == RunCompleted:
		return StandingCompleted
	case r.Status == RunCancelled:
		return StandingCancelled
	case r.CurrentStepStatus() == StepFailed:
		return StandingFailed
	}
	return StandingRunning
}

// RunChange is what a Run tells its rollout: its standing moved From To.
type RunChange struct {
	CandidateID string
	Execution   int64
	From, To    RunStanding
	// Step is the step that failed, when To is failed.
	Step string `json:",omitempty"`
}

// RolloutControl is an operator's action on a running rollout.
type RolloutControl struct {
	Kind  RolloutControlKind
	Actor string
	// Reason of a pause, resume or cancel.
	Reason string `json:",omitempty"`
	// Settings and Mask of an update.
	Settings RolloutSettings `json:",omitzero"`
	Mask     []string        `json:",omitempty"`
	// CancelRuns: a cancel cancels the rollout's Runs in flight too.
	CancelRuns bool `json:",omitempty"`
}

// RolloutControlKind says what an operator asks of a rollout.
type RolloutControlKind string

// The operators' actions on a rollout.
const (
	ControlPause  RolloutControlKind = "pause"
	ControlResume RolloutControlKind = "resume"
	ControlUpdate RolloutControlKind = "update"
	ControlCancel RolloutControlKind = "cancel"
)

// Controlled is the answer to a RolloutControl.
type Controlled struct {
	Rollout Rollout
	// CancelledRuns is how many Runs a cancel with CancelRuns cancelled.
	CancelledRuns int
}

// RolloutEngine executes rollouts durably.
type RolloutEngine interface {
	// StartRollout starts the workflow of r, whose Candidates the store
	// holds already (RolloutStore.CreateRollout).
	StartRollout(ctx context.Context, r Rollout) error
	// ControlRollout applies an operator's action to the running rollout
	// and answers once it took effect. ErrRunNotActive when its workflow
	// no longer runs.
	ControlRollout(ctx context.Context, migrationID, rolloutID string, c RolloutControl) (Controlled, error)
}

// RolloutStore keeps rollouts' views and the Candidates each selected.
type RolloutStore interface {
	// CreateRollout stores a new rollout with the ids of its Candidates, in
	// the order it starts them, and records its start in the history.
	CreateRollout(ctx context.Context, r Rollout, candidateIDs []string) (Rollout, error)
	// SaveRollout stores the view of r when r.Seq is newer than the stored
	// one, with the events of its change; older writes are ignored. Returns
	// the stored view's version.
	SaveRollout(ctx context.Context, r Rollout, events []Event) (int64, error)
	GetRollout(ctx context.Context, migrationID, rolloutID string) (Rollout, error)
	// ListRollouts pages through a Migration's rollouts, newest first.
	ListRollouts(ctx context.Context, migrationID string, page PageRequest) ([]Rollout, string, error)
	// RolloutCandidates returns up to limit ids of the rollout's Candidates
	// from position offset.
	RolloutCandidates(ctx context.Context, migrationID, rolloutID string, offset, limit int) ([]string, error)
	// WatchRollout notifies of every stored change of a rollout until ctx
	// ends.
	WatchRollout(ctx context.Context, migrationID, rolloutID string) (<-chan struct{}, error)
}
