package store

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

// A Candidate discovered and never run stores only what is its own: no
// inputs, exec, utime or round while they hold their defaults, no kind in
// def, and its discovery as "<d> <actor>". It reads back with the defaults.
func TestADiscoveredCandidateHashHoldsNoDefaults(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := migration.WithActor(context.Background(), "scanner 7") // an actor may hold a space
	mustPut(t, s, "m")
	if _, err := s.SubmitCandidates(ctx, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc", "team", "x")}}, at(1)); err != nil {
		t.Fatal(err)
	}
	h := hgetall(t, rdb, candidateKey("m", "a"))
	for _, f := range []string{fieldInputs, fieldExec, fieldUtime, "round", fieldGone} {
		if v, ok := h[f]; ok {
			t.Errorf("%s written at discovery: %q", f, v)
		}
	}
	if h[fieldDef] != `{"v":1,"metadata":{"team":"x"}}` {
		t.Errorf("def %s", h[fieldDef])
	}
	if d, actor, _ := strings.Cut(h["dev"], " "); actor != "scanner 7" || strings.HasPrefix(d, "{") {
		t.Errorf("dev %q", h["dev"])
	}
	c, err := s.GetCandidate(ctx, "m", "a")
	if err != nil {
		t.Fatal(err)
	}
	want := migration.Candidate{
		ID: "a", Kind: "svc", Metadata: map[string]string{"team": "x"}, MigrationID: "m",
		Status: migration.CandidateNotStarted, Inputs: map[string]string{},
		CreateTime: at(1).Truncate(1e6), UpdateTime: at(1).Truncate(1e6), LastChangeTime: at(1).Truncate(1e6),
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n %+v\nwant\n %+v", c, want)
	}
	ev := allEvents(t, s, "m", migration.EventFilter{CandidateID: "a"})
	if len(ev) != 1 || ev[0].Actor != "scanner 7" || ev[0].Details["kind"] != "svc" || !ev[0].Time.Equal(at(1)) {
		t.Errorf("discovery %+v", ev)
	}

	// Inputs set then all removed: the field goes again; utime stays.
	if _, err := s.UpdateCandidateInputs(ctx, "m", "a", migration.InputChange{Set: map[string]string{"tag": "v1"}}, at(2)); err != nil {
		t.Fatal(err)
	}
	if h := hgetall(t, rdb, candidateKey("m", "a")); h[fieldInputs] != `{"tag":"v1"}` || h[fieldUtime] == "" {
		t.Errorf("after set: %v", h)
	}
	c, err = s.UpdateCandidateInputs(ctx, "m", "a", migration.InputChange{Remove: []string{"tag"}}, at(3))
	if err != nil {
		t.Fatal(err)
	}
	if h := hgetall(t, rdb, candidateKey("m", "a")); h[fieldInputs] != "" || h[fieldUtime] == "" {
		t.Errorf("after remove: %v", h)
	}
	if len(c.Inputs) != 0 || c.Inputs == nil || !c.UpdateTime.Equal(at(3).Truncate(1e6)) || !c.CreateTime.Equal(at(1).Truncate(1e6)) {
		t.Errorf("after remove: %+v", c)
	}
	checkInvariants(t, rdb, "m")
}

