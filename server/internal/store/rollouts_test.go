package store

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/loomhq/loom/server/internal/migration"
)

func TestRolloutViewsSnapshotsAndDelete(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	snapshot := ids("c-", 0, 2500) // more than one RPUSH chunk
	r := migration.Rollout{ID: "ro-000000000001", MigrationID: "m", State: migration.RolloutRunning, CreatedBy: "u-ada",
		Settings: migration.RolloutSettings{MaxInFlight: 5}, Progress: migration.RolloutProgress{Planned: len(snapshot)},
		CreateTime: at(1), UpdateTime: at(1), Seq: 1}
	if _, err := s.CreateRollout(ctx, r, snapshot); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRollout(ctx, r, snapshot); !errors.Is(err, migration.ErrAlreadyExists) {
		t.Fatalf("second create: %v", err)
	}
	got, err := s.RolloutCandidates(ctx, "m", r.ID, 998, 4)
	if err != nil || !slices.Equal(got, snapshot[998:1002]) {
		t.Fatalf("ids 998..1001 = %v, %v", got, err)
	}
	// Newer writes win, older ones are ignored; each write's events are
	// recorded once.
	newer := r
	newer.Seq, newer.Progress.Started, newer.UpdateTime = 3, 7, at(3)
	older := r
	older.Seq, older.Progress.Started = 2, 4
	ev := newer.Event(migration.EventRolloutPaused, at(3), "u-bob", map[string]string{"reason": "lunch"})
	if _, err := s.SaveRollout(ctx, newer, []migration.Event{ev}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SaveRollout(ctx, older, []migration.Event{ev}); err != nil {
		t.Fatal(err)
	}
	view, err := s.GetRollout(ctx, "m", r.ID)
	if err != nil || view.Progress.Started != 7 || view.Version != 2 {
		t.Fatalf("view = %+v (version %d), %v", view.Progress, view.Version, err)
	}
	page, err := s.ListEvents(ctx, "m", migration.EventFilter{Kinds: []migration.EventKind{migration.EventRolloutStarted, migration.EventRolloutPaused}}, migration.PageRequest{Limit: 10})
	if err != nil || len(page.Events) != 2 || page.Events[0].Actor != "u-bob" || page.Events[1].Actor != "u-ada" || page.Events[0].Details["rollout_id"] != r.ID {
		t.Fatalf("events %+v, %v", page.Events, err)
	}
	list, _, err := s.ListRollouts(ctx, "m", migration.PageRequest{})
	if err != nil || len(list) != 1 || list[0].ID != r.ID {
		t.Fatalf("list = %v, %v", list, err)
	}
	if _, err := s.DeleteMigration(ctx, "m", at(4)); err != nil {
		t.Fatal(err)
	}
	if keys := scanKeys(t, rdb, "loom:{m}:rollout*"); len(keys) != 0 {
		t.Fatalf("keys left after the delete: %v", keys)
	}
	if _, err := s.GetRollout(ctx, "m", r.ID); !errors.Is(err, migration.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := s.SaveRollout(ctx, newer, nil); !errors.Is(err, migration.ErrNotFound) {
		t.Fatalf("save after delete: %v", err)
	}
}
