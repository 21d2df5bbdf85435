package migration

import (
	"maps"
	"time"
)

// Manifest is the MigrationManifest: the snapshot a Run execution starts
// from.
type Manifest struct {
	RunID         string
	Execution     int64
	MigrationID   string
	MigrationName string
	Steps         []StepDefinition
	// MigratorURL is the URL at start; every dispatch reads the current one.
	MigratorURL string
	Candidate   Candidate
	Inputs      map[string]string
	// StartedBy is who started the Run.
	StartedBy string
	// StartNote is why, when the starter said (run_started's `note`).
	StartNote string `json:",omitempty"`
	// RolloutID is the rollout that started the Run, if one did: the Run
	// tells it each time its standing changes (see RunChange).
	RolloutID string `json:",omitempty"`
	// DispatchLease and LeaseByType are the Migration's leases of accepted
	// dispatches at start (see Migration.DispatchLease); zero: the server's.
	DispatchLease time.Duration            `json:",omitempty"`
	LeaseByType   map[string]time.Duration `json:",omitempty"`
}

// NewRun is the Run of a manifest before its first dispatch.
func NewRun(m Manifest, now time.Time) Run {
	return Run{
		ID:          m.RunID,
		MigrationID: m.MigrationID,
		CandidateID: m.Candidate.ID,
		Execution:   m.Execution,
		Status:      RunRunning,
		Steps:       m.Steps,
		Inputs:      maps.Clone(m.Inputs),
		StartTime:   now,
		UpdateTime:  now,
		StartedBy:   m.StartedBy,
		StartNote:   m.StartNote,
		RolloutID:   m.RolloutID,
	}
}

// Dispatch is what a Migrator receives to execute one step.
type Dispatch struct {
	RunID       string
	Execution   int64
	MigrationID string
	Step        StepDefinition
	StepIndex   int
	Attempt     int
	Candidate   Candidate
	// Inputs are the Candidate's inputs at the time of the dispatch.
	Inputs map[string]string
	// CallbackToken is what the Migrator's reports on this attempt carry;
	// empty when callers are not authenticated.
	CallbackToken string
}

// PreviewRequest asks a Migrator what a Run would change.
type PreviewRequest struct {
	MigrationID string
	Steps       []StepDefinition
	Candidate   Candidate
	Inputs      map[string]string
}

// StepPreview is what one step would change for one Candidate.
type StepPreview struct {
	StepName   string
	Skipped    bool
	SkipReason string
	Error      string
	Diffs      []FileDiff
}

// FileDiff is one file's change in a preview.
type FileDiff struct {
	Repo   string
	Path   string
	Before string
	After  string
	Status FileDiffStatus
}

// FileDiffStatus says what happens to a file.
type FileDiffStatus string

// The file changes of a preview.
const (
	FileAdded    FileDiffStatus = "added"
	FileModified FileDiffStatus = "modified"
	FileDeleted  FileDiffStatus = "deleted"
)
