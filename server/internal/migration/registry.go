package migration

import (
	"context"
	"fmt"
)

// Page sizes of the listings.
const (
	DefaultMigrationPageSize = 50
	MaxMigrationPageSize     = 500
	DefaultCandidatePageSize = 100
	MaxCandidatePageSize     = 1000
)

// Registry is the use case of announcing, reading and deleting Migrations.
type Registry struct {
	Store RegistryStore
	Now   Clock
	// CheckURL, when set, refuses Migrator URLs Loom must not call.
	CheckURL func(ctx context.Context, url string) error
}

// Announce creates or updates a Migration definition by id.
func (r *Registry) Announce(ctx context.Context, m Migration) (stored Migration, created, updated bool, err error) {
	if err := checkStepNames("steps", m.Steps); err != nil {
		return Migration{}, false, false, err
	}
	if r.CheckURL != nil {
		if err := r.CheckURL(ctx, m.MigratorURL); err != nil {
			return Migration{}, false, false, InvalidArgument("migration.migrator_url", ReasonMigratorURLRefused, "%v", err)
		}
	}
	stored, created, updated, err = r.Store.PutMigration(ctx, m, r.Now())
	if err != nil {
		return Migration{}, false, false, fmt.Errorf("announce %s: %w", m.ID, err)
	}
	return stored, created, updated, nil
}

// Get returns one Migration.
func (r *Registry) Get(ctx context.Context, id string) (Migration, error) {
	return r.Store.GetMigration(ctx, id)
}

// List returns one page of Migrations in id order.
func (r *Registry) List(ctx context.Context, page PageRequest) (MigrationPage, error) {
	page.Limit = clampPage(page.Limit, DefaultMigrationPageSize, MaxMigrationPageSize)
	return r.Store.ListMigrations(ctx, page)
}

// Delete removes a Migration unless one of its Candidates is running.
func (r *Registry) Delete(ctx context.Context, id string) (int64, error) {
	return r.Store.DeleteMigration(ctx, id, r.Now())
}

func clampPage(n, def, limit int) int {
	switch {
	case n <= 0:
		return def
	case n > limit:
		return limit
	}
	return n
}

// checkStepNames enforces unique step names, so that no caller of the use
// case can store a step list that Runs could not address: for a Migration
// the schema says so too; for a Candidate's own steps only this does (see
// Discovery.Submit). field is where the list is, e.g. "steps".
func checkStepNames(field string, steps []StepDefinition) error {
	seen := make(map[string]bool, len(steps))
	for i, s := range steps {
		if seen[s.Name] {
			return InvalidArgument(fmt.Sprintf("%s[%d].name", field, i), ReasonDuplicateStepName, "step name %q appears twice", s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}
