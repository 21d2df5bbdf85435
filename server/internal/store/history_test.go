package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

func kindsOf(events []migration.Event) string {
	var out []string
	for _, e := range events {
		k := string(e.Kind)
		if e.Step != "" {
			k += ":" + e.Step
		}
		out = append(out, k)
	}
	return strings.Join(out, ",")
}

func allEvents(t *testing.T, s *Store, m string, f migration.EventFilter) []migration.Event {
	t.Helper()
	page, err := s.ListEvents(context.Background(), m, f, migration.PageRequest{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// Newest first: reverse for readability.
	out := make([]migration.Event, len(page.Events))
	for i, e := range page.Events {
		out[len(out)-1-i] = e
	}
	return out
}

// saveWith applies a change to r and saves it with its events, as the
// workflow does.
func saveWith(t *testing.T, s *Store, r *migration.Run, now time.Time, events ...migration.Event) migration.Run {
	t.Helper()
	if _, err := s.SaveRun(context.Background(), *r, events, r.Observations(now)); err != nil {
		t.Fatal(err)
	}
	return mustGetRun(t, s, r.MigrationID, r.CandidateID)
}

// dispatchedRun is Candidate a of Migration m (both made here) with its Run
// begun and its first step dispatched and saved.
func dispatchedRun(t *testing.T, s *Store) migration.Run {
	t.Helper()
	setupRuns(t, s, "m", "a")
	r := newRun("m", "a", 1, at(1))
	mustBegin(t, s, r)
	r.BeginStep(0, 1, at(2))
	saveWith(t, s, &r, at(2), r.DispatchedEvent(at(2)))
	return r
}

func TestEveryChangeRecordsItsEvent(t *testing.T) {
	s, _ := newStore(t)
	ctx := migration.WithActor(context.Background(), "alice")
	m := testMigration("hist")
	if _, _, _, err := s.PutMigration(ctx, m, at(0)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.PutMigration(ctx, m, at(1)); err != nil { // identical: no event
		t.Fatal(err)
	}
	m.Description = "changed"
	if _, _, _, err := s.PutMigration(ctx, m, at(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SubmitCandidates(ctx, migration.Submission{MigrationID: "hist", Candidates: []migration.Candidate{cand("a", "svc"), cand("b", "svc")}}, at(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateCandidateInputs(ctx, "hist", "a", migration.InputChange{Set: map[string]string{"tag": "v2"}, Remove: []string{"old"}, Note: "v1 is withdrawn"}, at(4)); err != nil {
		t.Fatal(err)
	}

	r := newRun("hist", "a", 1, at(5))
	r.StartedBy, r.StartNote = "bob", "before the freeze"
	if _, err := s.BeginRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.BeginStep(0, 1, at(6))
	saveWith(t, s, &r, at(6), r.DispatchedEvent(at(6)))
	a := reportAction(&r, migration.StepOpen)
	a.PRURL = "https://git.example/pr/1"
	runAct(t, &r, a, at(7))
	saveWith(t, s, &r, at(7), r.ActionEvents(a, at(7))...)
	a = reportAction(&r, migration.StepMerged)
	runAct(t, &r, a, at(67))
	saveWith(t, s, &r, at(67), r.ActionEvents(a, at(67))...)

	got := allEvents(t, s, "hist", migration.EventFilter{})
	want := "migration_announced,migration_updated,candidates_discovered,candidate_inputs_updated,run_started,step_dispatched:bump,step_reported:bump,step_reported:bump"
	if kindsOf(got) != want {
		t.Fatalf("events\n got %s\nwant %s", kindsOf(got), want)
	}
	if got[0].Actor != "alice" || got[2].Details["added"] != "2" || got[3].CandidateID != "a" ||
		!maps.Equal(got[3].Details, map[string]string{"inputs.tag": "v2", "removed.old": "", "note": "v1 is withdrawn"}) {
		t.Errorf("details: %+v / %+v / %+v", got[0], got[2], got[3])
	}
	if e := got[4]; e.Actor != "bob" || e.RunID != "hist__a" || e.Execution != 1 || e.Details["inputs.tag"] != "v1" || e.Details["note"] != "before the freeze" {
		t.Errorf("run started: %+v", e)
	}
	if e := got[6]; e.Details["status"] != "open" || e.Details["pr_url"] != "https://git.example/pr/1" || e.Attempt != 1 {
		t.Errorf("report: %+v", e)
	}
	// A Candidate's own history: discovered, inputs, and its Run.
	mine := allEvents(t, s, "hist", migration.EventFilter{CandidateID: "a"})
	if kindsOf(mine) != "candidate_discovered,candidate_inputs_updated,run_started,step_dispatched:bump,step_reported:bump,step_reported:bump" {
		t.Fatalf("a's history: %s", kindsOf(mine))
	}
	if other := allEvents(t, s, "hist", migration.EventFilter{CandidateID: "b"}); kindsOf(other) != "candidate_discovered" {
		t.Fatalf("b's history: %s", kindsOf(other))
	}
}

func TestAFailedWriteRecordsNothing(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	if _, err := s.SubmitCandidates(ctx, migration.Submission{MigrationID: "ghost", Candidates: []migration.Candidate{cand("a", "svc")}}, at(1)); err == nil {
		t.Fatal("submit to an unknown Migration")
	}
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc")}}, at(1))
	before := dumpMigration(t, rdb, "m")
	stale := newRun("m", "a", 7, at(2))
	stale.BeginStep(0, 1, at(2))
	if _, err := s.SaveRun(ctx, stale, []migration.Event{stale.DispatchedEvent(at(2))}, nil); !errors.Is(err, migration.ErrFailedPrecondition) {
		t.Fatalf("stale save: %v", err)
	}
	if after := dumpMigration(t, rdb, "m"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a refused save changed something:\n%v\n%v", before, after)
	}
	if n := rdb.Exists(ctx, eventsKey("ghost")).Val(); n != 0 {
		t.Fatal("a refused submit recorded an event")
	}
}

// A Run's workflow saves one change set at a time, in order, and retries a
// save whose answer it lost: each save's events are applied once.
func TestEventsOfASaveAreAppliedOnceWhenRetried(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc")}}, at(0))
	r := newRun("m", "a", 1, at(1))
	if _, err := s.BeginRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.BeginStep(0, 1, at(2))
	first := r.Clone()
	a := reportAction(&r, migration.StepOpen)
	a.PRURL = "https://x.example/1"
	runAct(t, &r, a, at(3))
	second := r.Clone()
	saves := []struct {
		run migration.Run
		ev  migration.Event
	}{{first, first.DispatchedEvent(at(2))}, {first, first.DispatchedEvent(at(2))}, {second, second.ActionEvents(a, at(3))[0]}, {second, second.ActionEvents(a, at(3))[0]}}
	for _, save := range saves {
		if _, err := s.SaveRun(ctx, save.run, []migration.Event{save.ev}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := kindsOf(allEvents(t, s, "m", migration.EventFilter{Kinds: []migration.EventKind{migration.EventStepDispatched, migration.EventStepReported}})); got != "step_dispatched:bump,step_reported:bump" {
		t.Fatalf("events: %s", got)
	}
	// A save older than the one stored is a late duplicate: nothing of it is
	// applied again.
	if _, err := s.SaveRun(ctx, first, []migration.Event{first.DispatchedEvent(at(2))}, nil); err != nil {
		t.Fatal(err)
	}
	if got := kindsOf(allEvents(t, s, "m", migration.EventFilter{})); strings.Count(got, "step_dispatched") != 1 {
		t.Fatalf("a late duplicate applied again: %s", got)
	}
}

// A workflow task that dies after its save leaves that save's events
// recorded though Temporal never recorded the change (the cluster test saw
// a Migrator's report recorded twice after a replica's SIGKILL). The task
// retried elsewhere makes the change again, and its save carries it along
// with the next change: only the next change's events are new.
func TestEventsOfAChangeSavedByADeadTaskAreNotRecordedAgain(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc")}}, at(0))
	r := newRun("m", "a", 1, at(1))
	mustBegin(t, s, r)
	r.BeginStep(0, 1, at(2))
	dispatched := r.DispatchedEvent(at(2))
	dispatched.Seq = r.Seq
	saveWith(t, s, &r, at(2), dispatched)
	report := reportAction(&r, migration.StepOpen)
	report.PRURL = "https://x.example/1"
	runAct(t, &r, report, at(3))
	reported := r.ActionEvents(report, at(3))
	for i := range reported {
		reported[i].Seq = r.Seq
	}
	// The dead task's save.
	if _, err := s.SaveRun(ctx, r.Clone(), reported, nil); err != nil {
		t.Fatal(err)
	}
	// The retried task: the same report, then the operator's merge, in one
	// save.
	merge := migration.StepAction{Kind: migration.ActionMarkMerged, Step: "bump", Attempt: 1, Actor: "op"}
	runAct(t, &r, merge, at(4))
	merged := r.ActionEvents(merge, at(4))
	for i := range merged {
		merged[i].Seq = r.Seq
	}
	if _, err := s.SaveRun(ctx, r.Clone(), append(slices.Clone(reported), merged...), nil); err != nil {
		t.Fatal(err)
	}
	if got := kindsOf(allEvents(t, s, "m", migration.EventFilter{Kinds: []migration.EventKind{migration.EventStepDispatched, migration.EventStepReported, migration.EventStepMarkedMerged}})); got != "step_dispatched:bump,step_reported:bump,step_marked_merged:bump" {
		t.Fatalf("events: %s", got)
	}
}

// A step's durations are counted once per change too: the merge measured
// by a dead task's save, then by the retried task's with the next change,
// is one observation of each kind.
func TestDurationsOfAChangeSavedByADeadTaskAreNotCountedAgain(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	r := dispatchedRun(t, s)
	open := reportAction(&r, migration.StepOpen)
	open.PRURL = "https://x.example/1"
	runAct(t, &r, open, at(3))
	saveWith(t, s, &r, at(3), r.ActionEvents(open, at(3))...)
	merge := migration.StepAction{Kind: migration.ActionMarkMerged, Step: "bump", Attempt: 1, Actor: "op"}
	runAct(t, &r, merge, at(60))
	measured := r.Observations(at(60))
	if len(measured) != 2 {
		t.Fatalf("observations of a merge: %+v", measured)
	}
	for i := range measured {
		measured[i].Seq = r.Seq
	}
	// The dead task's save, then the retried task's: the same merge and the
	// next step's dispatch.
	if _, err := s.SaveRun(ctx, r.Clone(), nil, measured); err != nil {
		t.Fatal(err)
	}
	r.BeginStep(1, 1, at(61))
	next := r.DispatchedEvent(at(61))
	next.Seq = r.Seq
	if _, err := s.SaveRun(ctx, r.Clone(), []migration.Event{next}, measured); err != nil {
		t.Fatal(err)
	}
	figs := rdb.HGetAll(ctx, metricsKey("m")).Val()
	if figs["n:bump"] != "1" || figs["mn:bump"] != "1" {
		t.Fatalf("durations counted %s and %s times, want once each (%v)", figs["n:bump"], figs["mn:bump"], figs)
	}
}

// The run view's record keeps the same fields however many times it is
// saved: reading or saving a Run weeks old costs what it cost on day one.
func TestARunViewDoesNotGrowWithItsSaves(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	r := dispatchedRun(t, s)
	fields := rdb.HLen(ctx, runKey("m", "a")).Val()
	for i := range 200 {
		a := reportAction(&r, migration.StepInProgress)
		a.Message = fmt.Sprint("progress ", i)
		runAct(t, &r, a, at(3+i))
		saveWith(t, s, &r, at(3+i), r.ActionEvents(a, at(3+i))...)
	}
	if got := rdb.HLen(ctx, runKey("m", "a")).Val(); got != fields {
		t.Fatalf("the run view has %d fields after 200 saves, %d after the first", got, fields)
	}
	if n := len(allEvents(t, s, "m", migration.EventFilter{Kinds: []migration.EventKind{migration.EventStepReported}})); n != 200 {
		t.Fatalf("%d reports recorded, want 200", n)
	}
}

// Views written before evseq marked each save with a field of its own:
// the first save now removes them, and counts the saves up to the stored
// seq as applied.
func TestALegacyRunViewLosesItsPerSaveFields(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	r := dispatchedRun(t, s)
	key := runKey("m", "a")
	// As an older Loom left it.
	rdb.HDel(ctx, key, "evseq")
	rdb.HSet(ctx, key, "ev:1:0", 1, "ev:1:1", 1)
	// A retry of the stored save applies nothing; the next save applies.
	saveWith(t, s, &r, at(2), r.DispatchedEvent(at(2)))
	a := reportAction(&r, migration.StepOpen)
	a.PRURL = "https://x.example/1"
	runAct(t, &r, a, at(3))
	saveWith(t, s, &r, at(3), r.ActionEvents(a, at(3))...)
	for _, f := range rdb.HKeys(ctx, key).Val() {
		if strings.HasPrefix(f, "ev:") {
			t.Errorf("field %s left", f)
		}
	}
	if got := kindsOf(allEvents(t, s, "m", migration.EventFilter{Kinds: []migration.EventKind{migration.EventStepDispatched, migration.EventStepReported}})); got != "step_dispatched:bump,step_reported:bump" {
		t.Fatalf("events: %s", got)
	}
}

func TestListEventsPagesAndFilters(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	for i := range 30 {
		c := fmt.Sprintf("c%02d", i)
		mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand(c, "svc")}}, at(i))
		if i%3 == 0 {
			if _, err := s.UpdateCandidateInputs(ctx, "m", c, migration.InputChange{Set: map[string]string{"k": "v"}}, at(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// 1 announce + 30 discoveries + 10 input updates, newest first, by pages of 7.
	var seen []migration.Event
	after := ""
	for pages := 0; ; pages++ {
		page, err := s.ListEvents(ctx, "m", migration.EventFilter{}, migration.PageRequest{After: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, page.Events...)
		if after = page.Next; after == "" || pages > 10 {
			break
		}
	}
	if len(seen) != 41 || seen[0].Kind != migration.EventCandidatesDiscovered || seen[40].Kind != migration.EventMigrationAnnounced {
		t.Fatalf("paged through %d events: first %s, last %s", len(seen), seen[0].Kind, seen[len(seen)-1].Kind)
	}
	for i := 1; i < len(seen); i++ {
		if !idBefore(seen[i].ID, seen[i-1].ID) {
			t.Fatalf("not newest first at %d: %s after %s", i, seen[i].ID, seen[i-1].ID)
		}
	}
	inputs, err := s.ListEvents(ctx, "m", migration.EventFilter{Kinds: []migration.EventKind{migration.EventCandidateInputsUpdated}}, migration.PageRequest{Limit: 100})
	if err != nil || len(inputs.Events) != 10 {
		t.Fatalf("input events: %d %v", len(inputs.Events), err)
	}
	window, err := s.ListEvents(ctx, "m", migration.EventFilter{Kinds: []migration.EventKind{migration.EventCandidatesDiscovered}, Since: at(10), Until: at(20)}, migration.PageRequest{Limit: 100})
	if err != nil || len(window.Events) != 10 {
		t.Fatalf("events between minutes 10 and 20: %d %v", len(window.Events), err)
	}
	later, err := s.EventsAfter(ctx, "m", "", seen[5].ID, 100)
	if err != nil || len(later) != 5 || later[4].ID != seen[0].ID {
		t.Fatalf("events after: %d %v", len(later), err)
	}
}

// A Candidate id prefix keeps the events of the Candidates whose id starts
// with it, read from the Migration's stream while paging: pages stay
// bounded (short pages with a cursor when matches are rare), every match
// comes once, newest first, and events about no Candidate are left out.
func TestListEventsByCandidatePrefix(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	// 40 Candidates, every tenth of team acme/, discovered at once, then
	// their inputs updated one by one (a Candidate's discovery is in the
	// Migration's stream as the submission's, naming no Candidate).
	var want, ids []string
	for i := range 40 {
		c := fmt.Sprintf("other/c%02d", i)
		if i%10 == 0 {
			c = fmt.Sprintf("acme/c%02d", i)
			want = append([]string{c}, want...) // newest first
		}
		ids = append(ids, c)
	}
	var cs []migration.Candidate
	for _, c := range ids {
		cs = append(cs, cand(c, "svc"))
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs}, at(0))
	for i, c := range ids {
		if _, err := s.UpdateCandidateInputs(ctx, "m", c, migration.InputChange{Set: map[string]string{"k": "v"}}, at(i)); err != nil {
			t.Fatal(err)
		}
	}
	all := allEvents(t, s, "m", migration.EventFilter{CandidatePrefix: "acme/"})
	if len(all) != 4 {
		t.Fatalf("%d events of acme/: %v", len(all), all)
	}
	// Pages of 1: each read scans at most ten pages' worth of entries
	// (here 10), so the rare matches come in pages of at most one, some
	// empty, each with the cursor to go on.
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page, err := s.ListEvents(ctx, "m", migration.EventFilter{CandidatePrefix: "acme/"}, migration.PageRequest{After: after, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) > 1 {
			t.Fatalf("page of %d events", len(page.Events))
		}
		for _, e := range page.Events {
			if e.Kind != migration.EventCandidateInputsUpdated {
				t.Fatalf("event %s of %s", e.Kind, e.CandidateID)
			}
			got = append(got, e.CandidateID)
		}
		if after = page.Next; after == "" {
			break
		}
		if pages > 40 {
			t.Fatal("paging does not end")
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("candidates %v, want %v", got, want)
	}
	// With other filters: a kind, a time range, an exact Candidate.
	if got := allEvents(t, s, "m", migration.EventFilter{CandidatePrefix: "acme/c1", Kinds: []migration.EventKind{migration.EventCandidateInputsUpdated}}); len(got) != 1 || got[0].CandidateID != "acme/c10" {
		t.Fatalf("acme/c1 inputs updated: %v", got)
	}
	if got := allEvents(t, s, "m", migration.EventFilter{CandidatePrefix: "acme/", Since: at(15), Until: at(35)}); len(got) != 2 || got[0].CandidateID != "acme/c20" || got[1].CandidateID != "acme/c30" {
		t.Fatalf("acme/ between minutes 15 and 35: %v", got)
	}
	if got := allEvents(t, s, "m", migration.EventFilter{CandidateID: "acme/c20", CandidatePrefix: "acme/"}); len(got) != 2 || got[1].CandidateID != "acme/c20" {
		t.Fatalf("acme/c20 with the prefix acme/: %v", got)
	}
	if got := allEvents(t, s, "m", migration.EventFilter{CandidatePrefix: "nobody/"}); len(got) != 0 {
		t.Fatalf("nobody/: %v", got)
	}
}

func TestRetentionAndDelete(t *testing.T) {
	s, rdb := newStore(t)
	s.SetRetention(Retention{MaxEvents: 50, MaxCandidateEvents: 5, MaxAge: time.Hour})
	ctx := context.Background()
	mustPut(t, s, "m")
	for i := range 500 {
		if _, err := s.UpdateCandidateInputs(ctx, "m", "a", migration.InputChange{Set: map[string]string{"i": fmt.Sprint(i)}}, at(0)); err != nil && i == 0 {
			mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc")}}, at(0))
		}
	}
	if n := rdb.XLen(ctx, eventsKey("m")).Val(); n > 200 {
		t.Errorf("the history holds %d events, kept to about 50", n)
	}
	if n := rdb.XLen(ctx, candidateEventsKey("m", "a")).Val(); n > 120 {
		t.Errorf("a Candidate's history holds %d events, kept to about 5", n)
	}
	if _, err := s.DeleteMigration(ctx, "m", time.Now()); err != nil {
		t.Fatal(err)
	}
	page, err := s.ListEvents(ctx, "m", migration.EventFilter{}, migration.PageRequest{Limit: 1})
	if err != nil || len(page.Events) != 1 || page.Events[0].Kind != migration.EventMigrationDeleted {
		t.Fatalf("the delete event is the last: %+v %v", page.Events, err)
	}
	if ttl := rdb.PTTL(ctx, eventsKey("m")).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("a deleted Migration's history expires after the age limit: %v", ttl)
	}
	if ttl := rdb.PTTL(ctx, candidateEventsKey("m", "a")).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("a deleted Migration's Candidate's history expires after the age limit: %v", ttl)
	}
	// Announced again: its history is kept again, and a Candidate's once
	// discovered again.
	mustPut(t, s, "m")
	if ttl := rdb.PTTL(ctx, eventsKey("m")).Val(); ttl != -1 {
		t.Fatalf("the history of a Migration announced again still expires: %v", ttl)
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc")}}, at(1))
	if ttl := rdb.PTTL(ctx, candidateEventsKey("m", "a")).Val(); ttl != -1 {
		t.Fatalf("the history of a Candidate discovered again still expires: %v", ttl)
	}
	// Only a Migration announced again pays a PERSIST per Candidate added.
	mustPut(t, s, "fresh")
	if got := rdb.HExists(ctx, migrationKey("fresh"), "reborn").Val(); got {
		t.Error("a Migration never deleted is marked reborn")
	}
}

func TestMetricsFollowTheRuns(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	var cs []migration.Candidate
	for i := range 4 {
		cs = append(cs, cand(fmt.Sprintf("c%d", i), "svc"))
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs}, at(0))
	runs := make([]migration.Run, 4)
	for i := range runs {
		runs[i] = newRun("m", cs[i].ID, 1, at(10))
		if _, err := s.BeginRun(ctx, runs[i]); err != nil {
			t.Fatal(err)
		}
		runs[i].BeginStep(0, 1, at(11))
		saveWith(t, s, &runs[i], at(11))
	}
	// c0: open; c1: open then merged 2 h later, then review in progress;
	// c2: failed; c3: open then merged after 30 min, review completed → done.
	open := func(r *migration.Run, when time.Time) {
		a := reportAction(r, migration.StepOpen)
		a.PRURL = "https://x.example/" + r.CandidateID
		runAct(t, r, a, when)
		saveWith(t, s, r, when, r.ActionEvents(a, when)...)
	}
	step := func(r *migration.Run, st migration.StepStatus, when time.Time) {
		a := reportAction(r, st)
		a.Message = "because"
		runAct(t, r, a, when)
		saveWith(t, s, r, when, r.ActionEvents(a, when)...)
	}
	open(&runs[0], at(12))
	open(&runs[1], at(12))
	step(&runs[1], migration.StepMerged, at(132))
	runs[1].BeginStep(1, 1, at(133))
	saveWith(t, s, &runs[1], at(133))
	step(&runs[2], migration.StepFailed, at(13))
	open(&runs[3], at(12))
	step(&runs[3], migration.StepMerged, at(42))
	runs[3].BeginStep(1, 1, at(43))
	saveWith(t, s, &runs[3], at(43))
	step(&runs[3], migration.StepCompleted, at(50))
	runs[3].Finish(migration.RunCompleted, "", at(50))
	saveWith(t, s, &runs[3], at(50), runs[3].FinishedEvent(migration.ActorLoom))

	got, err := s.MigrationMetrics(ctx, "m", migration.MetricsQuery{StuckAfter: time.Hour, Now: at(200)})
	if err != nil {
		t.Fatal(err)
	}
	if got.OpenPullRequests != 1 || got.Failed != 1 || got.AwaitingReview != 0 || got.Counts.Running != 3 || got.Counts.Completed != 1 {
		t.Fatalf("figures: open %d failed %d review %d counts %+v", got.OpenPullRequests, got.Failed, got.AwaitingReview, got.Counts)
	}
	cur := fmt.Sprint(got.CurrentSteps)
	if cur != "[{bump open 1} {bump failed 1} {review in_progress 1}]" {
		t.Fatalf("current steps %s", cur)
	}
	if len(got.StepDurations) != 2 {
		t.Fatalf("durations %+v", got.StepDurations)
	}
	bump := got.StepDurations[0]
	if bump.Step != "bump" || bump.Count != 2 || bump.MergedCount != 2 || bump.MergeMax != 2*time.Hour || bump.Max != 121*time.Minute ||
		bump.MergeP50 != 30*time.Minute || bump.MergeP95 != 2*time.Hour || bump.FailedCount != 1 {
		t.Fatalf("bump durations %+v", bump)
	}
	if len(got.RecentFailures) != 1 || got.RecentFailures[0].CandidateID != "c2" || got.RecentFailures[0].Message != "because" {
		t.Fatalf("failures %+v", got.RecentFailures)
	}
	// Every event of the Migration is counted in its day.
	if len(got.EventsPerDay) != migration.EventDays || !got.EventsPerDay[migration.EventDays-1].Day.Equal(at(200).UTC().Truncate(24*time.Hour)) {
		t.Fatalf("events per day: %d days, last %v", len(got.EventsPerDay), got.EventsPerDay[len(got.EventsPerDay)-1].Day)
	}
	var counted int64
	for _, d := range got.EventsPerDay {
		counted += d.Count
	}
	if recorded := rdb.XLen(ctx, eventsKey("m")).Val(); counted != recorded || counted == 0 {
		t.Fatalf("events per day add up to %d, the history holds %d", counted, recorded)
	}
	// All running ones have been silent since minute 133 at most: stuck after an hour at minute 200.
	if got.StuckCount != 3 || got.Stuck[0].CandidateID != "c0" && got.Stuck[0].CandidateID != "c2" {
		t.Fatalf("stuck %d %+v", got.StuckCount, got.Stuck)
	}
	var started, completed int64
	for _, b := range got.Burndown {
		started += b.Started
		completed += b.Completed
	}
	if started != 4 || completed != 1 {
		t.Fatalf("burndown: started %d completed %d", started, completed)
	}
	fleet, err := s.FleetOverview(ctx, migration.PageRequest{Limit: 10}, at(200))
	if err != nil || len(fleet.Migrations) != 1 || fleet.Migrations[0].OpenPullRequests != 1 || fleet.Migrations[0].Failed != 1 {
		t.Fatalf("fleet %+v %v", fleet, err)
	}
	var done int64
	for _, n := range fleet.Migrations[0].CompletedLastDays {
		done += n
	}
	if done != 1 {
		t.Fatalf("completed over the last days: %v", fleet.Migrations[0].CompletedLastDays)
	}
}

// idBefore orders stream ids ("<ms>-<seq>") numerically.
func idBefore(a, b string) bool {
	var am, as, bm, bs int64
	fmt.Sscanf(a, "%d-%d", &am, &as)
	fmt.Sscanf(b, "%d-%d", &bm, &bs)
	return am < bm || am == bm && as < bs
}

// A Migrator reports a step's failure (step_reported, status failed), an
// operator fails a review (review_finished, status failed), where Loom
// records the failures it makes itself as step_failed: a filter on the
// reported status finds every kind of failure, and leaves the events of
// other kinds to the kind filter.
func TestListEventsByReportedStatus(t *testing.T) {
	s, _ := newStore(t)
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc"), cand("b", "svc"), cand("c", "svc")}}, at(0))
	// a: in progress, open, then the Migrator reports it failed; retried.
	a := mustBegin(t, s, newRun("m", "a", 1, at(1)))
	a.BeginStep(0, 1, at(1))
	saveWith(t, s, &a, at(1), a.DispatchedEvent(at(1)))
	for i, st := range []migration.StepStatus{migration.StepInProgress, migration.StepOpen, migration.StepFailed} {
		act := reportAction(&a, st)
		act.Message = "report " + string(st)
		if st == migration.StepOpen {
			act.PRURL = "https://git.example/a/pull/1"
		}
		runAct(t, &a, act, at(2+i))
		saveWith(t, s, &a, at(2+i), a.ActionEvents(act, at(2+i))...)
	}
	retry := migration.StepAction{Kind: migration.ActionRetry, Step: "bump", Attempt: 1, Actor: "alice"}
	runAct(t, &a, retry, at(5))
	saveWith(t, s, &a, at(5), a.ActionEvents(retry, at(5))...)
	// b: Loom fails it itself (its dispatch was refused).
	b := mustBegin(t, s, newRun("m", "b", 1, at(6)))
	b.BeginStep(0, 1, at(6))
	b.FailStep("dispatch failed: refused", at(7))
	saveWith(t, s, &b, at(7), b.FailedEvent(at(7), "dispatch failed: refused"))
	// c: bump completed, then an operator fails its review.
	c := mustBegin(t, s, newRun("m", "c", 1, at(8)))
	c.BeginStep(0, 1, at(8))
	saveWith(t, s, &c, at(8), c.DispatchedEvent(at(8)))
	done := reportAction(&c, migration.StepCompleted)
	runAct(t, &c, done, at(9))
	saveWith(t, s, &c, at(9), c.ActionEvents(done, at(9))...)
	c.BeginStep(1, 1, at(10))
	saveWith(t, s, &c, at(10), c.DispatchedEvent(at(10)))
	review := reportAction(&c, migration.StepAwaitingReview)
	runAct(t, &c, review, at(11))
	saveWith(t, s, &c, at(11), c.ActionEvents(review, at(11))...)
	failReview := migration.StepAction{Kind: migration.ActionFinishReview, Step: "review", Attempt: 1, Status: migration.StepFailed,
		Message: "canary unhealthy", Actor: "bob"}
	runAct(t, &c, failReview, at(12))
	saveWith(t, s, &c, at(12), c.ActionEvents(failReview, at(12))...)

	failures := migration.EventFilter{
		Kinds: []migration.EventKind{migration.EventStepFailed, migration.EventStepRetried, migration.EventStepReported,
			migration.EventReviewFinished},
		ReportedStatuses: []migration.StepStatus{migration.StepFailed},
	}
	got := allEvents(t, s, "m", failures)
	if k := kindsOf(got); k != "step_reported:bump,step_retried:bump,step_failed:bump,review_finished:review" {
		t.Fatalf("failures and retries: %s", k)
	}
	if got[0].CandidateID != "a" || got[0].Details["status"] != "failed" || got[0].Details["message"] != "report failed" ||
		got[2].CandidateID != "b" || got[3].CandidateID != "c" || got[3].Details["message"] != "canary unhealthy" {
		t.Fatalf("failures and retries: %+v", got)
	}
	// Without kinds, events of other kinds pass; of the reports, only those asked for.
	reported := allEvents(t, s, "m", migration.EventFilter{CandidateID: "a",
		ReportedStatuses: []migration.StepStatus{migration.StepOpen, migration.StepFailed}})
	if k := kindsOf(reported); k != "candidate_discovered,run_started,step_dispatched:bump,step_reported:bump,step_reported:bump,step_retried:bump,step_dispatched:bump" {
		t.Fatalf("a's events with open and failed reports: %s", k)
	}
	if reported[3].Details["status"] != "open" || reported[4].Details["status"] != "failed" {
		t.Fatalf("reports kept: %v, %v", reported[3].Details, reported[4].Details)
	}
	// Pages stay whole across the filter: one event a page, the same three.
	var paged []string
	for after := ""; ; {
		page, err := s.ListEvents(context.Background(), "m", failures, migration.PageRequest{After: after, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			paged = append(paged, string(e.Kind))
		}
		if after = page.Next; after == "" {
			break
		}
	}
	if strings.Join(paged, ",") != "review_finished,step_failed,step_retried,step_reported" {
		t.Fatalf("paged failures: %v", paged)
	}
}

// The burndown counts Candidates: one started, cancelled and started again
// is one started Candidate, in the hour of its first start.
func TestBurndownCountsEachCandidateOnce(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc"), cand("b", "svc")}}, at(0))
	// a: started, cancelled, started again two hours later, completed.
	a1 := mustBegin(t, s, newRun("m", "a", 1, at(1)))
	a1.Finish(migration.RunCancelled, "wrong tag", at(2))
	saveWith(t, s, &a1, at(2), a1.FinishedEvent("alice"))
	a2 := mustBegin(t, s, newRun("m", "a", 2, at(121)))
	a2.Finish(migration.RunCompleted, "", at(122))
	saveWith(t, s, &a2, at(122), a2.FinishedEvent(migration.ActorLoom))
	// b: started once, still running.
	mustBegin(t, s, newRun("m", "b", 1, at(3)))

	got, err := s.MigrationMetrics(ctx, "m", migration.MetricsQuery{StuckAfter: time.Hour, Now: at(180)})
	if err != nil {
		t.Fatal(err)
	}
	var started, completed int64
	startedIn := map[time.Time]int64{}
	for _, p := range got.Burndown {
		started += p.Started
		completed += p.Completed
		if p.Started > 0 {
			startedIn[p.Start] = p.Started
		}
	}
	if started != 2 || completed != 1 {
		t.Fatalf("burndown: started %d completed %d, want 2 Candidates started and 1 completed", started, completed)
	}
	if first := at(1).Truncate(time.Hour); len(startedIn) != 1 || startedIn[first] != 2 {
		t.Fatalf("burndown: started per hour %v, want both in the hour of %v", startedIn, first)
	}
}

// A step an operator skipped is counted per step, never measured as a
// success; a Run waiting on its skipped step (before the next dispatch) is
// listed under that status.
func TestSkippedStepsAreCounted(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("c0", "svc")}}, at(0))
	r := newRun("m", "c0", 1, at(10))
	if _, err := s.BeginRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.BeginStep(0, 1, at(11))
	saveWith(t, s, &r, at(11))
	skip := migration.StepAction{Kind: migration.ActionSkip, Step: r.Current().StepName, Attempt: 1, Message: "done by hand", Actor: "alice"}
	runAct(t, &r, skip, at(20))
	saveWith(t, s, &r, at(20), r.ActionEvents(skip, at(20))...)
	wantListed(t, s, "m", migration.RunFilter{CurrentStepStatus: migration.StepSkipped}, "c0")

	got, err := s.MigrationMetrics(ctx, "m", migration.MetricsQuery{StuckAfter: time.Hour, Now: at(30)})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.StepDurations) != 1 || got.StepDurations[0].SkippedCount != 1 || got.StepDurations[0].Count != 0 {
		t.Fatalf("durations %+v", got.StepDurations)
	}
	if cur := fmt.Sprint(got.CurrentSteps); cur != "[{bump skipped 1}]" {
		t.Fatalf("current steps %s", cur)
	}
	page, err := s.ListEvents(ctx, "m", migration.EventFilter{Kinds: []migration.EventKind{migration.EventStepSkipped}}, migration.PageRequest{})
	if err != nil || len(page.Events) != 1 || page.Events[0].Actor != "alice" || page.Events[0].Details["reason"] != "done by hand" {
		t.Fatalf("skip events %+v, %v", page.Events, err)
	}

}

// A Candidate discovered and left alone has no stream of its own (a stream
// costs kilobytes however few its events): its discovery is kept in its
// hash and read as the oldest event of its history, in order and once,
// whether listed newest first page by page or followed oldest first.
func TestADiscoveredCandidateHasNoStreamYetItsHistoryStartsWithItsDiscovery(t *testing.T) {
	s, rdb := newStore(t)
	ctx := migration.WithActor(context.Background(), "scanner")
	mustPut(t, s, "lazy")
	if _, err := s.SubmitCandidates(ctx, migration.Submission{MigrationID: "lazy", Candidates: []migration.Candidate{cand("a", "svc"), cand("b", "lib")}}, at(1)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"a", "b"} {
		if n := rdb.Exists(ctx, candidateEventsKey("lazy", c)).Val(); n != 0 {
			t.Fatalf("%s has a stream of its own at discovery", c)
		}
	}
	only := allEvents(t, s, "lazy", migration.EventFilter{CandidateID: "b"})
	if len(only) != 1 || only[0].Kind != migration.EventCandidateDiscovered || only[0].Actor != "scanner" ||
		only[0].Details["kind"] != "lib" || only[0].Details["outcome"] != "added" || !only[0].Time.Equal(at(1)) || only[0].CandidateID != "b" {
		t.Fatalf("b's history: %+v", only)
	}

	// a's inputs change twice: then its stream exists, after its discovery.
	for i, tag := range []string{"v1", "v2"} {
		if _, err := s.UpdateCandidateInputs(ctx, "lazy", "a", migration.InputChange{Set: map[string]string{"tag": tag}}, at(2+i)); err != nil {
			t.Fatal(err)
		}
	}
	full := allEvents(t, s, "lazy", migration.EventFilter{CandidateID: "a"})
	if kindsOf(full) != "candidate_discovered,candidate_inputs_updated,candidate_inputs_updated" || !streamIDLess(full[0].ID, full[1].ID) {
		t.Fatalf("a's history: %s %v", kindsOf(full), full)
	}
	// Newest first, one a page: each event once, the discovery last.
	var paged []string
	after := ""
	for range 5 {
		page, err := s.ListEvents(ctx, "lazy", migration.EventFilter{CandidateID: "a"}, migration.PageRequest{After: after, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			paged = append(paged, e.ID)
		}
		if after = page.Next; after == "" {
			break
		}
	}
	if fmt.Sprint(paged) != fmt.Sprint([]string{full[2].ID, full[1].ID, full[0].ID}) {
		t.Fatalf("paged %v, want %v", paged, []string{full[2].ID, full[1].ID, full[0].ID})
	}
	// A kind filter leaves it out or keeps it alone.
	if got := allEvents(t, s, "lazy", migration.EventFilter{CandidateID: "a", Kinds: []migration.EventKind{migration.EventCandidateInputsUpdated}}); len(got) != 2 {
		t.Fatalf("inputs only: %s", kindsOf(got))
	}
	if got := allEvents(t, s, "lazy", migration.EventFilter{CandidateID: "a", Kinds: []migration.EventKind{migration.EventCandidateDiscovered}}); len(got) != 1 || got[0].ID != full[0].ID {
		t.Fatalf("discoveries only: %s", kindsOf(got))
	}
	// Oldest first, as a watch reads: the discovery first, then after it.
	first, err := s.EventsAfter(ctx, "lazy", "a", "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 || first[0].ID != full[0].ID || first[1].ID != full[1].ID {
		t.Fatalf("the first two: %v", first)
	}
	rest, err := s.EventsAfter(ctx, "lazy", "a", first[1].ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 1 || rest[0].ID != full[2].ID {
		t.Fatalf("after the first two: %v", rest)
	}
	if none, err := s.EventsAfter(ctx, "lazy", "b", only[0].ID, 10); err != nil || len(none) != 0 {
		t.Fatalf("after b's discovery: %v %v", none, err)
	}
}
