package migration

import (
	"errors"
	"fmt"
)

// Error kinds. Adapters translate their own "not found" and "already exists"
// into these, and the api package maps each kind to one Connect code.
var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrUnavailable        = errors.New("unavailable")
)

// Reasons name why a request was refused. They reach clients as the reason
// of a google.rpc.ErrorInfo, so they are part of the API: each is the name
// of a value of the API's ErrorReason enum (proto/loom/v1/error_reason.proto,
// where each is documented), and never renamed. The domain imports no
// generated code, so the names are repeated here; api's
// TestDomainReasonsAreTheAPIs fails when this list and the enum differ, or
// when a refusal is built with a reason not declared here.
const (
	ReasonMigrationNotFound     = "MIGRATION_NOT_FOUND"
	ReasonCandidateNotFound     = "CANDIDATE_NOT_FOUND"
	ReasonRunNotFound           = "RUN_NOT_FOUND"
	ReasonRolloutNotFound       = "ROLLOUT_NOT_FOUND"
	ReasonMigrationHasRunning   = "MIGRATION_HAS_RUNNING_CANDIDATES"
	ReasonMigrationBeingDeleted = "MIGRATION_BEING_DELETED"
	ReasonCandidateRunning      = "CANDIDATE_RUNNING"
	ReasonCandidateCompleted    = "CANDIDATE_COMPLETED"
	// ReasonCandidateStatusChanged: the Candidate is no longer in the status
	// the caller expected; metadata "status" is the current one.
	ReasonCandidateStatusChanged = "CANDIDATE_STATUS_CHANGED"
	ReasonMissingInputs          = "MISSING_INPUTS"
	ReasonRunNotRunning          = "RUN_NOT_RUNNING"
	ReasonStaleExecution         = "STALE_EXECUTION"
	ReasonStaleAttempt           = "STALE_ATTEMPT"
	ReasonStepNotCurrent         = "STEP_NOT_CURRENT"
	ReasonTransitionNotAllowed   = "TRANSITION_NOT_ALLOWED"
	ReasonRolloutEnded           = "ROLLOUT_ENDED"
	ReasonRolloutExists          = "ROLLOUT_EXISTS"
	ReasonEmptySelection         = "EMPTY_SELECTION"

	ReasonInvalidPageToken = "INVALID_PAGE_TOKEN"
	ReasonInvalidEventID   = "INVALID_EVENT_ID"
	// ReasonMissingReason: a skip names no reason.
	ReasonMissingReason = "MISSING_REASON"
	// ReasonMissingPRURL: an adoption names no pull request.
	ReasonMissingPRURL = "MISSING_PR_URL"
	// ReasonSelectionTooLarge: a selection of more than a bulk action or a
	// rollout takes; metadata "matched" (for a filter) and "max".
	ReasonSelectionTooLarge      = "SELECTION_TOO_LARGE"
	ReasonDuplicateCandidateID   = "DUPLICATE_CANDIDATE_ID"
	ReasonDuplicateStepName      = "DUPLICATE_STEP_NAME"
	ReasonTooManyCandidates      = "TOO_MANY_CANDIDATES"
	ReasonTooManyMetadataFilters = "TOO_MANY_METADATA_FILTERS"
	ReasonInvalidStatus          = "INVALID_STATUS"
	ReasonInvalidOrder           = "INVALID_ORDER"
	ReasonInvalidOutcome         = "INVALID_OUTCOME"
	ReasonInvalidRunID           = "INVALID_RUN_ID"
	ReasonInvalidSetting         = "INVALID_SETTING"
	ReasonUnknownSetting         = "UNKNOWN_SETTING"
	ReasonEmptyUpdateMask        = "EMPTY_UPDATE_MASK"
	ReasonEmptyInputChange       = "EMPTY_INPUT_CHANGE"
	ReasonMissingStepName        = "MISSING_STEP_NAME"
	ReasonUnknownControl         = "UNKNOWN_CONTROL"

	ReasonMigratorUnavailable    = "MIGRATOR_UNAVAILABLE"
	ReasonMigratorRefused        = "MIGRATOR_REFUSED"
	ReasonMigratorURLRefused     = "MIGRATOR_URL_REFUSED"
	ReasonExecutionEngineFailure = "EXECUTION_ENGINE_UNAVAILABLE"
	ReasonStoreUnavailable       = "STORE_UNAVAILABLE"

	// ReasonNotAttempted: the bulk action stopped before this Candidate
	// (deadline near, caller gone, dependency failing); nothing was done.
	ReasonNotAttempted = "NOT_ATTEMPTED"
)

// Refusal is a request refused for a reason a caller can act on. It wraps
// one of the error kinds above.
type Refusal struct {
	Kind    error
	Reason  string
	Message string
	// Field names the request field at fault, for invalid arguments.
	Field string
	// Metadata carries facts the caller needs, e.g. the current step.
	Metadata map[string]string
}

func (r *Refusal) Error() string { return r.Message }

func (r *Refusal) Unwrap() error { return r.Kind }

// With returns r with one more metadata entry.
func (r *Refusal) With(key, value string) *Refusal {
	if r.Metadata == nil {
		r.Metadata = map[string]string{}
	}
	r.Metadata[key] = value
	return r
}

func refuse(kind error, reason, format string, args ...any) *Refusal {
	return &Refusal{Kind: kind, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// NotFound builds a not-found refusal.
func NotFound(reason, format string, args ...any) *Refusal {
	return refuse(ErrNotFound, reason, format, args...)
}

// AlreadyExists builds an already-exists refusal.
func AlreadyExists(reason, format string, args ...any) *Refusal {
	return refuse(ErrAlreadyExists, reason, format, args...)
}

// FailedPrecondition builds a refusal of a request the current state forbids.
func FailedPrecondition(reason, format string, args ...any) *Refusal {
	return refuse(ErrFailedPrecondition, reason, format, args...)
}

// InvalidArgument builds a refusal of a malformed field.
func InvalidArgument(field, reason, format string, args ...any) *Refusal {
	r := refuse(ErrInvalidArgument, reason, format, args...)
	r.Field = field
	return r
}

// Unavailable builds a refusal caused by a dependency that cannot be reached.
func Unavailable(reason, format string, args ...any) *Refusal {
	return refuse(ErrUnavailable, reason, format, args...)
}

// MigrationNotFound is the refusal for an unknown Migration id.
func MigrationNotFound(id string) *Refusal {
	return NotFound(ReasonMigrationNotFound, "migration %q not found", id).With("migration_id", id)
}

// CandidateNotFound is the refusal for an unknown Candidate id.
func CandidateNotFound(migrationID, candidateID string) *Refusal {
	return NotFound(ReasonCandidateNotFound, "candidate %q not found in migration %q", candidateID, migrationID).
		With("migration_id", migrationID).With("candidate_id", candidateID)
}
