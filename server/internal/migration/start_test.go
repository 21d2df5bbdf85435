package migration_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

// startStore is a store in which the Run's workflow got ahead of StartRun:
// by the time StartRun records the execution, the workflow has recorded it
// itself and run it to its end (or, with other = true, another execution
// completed the Candidate).
type startStore struct {
	*bulkStore
	other bool
	// unreachable: the store cannot be reached when StartRun records the
	// execution.
	unreachable bool
}

func (s *startStore) GetMigrationAndCandidate(_ context.Context, m, c string) (migration.Migration, migration.Candidate, error) {
	return migration.Migration{ID: m, Steps: []migration.StepDefinition{{Name: "bump", Type: "pr"}}},
		migration.Candidate{ID: c, MigrationID: m, Status: migration.CandidateNotStarted}, nil
}

func (s *startStore) BeginRun(_ context.Context, r migration.Run) (migration.Run, error) {
	if s.unreachable {
		return migration.Run{}, migration.Unavailable(migration.ReasonStoreUnavailable, "the store (Redis) cannot be reached: connection refused")
	}
	done := r.Clone()
	if s.other {
		done.Execution++
	}
	done.Finish(migration.RunCompleted, "", t0)
	s.mu.Lock()
	s.runs[r.CandidateID] = done
	s.mu.Unlock()
	return migration.Run{}, migration.FailedPrecondition(migration.ReasonCandidateCompleted, "candidate %q has completed this migration", r.CandidateID)
}

type startEngine struct {
	bulkEngine
	started []migration.Manifest
}

func (e *startEngine) StartRun(_ context.Context, m migration.Manifest) error {
	e.started = append(e.started, m)
	return nil
}

func TestStartAnsweredByARunThatFinishedFirst(t *testing.T) {
	for _, other := range []bool{false, true} {
		st := &startStore{bulkStore: newBulkStore(), other: other}
		eng := &startEngine{bulkEngine: bulkEngine{store: st.bulkStore}}
		u := &migration.Runs{Store: st, Engine: eng, Now: func() time.Time { return t0 }}
		run, err := u.Start(context.Background(), migration.StartRequest{MigrationID: "m", CandidateID: "c"})
		if !other {
			// The start succeeded: its Run completed before StartRun
			// recorded it.
			if err != nil || run.Status != migration.RunCompleted || run.Execution != 1 || len(eng.cancelled) != 0 {
				t.Fatalf("own execution: %+v, %v, cancelled %v", run, err, eng.cancelled)
			}
			continue
		}
		var ref *migration.Refusal
		if !errors.As(err, &ref) || ref.Reason != migration.ReasonCandidateCompleted || len(eng.cancelled) != 1 {
			t.Fatalf("another execution: %v, cancelled %v", err, eng.cancelled)
		}
	}
}

// A start whose execution the store could not record keeps it: the
// workflow records it on its first step, and the caller's retry finds it
// running. Withdrawn, the retry would start a second execution and the
// Migrator would do the first step twice.
func TestStartWithTheStoreUnreachableKeepsTheExecution(t *testing.T) {
	st := &startStore{bulkStore: newBulkStore(), unreachable: true}
	eng := &startEngine{bulkEngine: bulkEngine{store: st.bulkStore}}
	u := &migration.Runs{Store: st, Engine: eng, Now: func() time.Time { return t0 }}
	_, err := u.Start(context.Background(), migration.StartRequest{MigrationID: "m", CandidateID: "c"})
	if !errors.Is(err, migration.ErrUnavailable) || len(eng.started) != 1 || len(eng.cancelled) != 0 {
		t.Fatalf("start with the store unreachable: %v, started %d, cancelled %v", err, len(eng.started), eng.cancelled)
	}
}
