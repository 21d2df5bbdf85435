package migratorsdk

import "time"

// Migration is the definition a Migrator announces: what changes across the
// fleet and how, as ordered Steps.
type Migration struct {
	// ID is stable across announcements, e.g. "go-1-23-upgrade": lowercase
	// letters, digits and inner hyphens, 1–63 characters.
	ID string
	// Name is shown to operators.
	Name string
	// Description is one or two sentences; Overview is longer Markdown.
	Description string
	Overview    string
	// Steps run in this order for every Candidate (unless the Candidate has
	// its own). Each Step's Type must have a handler in Spec.Handlers.
	Steps []Step
	// Inputs an operator must give before a Run starts; their values reach
	// every Dispatch in Dispatch.Inputs.
	Inputs []Input
	// DispatchLease is how long this Migrator may hold a step it accepted
	// without reporting before Loom dispatches it again, same attempt;
	// zero takes Loom's default (10 minutes). DispatchLeaseByType sets it
	// per step type, for handlers that work long without a word. The SDK
	// ignores a dispatch it is still executing (and reports progress only
	// when you call Progress), so a handler runs twice only when the
	// Migrator died with the step: handlers must be idempotent.
	DispatchLease       time.Duration
	DispatchLeaseByType map[string]time.Duration
	// ViewersMayPreview lets Loom's viewers (read-only callers) preview
	// Runs of this Migration, in the console or with RunService.PreviewRun;
	// they still may not start one. Off by default: a preview shows the
	// Candidates' files, before and after each step. Your Preview must then
	// change nothing anywhere (StackedPreview changes nothing but an
	// in-memory copy).
	ViewersMayPreview bool
}

// Step is one unit of work of a Migration.
type Step struct {
	// Name is unique within the Migration, e.g. "bump-go" (same rule as a
	// Migration id).
	Name string
	// Type routes the step to its handler, e.g. "open-pr" or "manual-review".
	Type        string
	Description string
	// Config is handed to the handler with every dispatch.
	Config map[string]string
	// ReportTimeout, when set, fails the step with "no report" if the
	// Migrator stays silent that long while the step is in progress.
	ReportTimeout time.Duration
}

// Input is an input an operator must give, such as a target version.
type Input struct {
	Name        string
	Label       string
	Description string
}

// Candidate is a subject the Migration can be applied to: a service, a
// repository, a topic.
type Candidate struct {
	// ID is unique within the Migration, e.g. "acme/payments": 1–255
	// characters of letters, digits, '.', '_', '/' and '-'.
	ID string
	// Kind is what sort of subject it is, e.g. "service" or "repository".
	Kind string
	// Metadata is what the handlers need to find and change the subject.
	Metadata map[string]string
	Files    []FileGroup
	// Steps, when not empty, replace the Migration's steps for this Candidate.
	Steps []Step
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

// StepStatus is the status a Migrator reports for a step.
type StepStatus string

// The statuses a Migrator reports. Open → merged and awaiting review →
// completed are the two paths to success; failed holds the Run until an
// operator retries the step.
const (
	StatusInProgress     StepStatus = "in_progress"
	StatusOpen           StepStatus = "open"
	StatusMerged         StepStatus = "merged"
	StatusAwaitingReview StepStatus = "awaiting_review"
	StatusCompleted      StepStatus = "completed"
	StatusFailed         StepStatus = "failed"
	// StatusSkipped is a step an operator skipped (RunService.SkipStep):
	// the Run moved on without it. Loom sets it; it is not a status to
	// report (Loom refuses it, TRANSITION_NOT_ALLOWED).
	StatusSkipped StepStatus = "skipped"
)

// final reports whether a step in this status is done with (the Run moves
// on or waits for an operator's retry).
func (s StepStatus) final() bool {
	return s == StatusMerged || s == StatusCompleted || s == StatusFailed || s == StatusSkipped
}

// Report is one step report sent to Loom.
type Report struct {
	RunID     string
	Execution int64
	Step      string
	Attempt   int
	Status    StepStatus
	PRURL     string
	Message   string
	Metadata  map[string]string
	// CallbackToken is the dispatch's callback token, which Loom requires
	// on reports when it authenticates callers. The SDK fills it in.
	CallbackToken string
}

// OpenStep is a step of a running Run whose pull request waits for its
// merge, as Loom lists it for merge checks.
type OpenStep struct {
	RunID       string
	Execution   int64
	Step        string
	Attempt     int
	CandidateID string
	// PRURL is the pull request the step's handler reported with Opened.
	PRURL string
	// Metadata is the step's metadata as the handler last reported it
	// (WithMetadata), e.g. the branch or the pull request's number.
	Metadata map[string]string
	// CallbackToken authorises the report of this step's merge.
	CallbackToken string
}

// PreviewRequest asks what a Run would change for one Candidate.
type PreviewRequest struct {
	MigrationID string
	Steps       []Step
	Candidate   Candidate
	Inputs      map[string]string
}

// StepPreview is what one step would change.
type StepPreview struct {
	Step       string
	Skipped    bool
	SkipReason string
	// Error is set when this step's preview could not be computed.
	Error string
	Diffs []FileDiff
}

// FileDiff is one file's change: its whole content before and after.
type FileDiff struct {
	Repo   string
	Path   string
	Before string
	After  string
	Status FileStatus
}

// FileStatus says what happens to a file.
type FileStatus string

// The changes of a file.
const (
	FileAdded    FileStatus = "added"
	FileModified FileStatus = "modified"
	FileDeleted  FileStatus = "deleted"
)

// SubmitResult says what Loom did with submitted Candidates.
type SubmitResult struct {
	Added, Updated, Unchanged, LeftAlone, NoLongerDiscovered []string
}