// legacyCandidateDef is def as written before it dropped the kind.
func legacyCandidateDef(t *testing.T, c migration.Candidate) string {
	t.Helper()
	b, err := json.Marshal(struct {
		V        int               `json:"v"`
		Kind     string            `json:"kind"`
		Metadata map[string]string `json:"metadata,omitempty"`
	}{recordVersion, c.Kind, c.Metadata})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeLegacyHash replaces the hash of Candidate c of m (discovered by the
// current code, so indexed) with the hash the code before wrote for it.
func writeLegacyHash(t *testing.T, s *Store, m string, c migration.Candidate, devID string) {
	t.Helper()
	ctx := context.Background()
	key := candidateKey(m, c.ID)
	midx := encodeMetadataPairs(c.Metadata)
	dev, _ := json.Marshal(map[string]string{"i": devID, "kind": c.Kind, "by": "old-scanner"})
	s.rdb.Del(ctx, key)
	ms := millis(at(1))
	if err := s.rdb.HSet(ctx, key, "def", legacyCandidateDef(t, c), "kind", c.Kind, "status", "not_started",
		"inputs", "{}", "exec", 0, "ctime", ms, "utime", ms, "round", "r:UBT74ZUYYB7GY6GQFVTH3AHVIB", "midx", midx,
		"dev", string(dev)).Err(); err != nil {
		t.Fatal(err)
	}
}

// Hashes written before (kind in def, "{}" inputs, exec 0, utime, a long
// random round, dev in JSON) read the same, and a discovery that reports
// them unchanged counts them unchanged: the def is rewritten in the new
// form, nothing is recorded, no stream is made.
func TestOldFormatCandidateHashesReadTheSame(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	// A kind that Go's JSON escapes (and cjson would escape otherwise).
	odd := cand("b", `<a&"b/c>`)
	cs := []migration.Candidate{cand("a", "svc", "team", "x"), odd, cand("c", "lib")}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs}, at(1))
	for i, c := range cs {
		writeLegacyHash(t, s, "m", c, "1772600767008-"+string(rune('0'+i)))
	}
	c, err := s.GetCandidate(ctx, "m", "a")
	if err != nil {
		t.Fatal(err)
	}
	want := migration.Candidate{
		ID: "a", Kind: "svc", Metadata: map[string]string{"team": "x"}, MigrationID: "m",
		Status: migration.CandidateNotStarted, Inputs: map[string]string{},
		CreateTime: at(1).Truncate(1e6), UpdateTime: at(1).Truncate(1e6), LastChangeTime: at(1).Truncate(1e6),
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n %+v\nwant\n %+v", c, want)
	}
	page, err := s.ListCandidates(ctx, "m", migration.CandidateFilter{}, migration.PageRequest{Limit: 10})
	if err != nil || len(page.Candidates) != 3 || page.Candidates[1].Kind != odd.Kind {
		t.Fatalf("list: %+v %v", page, err)
	}
	s.SetRetention(Retention{MaxAge: 2 * 365 * 24 * time.Hour}) // the old ids are at(1), not Redis's clock
	ev := allEvents(t, s, "m", migration.EventFilter{CandidateID: "a"})
	if len(ev) != 1 || ev[0].ID != "1772600767008-0" || ev[0].Actor != "old-scanner" || ev[0].Details["kind"] != "svc" {
		t.Errorf("old discovery %+v", ev)
	}

	// Reported again unchanged (b by its odd kind too), c with a change.
	again := []migration.Candidate{cs[0], odd, cand("c", "lib", "team", "y")}
	res := mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: again}, at(5))
	if !reflect.DeepEqual(res.Unchanged, []string{"a", "b"}) || !reflect.DeepEqual(res.Updated, []string{"c"}) {
		t.Fatalf("resubmit: %+v", res)
	}
	for _, id := range []string{"a", "b"} {
		h := hgetall(t, rdb, candidateKey("m", id))
		if strings.Contains(h[fieldDef], "kind") || h[fieldUtime] != h[fieldCtime] {
			t.Errorf("%s after an unchanged discovery: %v", id, h)
		}
		if _, ok := h["round"]; ok {
			t.Errorf("%s: round left after an incomplete submission without one: %v", id, h)
		}
		if n := rdb.Exists(ctx, candidateEventsKey("m", id)).Val(); n != 0 {
			t.Errorf("%s got a stream", id)
		}
	}
	if c, err := s.GetCandidate(ctx, "m", "b"); err != nil || c.Kind != odd.Kind || !c.UpdateTime.Equal(at(1).Truncate(1e6)) {
		t.Errorf("b: %+v %v", c, err)
	}
	// A stored old def is no match for a def of other content.
	if c, err := s.GetCandidate(ctx, "m", "c"); err != nil || c.Metadata["team"] != "y" {
		t.Errorf("c: %+v %v", c, err)
	}
	checkInvariants(t, rdb, "m")
}

