package migration

import (
	"strings"
	"time"
)

// Migration is the registered definition of a repeatable process. Its
// Candidates are stored beside it, not inside it.
type Migration struct {
	ID             string
	Name           string
	Description    string
	Overview       string
	Steps          []StepDefinition
	RequiredInputs []InputDefinition
	MigratorURL    string
	// DispatchLease is how long a Migrator may hold an accepted dispatch
	// without a report before the step is dispatched again (same attempt);
	// LeaseByType overrides it per step type. Zero: the server's default.
	DispatchLease time.Duration
	LeaseByType   map[string]time.Duration
	// ViewersMayPreview lets callers with the viewer role preview Runs of
	// this Migration (never start them); the Migrator decides, since a
	// preview shows the Candidates' files.
	ViewersMayPreview bool
	CreateTime        time.Time
	UpdateTime        time.Time
	// Counts is filled on reads; ignored on writes.
	Counts CandidateCounts
	// Kinds is how many Candidates are of each kind (no entry for a kind
	// with none). Filled by the reads the API answers with (get, list,
	// put), not by GetMigrationAndCandidate; ignored on writes.
	Kinds map[string]int64
}

// StepDefinition is the plan of one Step.
type StepDefinition struct {
	Name          string
	Type          string
	MigratorApp   string
	Config        map[string]string
	Description   string
	ReportTimeout time.Duration
}

// InputDefinition names an input an operator must provide before a Run.
type InputDefinition struct {
	Name        string
	Label       string
	Description string
}

// CandidateCounts is how many Candidates of a Migration are in each status.
type CandidateCounts struct {
	NotStarted int64
	Running    int64
	Completed  int64
}

// Total is the number of Candidates.
func (c CandidateCounts) Total() int64 { return c.NotStarted + c.Running + c.Completed }

// CandidateStatus tracks whether a Run has been attempted for a Candidate.
type CandidateStatus string

// The Candidate statuses. There is no failed Candidate: a failed step keeps
// its Candidate running.
const (
	CandidateNotStarted CandidateStatus = "not_started"
	CandidateRunning    CandidateStatus = "running"
	CandidateCompleted  CandidateStatus = "completed"
)

// CandidateStatuses lists every status, in lifecycle order.
var CandidateStatuses = []CandidateStatus{CandidateNotStarted, CandidateRunning, CandidateCompleted}

// Valid reports whether s is one of the defined statuses.
func (s CandidateStatus) Valid() bool {
	switch s {
	case CandidateNotStarted, CandidateRunning, CandidateCompleted:
		return true
	}
	return false
}

// Candidate is a subject a Migration can be applied to.
type Candidate struct {
	ID       string
	Kind     string
	Metadata map[string]string
	Files    []FileGroup
	// Steps, when not empty, replace the Migration's steps for this Candidate.
	Steps []StepDefinition

	// The fields below are kept by the server; discovery never sets them.
	MigrationID        string
	Status             CandidateStatus
	Inputs             map[string]string
	NoLongerDiscovered bool
	CreateTime         time.Time
	UpdateTime         time.Time
	// Execution is the number of the Candidate's latest Run execution, 0
	// before its first start.
	Execution int64
	// LastChangeTime is when anything about the Candidate last happened: its
	// latest lifecycle event or change, Run changes included. Set on reads.
	LastChangeTime time.Time
	// Progress is where the Candidate's latest Run stands. Set on reads.
	Progress CandidateProgress
}

// CandidateProgress is where a Candidate's latest Run stands, as a row of a
// Candidate listing shows it. Zero for a Candidate never started.
type CandidateProgress struct {
	RunStatus RunStatus
	// CurrentStep and CurrentStepStatus are the Run's current step, empty
	// unless the Run is running and has dispatched its first step.
	CurrentStep       string
	CurrentStepStatus StepStatus
}

// FileGroup is a named group of a Candidate's files.
type FileGroup struct {
	Name  string
	Files []FileRef
}

// FileRef points at one file of a Candidate.
type FileRef struct {
	Path string
	URL  string
}

// SubmitResult says what a SubmitCandidates did with each submitted id.
type SubmitResult struct {
	Added              []string
	Updated            []string
	Unchanged          []string
	LeftAlone          []string
	NoLongerDiscovered []string
}

// Submission is one SubmitCandidates call.
type Submission struct {
	MigrationID string
	Candidates  []Candidate
	// Complete ends a discovery pass: Candidates not submitted in the pass
	// are flagged no longer discovered.
	Complete bool
	// Round names a pass that spans several submissions; empty means this
	// submission alone is the pass.
	Round string
}

// CandidateFilter selects Candidates in a listing, and orders them. Zero
// fields select all; a Candidate must match every field set.
type CandidateFilter struct {
	Status CandidateStatus
	Kind   string
	// CurrentStep and CurrentStepStatus select the Candidates whose Run is
	// running with its current step of that name, in that status.
	CurrentStep       string
	CurrentStepStatus StepStatus
	// IDPrefix selects the Candidates whose id starts with it.
	IDPrefix string
	// Metadata selects the Candidates whose metadata holds every pair, at
	// most MaxCandidateMetadataFilters.
	Metadata map[string]string

	// Order is the order of the listing; "" is by id. Ties are in id order.
	Order CandidateOrder
	// Descending reverses the order, ties included.
	Descending bool
}

// MaxCandidateMetadataFilters is the most metadata pairs one Candidate
// listing may filter on.
const MaxCandidateMetadataFilters = 4

// CandidateOrder is an order of a Candidate listing.
type CandidateOrder string

// The orders of a Candidate listing.
const (
	// OrderByID: by id, in byte order.
	OrderByID CandidateOrder = "id"
	// OrderByStatus: by status, in the order of CandidateStatuses.
	OrderByStatus CandidateOrder = "status"
	// OrderByCurrentStep: by the position of the Run's current step: no
	// current step first, then the first step, the second..., then Runs
	// completed.
	OrderByCurrentStep CandidateOrder = "current_step"
	// OrderByLastChange: by LastChangeTime, oldest first.
	OrderByLastChange CandidateOrder = "last_change"
)

// Valid reports whether o is one of the orders, or "" (by id).
func (o CandidateOrder) Valid() bool {
	switch o {
	case "", OrderByID, OrderByStatus, OrderByCurrentStep, OrderByLastChange:
		return true
	}
	return false
}

// PageRequest asks for the page of items whose keys sort after After.
type PageRequest struct {
	After string
	Limit int
}

// CandidatePage is one page of a Candidate listing.
type CandidatePage struct {
	Candidates []Candidate
	// Next is the key to pass as After for the next page; empty on the last.
	Next  string
	Total int64
	// TotalIsEstimate: Total was estimated from a sample (several filters
	// over many Candidates), not counted.
	TotalIsEstimate bool
}

// MigrationPage is one page of the Migration listing.
type MigrationPage struct {
	Migrations []Migration
	Next       string
}

// InputChange sets and removes stored inputs of a Candidate. Remove is
// applied before Set.
type InputChange struct {
	Set    map[string]string
	Remove []string
	// Note says why, for the history (detail `note`); optional.
	Note string
}

// RunID is the identifier of a Candidate's Run: "{migrationID}__{candidateID}".
func RunID(migrationID, candidateID string) string {
	return migrationID + "__" + candidateID
}

// ParseRunID splits a RunID at its first "__"; Migration ids have no
// underscore, so the split is unambiguous.
func ParseRunID(runID string) (migrationID, candidateID string, ok bool) {
	m, c, ok := strings.Cut(runID, "__")
	if !ok || m == "" || c == "" {
		return "", "", false
	}
	return m, c, true
}
