package migration

import (
	"context"
	"fmt"
)

// MaxSubmitCandidates is the most Candidates one submission may hold.
const MaxSubmitCandidates = 1000

// Discovery is the use case of submitting and reading Candidates.
type Discovery struct {
	Store DiscoveryStore
	Now   Clock
}

// DiscoveryStore is what Discovery reads and writes: the Candidates, and
// whether their Migration exists (a bulk action's selection of ids names
// one).
type DiscoveryStore interface {
	CandidateStore
	GetMigration(ctx context.Context, id string) (Migration, error)
}

// Submit merges discovered Candidates into their Migration.
func (d *Discovery) Submit(ctx context.Context, s Submission) (SubmitResult, error) {
	if len(s.Candidates) > MaxSubmitCandidates {
		return SubmitResult{}, InvalidArgument("candidates", ReasonTooManyCandidates,
			"at most %d candidates per submission, got %d", MaxSubmitCandidates, len(s.Candidates))
	}
	// Ids and a Candidate's own step names are unique by this check, not by
	// CEL rules in the .proto: protovalidate's this.map(c, c.id).unique()
	// made 12 allocations a Candidate, as many as all its other rules
	// together, the step names' rule 3 more, and neither could name the
	// field.
	seen := make(map[string]bool, len(s.Candidates))
	for i, c := range s.Candidates {
		if seen[c.ID] {
			return SubmitResult{}, InvalidArgument(fmt.Sprintf("candidates[%d].id", i), ReasonDuplicateCandidateID,
				"candidate id %q appears twice", c.ID)
		}
		seen[c.ID] = true
		if err := checkStepNames(fmt.Sprintf("candidates[%d].steps", i), c.Steps); err != nil {
			return SubmitResult{}, err
		}
	}
	res, err := d.Store.SubmitCandidates(ctx, s, d.Now())
	if err != nil {
		return SubmitResult{}, fmt.Errorf("submit candidates to %s: %w", s.MigrationID, err)
	}
	return res, nil
}

// List returns one page of a Migration's Candidates matching f, in f's
// order.
func (d *Discovery) List(ctx context.Context, migrationID string, f CandidateFilter, page PageRequest) (CandidatePage, error) {
	page.Limit = clampPage(page.Limit, DefaultCandidatePageSize, MaxCandidatePageSize)
	if len(f.Metadata) > MaxCandidateMetadataFilters {
		return CandidatePage{}, InvalidArgument("metadata", ReasonTooManyMetadataFilters,
			"at most %d metadata pairs, got %d", MaxCandidateMetadataFilters, len(f.Metadata))
	}
	return d.Store.ListCandidates(ctx, migrationID, f, page)
}

// Get returns one Candidate.
func (d *Discovery) Get(ctx context.Context, migrationID, candidateID string) (Candidate, error) {
	return d.Store.GetCandidate(ctx, migrationID, candidateID)
}

// UpdateInputs sets and removes stored inputs of a Candidate.
func (d *Discovery) UpdateInputs(ctx context.Context, migrationID, candidateID string, change InputChange) (Candidate, error) {
	return d.Store.UpdateCandidateInputs(ctx, migrationID, candidateID, change, d.Now())
}