// The compact dev takes its kind from the hash: a kind changed later must
// not rewrite what was discovered.
func TestAKindChangeKeepsTheKindDiscovered(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := migration.WithActor(context.Background(), "scanner")
	mustPut(t, s, "m")
	for i, kind := range []string{"svc", "lib", "lib", "job"} {
		if _, err := s.SubmitCandidates(ctx, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", kind)}}, at(1+i)); err != nil {
			t.Fatal(err)
		}
	}
	ev := allEvents(t, s, "m", migration.EventFilter{CandidateID: "a"})
	var got []string
	for _, e := range ev {
		got = append(got, e.Details["outcome"]+":"+e.Details["kind"]+":"+e.Actor)
	}
	if want := []string{"added:svc:scanner", "updated:lib:scanner", "updated:job:scanner"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	// (Its id may equal the next event's when both fall in one millisecond:
	// so it did before, dev holding "<ms>-0" then as now.)
	if !ev[0].Time.Equal(at(1)) || streamIDLess(ev[1].ID, ev[0].ID) {
		t.Errorf("discovery %+v before %+v", ev[0], ev[1])
	}
	if h := hgetall(t, rdb, candidateKey("m", "a")); !strings.HasPrefix(h["dev"], "{") || h[fieldKind] != "job" {
		t.Errorf("hash %v", h)
	}
	checkInvariants(t, rdb, "m")
}

// Only a complete submission without a round stores a round of its own; an
// incomplete one leaves none (absent: as a round of its own, no sweep ever
// matches it, so an earlier round's completion flags the Candidate, as
// before).
func TestRoundsStoredOnlyWhenASweepCanAskForThem(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	mustPut(t, s, "m")
	round := func() (string, bool) {
		v, err := rdb.HGet(context.Background(), candidateKey("m", "a"), "round").Result()
		return v, err == nil
	}
	a := []migration.Candidate{cand("a", "svc")}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: a, Round: "r1"}, at(1))
	if v, ok := round(); v != "r1" || !ok {
		t.Fatalf("named round: %q %v", v, ok)
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: a}, at(2))
	if v, ok := round(); ok {
		t.Fatalf("incomplete submission without a round stored %q", v)
	}
	res := mustSubmit(t, s, migration.Submission{MigrationID: "m", Round: "r1", Complete: true}, at(3))
	if !reflect.DeepEqual(res.NoLongerDiscovered, []string{"a"}) {
		t.Fatalf("r1 completed: %+v", res)
	}
	res = mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: a, Complete: true}, at(4))
	if v, _ := round(); len(v) != len("r:")+12 || !strings.HasPrefix(v, "r:") || res.NoLongerDiscovered != nil {
		t.Fatalf("complete submission without a round: %q %+v", v, res)
	}
}

func TestParseDiscovered(t *testing.T) {
	t.Parallel()
	kind := func(s string) *string { return &s }
	for dev, want := range map[string]discoveredRecord{
		"3 loom":                            {I: "1003-0", By: "loom"},
		"-2 a b":                            {I: "998-0", By: "a b"},
		"0 ":                                {I: "1000-0", By: ""},
		`{"i":"5-1","kind":"svc","by":"x"}`: {I: "5-1", By: "x", Kind: kind("svc")},
		`{"i":"5-1","by":"x"}`:              {I: "5-1", By: "x", Kind: kind("")},
	} {
		got, err := parseDiscovered(dev, 1000)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %+v %v, want %+v", dev, got, err, want)
		}
	}
	for _, dev := range []string{"3", "x loom", "{", `{"by":"x"}`, "-2000 x"} {
		if _, err := parseDiscovered(dev, 1000); err == nil {
			t.Errorf("%q: no error", dev)
		}
	}
}
