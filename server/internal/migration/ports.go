package migration

import (
	"context"
	"errors"
	"time"
)

// MigrationStore keeps Migrations, Candidates and Run views. Every method is
// atomic: it applies whole or not at all, and concurrent callers lose
// nothing. Unknown ids are reported as refusals wrapping ErrNotFound.
type MigrationStore interface {
	RegistryStore
	CandidateStore
	RunStore
	HistoryStore
	MetricsStore
}

// RegistryStore keeps Migration definitions.
type RegistryStore interface {
	// PutMigration creates m or replaces its definition. The stored times
	// follow the definition: CreateTime is kept, UpdateTime moves to now only
	// when the definition changed.
	PutMigration(ctx context.Context, m Migration, now time.Time) (stored Migration, created, updated bool, err error)
	GetMigration(ctx context.Context, id string) (Migration, error)
	ListMigrations(ctx context.Context, page PageRequest) (MigrationPage, error)
	// DeleteMigration removes the Migration with its Candidates and Run
	// views, refusing (ErrFailedPrecondition) while a Candidate is running.
	DeleteMigration(ctx context.Context, id string, now time.Time) (deletedCandidates int64, err error)
}

// CandidateStore keeps the Candidates of each Migration.
type CandidateStore interface {
	// SubmitCandidates merges discovered Candidates (see Submission).
	SubmitCandidates(ctx context.Context, s Submission, now time.Time) (SubmitResult, error)
	ListCandidates(ctx context.Context, migrationID string, f CandidateFilter, page PageRequest) (CandidatePage, error)
	GetCandidate(ctx context.Context, migrationID, candidateID string) (Candidate, error)
	// GetMigrationAndCandidate reads a Candidate with its Migration at once
	// (one round trip): what a start, a preview and a dispatch need.
	GetMigrationAndCandidate(ctx context.Context, migrationID, candidateID string) (Migration, Candidate, error)
	UpdateCandidateInputs(ctx context.Context, migrationID, candidateID string, change InputChange, now time.Time) (Candidate, error)
}

// Clock tells the time; tests inject a fixed one.
type Clock func() time.Time

// RunStore keeps the run views: the read side of Runs, written by the Run's
// workflow and read without asking the ExecutionEngine.
type RunStore interface {
	// BeginRun moves the Candidate to running for run.Execution, stores the
	// Run's inputs back on the Candidate and creates its view. It refuses
	// (ErrFailedPrecondition) a completed Candidate or a newer execution.
	// Repeating it for the execution already begun changes nothing and
	// returns the stored view.
	BeginRun(ctx context.Context, run Run) (Run, error)
	// SaveRun stores the view of run when run.Execution is the Candidate's
	// current execution and run.Seq is newer than the stored one; older
	// writes are ignored. A completed Run also completes its Candidate; a
	// cancelled one puts it back to not_started. events and obs are the change's events and measured durations, applied
	// once (a Run's saves come one at a time, in order). Returns the stored
	// view's version.
	SaveRun(ctx context.Context, run Run, events []Event, obs []Observation) (version int64, err error)
	GetRun(ctx context.Context, migrationID, candidateID string) (Run, error)
	ListRuns(ctx context.Context, migrationID string, f RunFilter, page PageRequest) (RunPage, error)
	// WatchRun notifies of every stored change of a Run until ctx ends.
	WatchRun(ctx context.Context, migrationID, candidateID string) (<-chan struct{}, error)
	// RecordDispatchFailure records a failed try to hand a step to its
	// Migrator (ev, a dispatch_failed event) and, while the Run's view has
	// the step in progress, shows it there with the next try's time.
	RecordDispatchFailure(ctx context.Context, ev Event, next time.Time) error
	// ClearDispatchFailure forgets them once the Migrator accepted the step.
	ClearDispatchFailure(ctx context.Context, migrationID, candidateID string, execution int64, step string) error
}

// RunFilter selects Runs in a listing. Zero fields select all.
type RunFilter struct {
	Status            RunStatus
	CurrentStepStatus StepStatus
	// DispatchFailing selects the Runs whose current step Loom cannot hand
	// to its Migrator now; alone.
	DispatchFailing bool
}

// RunPage is one page of a Run listing.
type RunPage struct {
	Runs  []Run
	Next  string
	Total int64
}

// ExecutionEngine runs each Run durably: it walks the steps, dispatches
// them, and holds the Run's authoritative state while it is running.
type ExecutionEngine interface {
	// StartRun starts the execution described by m. A Run already running
	// under m.RunID is refused with ErrAlreadyExists.
	StartRun(ctx context.Context, m Manifest) error
	// Act applies a step action to the running execution of runID, checked
	// against the transition table before anything changes, and says how
	// the step and Run stand after it. ErrRunNotActive when no execution is
	// running.
	Act(ctx context.Context, runID string, a StepAction) (Acted, error)
	// CancelRun cancels the running execution of runID and returns once it
	// has stopped and cleaned up. ErrRunNotActive when none is running.
	CancelRun(ctx context.Context, runID, reason, actor string) error
	// Inspect says where the latest execution of runID stands in the engine.
	Inspect(ctx context.Context, runID string) (EngineRun, error)
}

// EngineState is where the engine says an execution stands.
type EngineState string

// The engine states of an execution.
const (
	EngineRunning   EngineState = "running"
	EngineCompleted EngineState = "completed"
	EngineCancelled EngineState = "cancelled"
	// EngineFailed: the workflow ended with an error.
	EngineFailed EngineState = "failed"
	// EngineMissing: the engine has no workflow for the Run.
	EngineMissing EngineState = "missing"
)

// EngineRun is where the engine says the latest execution of a Run stands.
type EngineRun struct {
	State EngineState
	// Run is the Run as the workflow holds it (running) or ended it
	// (completed), when it says (older workflows do not).
	Run *Run
	// Reason is why it failed.
	Reason string
}

// Acted is the answer to a step action that was applied (or accepted as a
// repeat).
type Acted struct {
	// Step is the step acted on, as it stands after the action.
	Step StepResult
	// Run is the whole Run after the action, for operators' actions. A
	// Migrator's report is answered with Step alone: the answer is recorded
	// in the Run's history at every report, so it is kept small.
	Run     Run
	Changed bool
}

// ErrRunNotActive says the ExecutionEngine has no running execution of a
// Run; the use case then answers from the run view.
var ErrRunNotActive = errors.New("run has no running execution")

// MigratorNotifier calls the Migrators.
type MigratorNotifier interface {
	// ExecuteStep dispatches a step. Transient failures wrap ErrUnavailable;
	// the Migrator's own refusals wrap ErrFailedPrecondition.
	ExecuteStep(ctx context.Context, migratorURL string, d Dispatch) error
	// PreviewRun asks for the per-step diffs of a Candidate.
	PreviewRun(ctx context.Context, migratorURL string, p PreviewRequest) ([]StepPreview, error)
}
