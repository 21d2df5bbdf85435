package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

func dispatchFailed(r migration.Run, try int, reason string, now time.Time) migration.Event {
	return migration.Event{Time: now, Kind: migration.EventDispatchFailed, MigrationID: r.MigrationID, CandidateID: r.CandidateID,
		RunID: r.ID, Execution: r.Execution, Step: r.Current().StepName, Attempt: r.Current().Attempt, Actor: migration.ActorLoom,
		Details: map[string]string{"reason": reason, "try": strings.Repeat("1", try)}}
}

// A step Loom cannot hand to its Migrator shows it on the Run (tries,
// last error, next try), in the dispatch-failing listing and the metrics,
// and wakes watchers; it is forgotten once the Migrator accepts the step,
// or when the view moves past the attempt.
func TestADispatchThatKeepsFailingShowsOnTheRun(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	setupRuns(t, s, "m", "a", "b")
	r := newRun("m", "a", 1, at(1))
	mustBegin(t, s, r)
	r.BeginStep(0, 1, at(2))
	mustSave(t, s, r)
	watch, err := s.WatchRun(ctx, "m", "a")
	if err != nil {
		t.Fatal(err)
	}

	for i, reason := range []string{"connection refused", "503 from the Migrator"} {
		if err := s.RecordDispatchFailure(ctx, dispatchFailed(r, i+1, reason, at(3+i)), at(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	got := current(mustGetRun(t, s, "m", "a"))
	if got.DispatchFailures != 2 || got.LastDispatchError != "503 from the Migrator" || !got.NextDispatchTime.Equal(at(11).Truncate(time.Millisecond)) {
		t.Fatalf("the Run shows %d failures, %q, next %v", got.DispatchFailures, got.LastDispatchError, got.NextDispatchTime)
	}
	select {
	case <-watch:
	case <-time.After(5 * time.Second):
		t.Fatal("watchers were not told")
	}
	wantListed(t, s, "m", migration.RunFilter{DispatchFailing: true}, "a")
	met, err := s.MigrationMetrics(ctx, "m", migration.MetricsQuery{Now: at(20), StuckAfter: time.Hour})
	if err != nil || met.DispatchFailing != 1 {
		t.Fatalf("metrics: %d dispatch failing, %v", met.DispatchFailing, err)
	}
	if n := len(allEvents(t, s, "m", migration.EventFilter{Kinds: []migration.EventKind{migration.EventDispatchFailed}})); n != 2 {
		t.Fatalf("%d dispatch_failed events, want 2", n)
	}

	// Failures of another execution or step do not show.
	stale := r.Clone()
	stale.Execution = 7
	if err := s.RecordDispatchFailure(ctx, dispatchFailed(stale, 1, "old", at(12)), at(13)); err != nil {
		t.Fatal(err)
	}
	if got := current(mustGetRun(t, s, "m", "a")); got.DispatchFailures != 2 {
		t.Fatalf("a stale execution's failure counted: %d", got.DispatchFailures)
	}

	// Accepted at last.
	if err := s.ClearDispatchFailure(ctx, "m", "a", 1, r.Current().StepName); err != nil {
		t.Fatal(err)
	}
	if got := current(mustGetRun(t, s, "m", "a")); got.DispatchFailures != 0 || got.LastDispatchError != "" || !got.NextDispatchTime.IsZero() {
		t.Fatalf("after the Migrator accepted: %+v", got)
	}
	wantListed(t, s, "m", migration.RunFilter{DispatchFailing: true})

	// Failing again, then the Migrator reports (it got the step after all):
	// the view moves on and the failures go.
	if err := s.RecordDispatchFailure(ctx, dispatchFailed(r, 3, "timeout", at(14)), at(15)); err != nil {
		t.Fatal(err)
	}
	wantListed(t, s, "m", migration.RunFilter{DispatchFailing: true}, "a")
	runReport(t, &r, migration.StepOpen, at(16))
	mustSave(t, s, r)
	if got := current(mustGetRun(t, s, "m", "a")); got.DispatchFailures != 0 {
		t.Fatalf("after the view moved on: %+v", got)
	}
	wantListed(t, s, "m", migration.RunFilter{DispatchFailing: true})
	if n := rdb.Exists(ctx, runDispatchFailingKey("m")).Val(); n != 0 {
		t.Fatal("an empty index is left")
	}
	checkRuns(t, rdb, "m", true)
}

func current(r migration.Run) *migration.StepResult { return r.Current() }
