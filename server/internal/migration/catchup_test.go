package migration_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

// A replica killed inside a workflow task can leave a Run's view ahead of
// the engine: the view shows the step open, the engine still has it in
// progress and refuses a merge. The operator who merged what the view
// showed is answered unavailable (retry: the Run is catching up), not
// failed_precondition. The engine's refusal stands when the view refuses
// the action too, is not running, names another execution, has not
// changed for a minute, or is behind the engine.
func TestRefusalOfWhatTheViewAllowsIsUnavailable(t *testing.T) {
	merge := migration.StepAction{Kind: migration.ActionMarkMerged, Step: "one", Attempt: 1, Actor: "alice"}
	inProgress := migration.FailedPrecondition(migration.ReasonTransitionNotAllowed, "step one is in_progress")
	notRunning := func() migration.Run {
		r := runAt(migration.StepOpen)
		r.Finish(migration.RunCancelled, "stop", t0)
		return r
	}
	const unknown = -100 // the engine does not answer in time
	for _, tc := range []struct {
		name string
		view migration.Run
		age  time.Duration // of the view's last change
		// engineSeq is the engine's Seq of the Run less the view's.
		engineSeq int64
		a         migration.StepAction
		want      error
		wantWhy   string
	}{
		{"view ahead: open, engine in progress", runAt(migration.StepOpen), time.Second, -1, merge,
			migration.ErrUnavailable, migration.ReasonExecutionEngineFailure},
		{"view written by a task that died: same seq, other content", runAt(migration.StepOpen), time.Second, 0, merge,
			migration.ErrUnavailable, migration.ReasonExecutionEngineFailure},
		{"the engine does not say", runAt(migration.StepOpen), time.Second, unknown, merge,
			migration.ErrUnavailable, migration.ReasonExecutionEngineFailure},
		{"view behind the engine", runAt(migration.StepOpen), time.Second, 1, merge,
			migration.ErrFailedPrecondition, migration.ReasonTransitionNotAllowed},
		{"view agrees: in progress", runAt(migration.StepInProgress), time.Second, -1, merge,
			migration.ErrFailedPrecondition, migration.ReasonTransitionNotAllowed},
		{"view ahead for too long", runAt(migration.StepOpen), 2 * time.Minute, -1, merge,
			migration.ErrFailedPrecondition, migration.ReasonTransitionNotAllowed},
		{"another execution", runAt(migration.StepOpen), time.Second, -1,
			migration.StepAction{Kind: migration.ActionMarkMerged, Execution: 1, Step: "one", Attempt: 1},
			migration.ErrFailedPrecondition, migration.ReasonTransitionNotAllowed},
		{"view not running", notRunning(), time.Second, -1, merge,
			migration.ErrFailedPrecondition, migration.ReasonTransitionNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, st, eng := newBulkRuns()
			now := t0.Add(time.Hour)
			u.Now = func() time.Time { return now }
			view := tc.view
			view.UpdateTime = now.Add(-tc.age)
			st.add("c", &view)
			eng.refuse = func(string) error { return inProgress }
			eng.inspect = func(string) (migration.EngineRun, error) {
				if tc.engineSeq == unknown {
					return migration.EngineRun{}, context.DeadlineExceeded
				}
				r := runAt(migration.StepInProgress)
				r.Seq = view.Seq + tc.engineSeq
				return migration.EngineRun{State: migration.EngineRunning, Run: &r}, nil
			}

			_, err := u.Act(context.Background(), migration.RunID("m", "c"), tc.a)
			var ref *migration.Refusal
			if !errors.Is(err, tc.want) || !errors.As(err, &ref) || ref.Reason != tc.wantWhy {
				t.Fatalf("answered %v, want %v %s", err, tc.want, tc.wantWhy)
			}
			if errors.Is(tc.want, migration.ErrUnavailable) && ref.Metadata["run_id"] != "m__c" {
				t.Errorf("metadata %v, want the run id", ref.Metadata)
			}
		})
	}
}

// A Run started while the store was down has an execution but no view
// until its workflow writes one: GetRun and WatchRun answer unavailable
// (retry), not not_found, while the engine says it runs. A Run the engine
// does not know, or when the engine cannot say, is not found.
func TestRunNotRecordedYetIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		engine  func(string) (migration.EngineRun, error)
		want    error
		wantWhy string
	}{
		{"the engine runs it", func(string) (migration.EngineRun, error) {
			return migration.EngineRun{State: migration.EngineRunning}, nil
		}, migration.ErrUnavailable, migration.ReasonStoreUnavailable},
		{"the engine has none", func(string) (migration.EngineRun, error) {
			return migration.EngineRun{State: migration.EngineMissing}, nil
		}, migration.ErrNotFound, migration.ReasonRunNotFound},
		{"the engine's ended", func(string) (migration.EngineRun, error) {
			return migration.EngineRun{State: migration.EngineCompleted}, nil
		}, migration.ErrNotFound, migration.ReasonRunNotFound},
		{"the engine does not say", func(string) (migration.EngineRun, error) {
			return migration.EngineRun{}, context.DeadlineExceeded
		}, migration.ErrNotFound, migration.ReasonRunNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, st, eng := newBulkRuns()
			eng.inspect = tc.engine
			u.Store = watchableStore{st}
			check := func(what string, err error) {
				t.Helper()
				var ref *migration.Refusal
				if !errors.Is(err, tc.want) || !errors.As(err, &ref) || ref.Reason != tc.wantWhy {
					t.Fatalf("%s answered %v, want %v %s", what, err, tc.want, tc.wantWhy)
				}
			}
			_, err := u.GetRun(context.Background(), migration.RunID("m", "c"))
			check("GetRun", err)
			err = u.WatchRun(context.Background(), migration.RunID("m", "c"), 0,
				func(migration.Run) error { return errors.New("sent a Run that does not exist") },
				func(time.Time) error { return nil })
			check("WatchRun", err)
		})
	}
}

// watchableStore is a bulkStore whose Runs never change: a watch starts
// with a read of the Run.
type watchableStore struct{ *bulkStore }

func (watchableStore) WatchRun(context.Context, string, string) (<-chan struct{}, error) {
	return make(chan struct{}), nil
}
