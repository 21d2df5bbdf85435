package store

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// A Run's events are stored compactly: every entry of a stream has the
// same fields (so Redis keeps their names once per node), a Candidate's
// stream has no c, its Run id is '.', its kind a number; and they read back
// as they were recorded.
func TestEventEntriesAreCompact(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	setupRuns(t, s, "m", "org/a")
	r := mustBegin(t, s, newRun("m", "org/a", 1, at(1)))

	for _, key := range []string{eventsKey("m"), candidateEventsKey("m", "org/a")} {
		xs, err := rdb.XRange(ctx, key, "-", "+").Result()
		if err != nil || len(xs) == 0 {
			t.Fatalf("%s: %v %v", key, xs, err)
		}
		want := eventFields
		if key != eventsKey("m") {
			want = slices.DeleteFunc(slices.Clone(eventFields), func(f string) bool { return f == "c" })
		}
		last := xs[len(xs)-1] // run_started
		raw, err := rdb.Do(ctx, "XRANGE", key, last.ID, last.ID).Slice()
		if err != nil {
			t.Fatal(err)
		}
		kv := raw[0].([]any)[1].([]any)
		var fields []string
		for i := 0; i < len(kv); i += 2 {
			fields = append(fields, kv[i].(string))
		}
		if !slices.Equal(fields, want) {
			t.Errorf("%s: fields %v, want %v", key, fields, want)
		}
		if last.Values["r"] != runIDSame || last.Values["k"] != strconv.Itoa(slices.Index(eventKindCodes, migration.EventRunStarted)+1) {
			t.Errorf("%s: run_started stored as %v", key, last.Values)
		}
	}
	for _, f := range []migration.EventFilter{{}, {CandidateID: "org/a"}} {
		evs := allEvents(t, s, "m", f)
		e := evs[len(evs)-1]
		if e.Kind != migration.EventRunStarted || e.CandidateID != "org/a" || e.RunID != r.ID || e.Execution != 1 || e.MigrationID != "m" {
			t.Errorf("%+v: read back %+v", f, e)
		}
	}
}

// Entries written before the compact ones (each field only when set, c in
// the Candidate's stream too, the Run id and kind spelled out) read as
// they did; so does a kind without a number and a Run id of another shape.
func TestEventEntriesOfTheOldFormatAreRead(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	setupRuns(t, s, "m", "org/a")
	old := map[string]any{"k": "step_reported", "t": strconv.FormatInt(millis(at(2)), 10), "by": "migrator",
		"c": "org/a", "r": "m__org/a", "x": "2", "s": "bump", "a": "3", "d": `{"status":"failed","message":"no"}`}
	for _, key := range []string{eventsKey("m"), candidateEventsKey("m", "org/a")} {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: "9999999999999-0", Values: old}).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: "9999999999999-1", Values: map[string]any{
			"k": "some_future_kind", "t": strconv.FormatInt(millis(at(3)), 10), "by": "", "c": "org/a", "r": "other-run",
			"x": "", "s": "", "a": "", "d": ""}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []migration.EventFilter{{}, {CandidateID: "org/a"}} {
		evs := allEvents(t, s, "m", f)
		if len(evs) < 2 {
			t.Fatalf("%+v: %d events", f, len(evs))
		}
		e, e2 := evs[len(evs)-2], evs[len(evs)-1]
		if e.Kind != migration.EventStepReported || e.CandidateID != "org/a" || e.RunID != "m__org/a" || e.Execution != 2 ||
			e.Step != "bump" || e.Attempt != 3 || e.Actor != "migrator" || e.Details["message"] != "no" || !e.Time.Equal(at(2)) {
			t.Errorf("%+v: old entry read as %+v", f, e)
		}
		if e2.Kind != "some_future_kind" || e2.RunID != "other-run" || e2.Execution != 0 || e2.Details != nil {
			t.Errorf("%+v: entry read as %+v", f, e2)
		}
		after, err := s.EventsAfter(ctx, "m", f.CandidateID, "9999999999998-0", 10)
		if err != nil || len(after) != 2 || after[0].RunID != "m__org/a" || after[0].CandidateID != "org/a" {
			t.Errorf("%+v: events after: %+v %v", f, after, err)
		}
	}
}
