package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

func TestSubmitOutcomes(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")

	// Submission order, not id order, is the order of each result list.
	first := []migration.Candidate{
		cand("d-done", "svc", "v", "1"),
		cand("a-same", "svc", "v", "1"),
		cand("c-running", "svc", "v", "1"),
		cand("b-changed", "svc", "v", "1"),
		cand("e-kind", "svc", "v", "1"),
	}
	res := mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: first}, at(1))
	if want := []string{"d-done", "a-same", "c-running", "b-changed", "e-kind"}; !slices.Equal(res.Added, want) ||
		res.Updated != nil || res.Unchanged != nil || res.LeftAlone != nil || res.NoLongerDiscovered != nil {
		t.Fatalf("first submit: %+v", res)
	}
	c, err := s.GetCandidate(ctx, "m", "a-same")
	if err != nil {
		t.Fatal(err)
	}
	want := migration.Candidate{
		ID: "a-same", Kind: "svc", Metadata: map[string]string{"v": "1"}, MigrationID: "m",
		Status: migration.CandidateNotStarted, Inputs: map[string]string{},
		CreateTime: at(1).Truncate(1e6), UpdateTime: at(1).Truncate(1e6), LastChangeTime: at(1).Truncate(1e6),
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("new candidate\n %+v\nwant\n %+v", c, want)
	}
	mustSetStatus(t, s, "m", "c-running", migration.CandidateNotStarted, migration.CandidateRunning)
	mustSetStatus(t, s, "m", "d-done", migration.CandidateNotStarted, migration.CandidateRunning)
	mustSetStatus(t, s, "m", "d-done", migration.CandidateRunning, migration.CandidateCompleted)
	runningBefore := hgetall(t, rdb, candidateKey("m", "c-running"))
	doneBefore := hgetall(t, rdb, candidateKey("m", "d-done"))

	second := []migration.Candidate{
		cand("f-new", "topic"),
		cand("c-running", "svc", "v", "2"),
		cand("b-changed", "svc", "v", "2"),
		cand("a-same", "svc", "v", "1"),
		cand("d-done", "repo", "v", "2"),
		cand("e-kind", "repo", "v", "1"),
	}
	res = mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: second}, at(2))
	wantRes := migration.SubmitResult{
		Added:     []string{"f-new"},
		Updated:   []string{"b-changed", "e-kind"},
		Unchanged: []string{"a-same"},
		LeftAlone: []string{"c-running", "d-done"},
	}
	if !reflect.DeepEqual(res, wantRes) {
		t.Errorf("second submit\n %+v\nwant\n %+v", res, wantRes)
	}
	if c, _ := s.GetCandidate(ctx, "m", "a-same"); !c.UpdateTime.Equal(at(1).Truncate(1e6)) {
		t.Errorf("unchanged candidate's utime moved to %v", c.UpdateTime)
	}
	b, _ := s.GetCandidate(ctx, "m", "b-changed")
	if b.Metadata["v"] != "2" || !b.UpdateTime.Equal(at(2).Truncate(1e6)) || !b.CreateTime.Equal(at(1).Truncate(1e6)) {
		t.Errorf("updated candidate %+v", b)
	}
	if after := hgetall(t, rdb, candidateKey("m", "c-running")); !reflect.DeepEqual(after, runningBefore) {
		t.Errorf("running candidate changed: %v -> %v", runningBefore, after)
	}
	if after := hgetall(t, rdb, candidateKey("m", "d-done")); !reflect.DeepEqual(after, doneBefore) {
		t.Errorf("completed candidate changed: %v -> %v", doneBefore, after)
	}
	m, _ := s.GetMigration(ctx, "m")
	if want := (migration.CandidateCounts{NotStarted: 4, Running: 1, Completed: 1}); m.Counts != want {
		t.Errorf("counts %+v, want %+v", m.Counts, want)
	}
	checkInvariants(t, rdb, "m")
}

// Whatever is submitted, however often, a running or completed Candidate's
// hash stays byte for byte the same.
func TestResubmitNeverChangesRunningOrCompleted(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{
		cand("run", "svc", "v", "1"), cand("done", "svc", "v", "1"), cand("idle", "svc"),
	}}, at(1))
	mustSetStatus(t, s, "m", "run", migration.CandidateNotStarted, migration.CandidateRunning)
	mustSetStatus(t, s, "m", "done", migration.CandidateNotStarted, migration.CandidateRunning)
	mustSetStatus(t, s, "m", "done", migration.CandidateRunning, migration.CandidateCompleted)
	if _, err := s.UpdateCandidateInputs(context.Background(), "m", "run", migration.InputChange{Set: map[string]string{"tag": "v1"}}, at(2)); err != nil {
		t.Fatal(err)
	}
	before := map[string]map[string]string{
		"run":  hgetall(t, rdb, candidateKey("m", "run")),
		"done": hgetall(t, rdb, candidateKey("m", "done")),
	}
	subs := []migration.Submission{
		{Candidates: []migration.Candidate{cand("run", "svc", "v", "1"), cand("done", "svc", "v", "1")}},
		{Candidates: []migration.Candidate{cand("run", "other", "v", "2"), cand("done", "other", "v", "2")}},
		{Candidates: []migration.Candidate{cand("run", "svc")}, Complete: true},
		{Candidates: []migration.Candidate{cand("idle", "svc")}, Complete: true},
		{Candidates: []migration.Candidate{cand("done", "x")}, Round: "r1"},
		{Candidates: nil, Round: "r1", Complete: true},
		{Candidates: nil, Complete: true},
	}
	for i, sub := range subs {
		sub.MigrationID = "m"
		res := mustSubmit(t, s, sub, at(10+i))
		for _, id := range res.NoLongerDiscovered {
			if id == "run" || id == "done" {
				t.Errorf("submission %d flagged %s", i, id)
			}
		}
		for id, h := range before {
			if after := hgetall(t, rdb, candidateKey("m", id)); !reflect.DeepEqual(after, h) {
				t.Fatalf("submission %d changed %s:\n %v\n->\n %v", i, id, h, after)
			}
		}
	}
	checkInvariants(t, rdb, "m")
}

func TestKindChangeMovesIndexes(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{
		cand("a", "service"), cand("b", "service"),
	}}, at(1))
	res := mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "repository")}}, at(2))
	if !slices.Equal(res.Updated, []string{"a"}) {
		t.Fatalf("kind change: %+v", res)
	}
	if got := zmembers(t, rdb, statusKindIndexKey("m", "not_started", "service")); !slices.Equal(got, []string{"b"}) {
		t.Errorf("not_started×service index %v", got)
	}
	if got := zmembers(t, rdb, statusKindIndexKey("m", "not_started", "repository")); !slices.Equal(got, []string{"a"}) {
		t.Errorf("not_started×repository index %v", got)
	}
	if got := hgetall(t, rdb, kindsKey("m")); !reflect.DeepEqual(got, map[string]string{"service": "1", "repository": "1"}) {
		t.Errorf("kinds %v", got)
	}
	c, _ := s.GetCandidate(ctx, "m", "a")
	if c.Kind != "repository" {
		t.Errorf("kind %q", c.Kind)
	}
	// The last Candidate of a kind leaves: the kind disappears.
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("b", "repository")}}, at(3))
	if got := hgetall(t, rdb, kindsKey("m")); !reflect.DeepEqual(got, map[string]string{"repository": "2"}) {
		t.Errorf("kinds %v", got)
	}
	if n := rdb.Exists(ctx, statusKindIndexKey("m", "not_started", "service")).Val(); n != 0 {
		t.Errorf("empty service indexes still exist")
	}
	// Status changes follow the new kind.
	mustSetStatus(t, s, "m", "a", migration.CandidateNotStarted, migration.CandidateRunning)
	if got := zmembers(t, rdb, statusKindIndexKey("m", "running", "repository")); !slices.Equal(got, []string{"a"}) {
		t.Errorf("running×repository index %v", got)
	}
	page, err := s.ListCandidates(ctx, "m", migration.CandidateFilter{Kind: "repository", Status: migration.CandidateNotStarted}, migration.PageRequest{})
	if err != nil || len(page.Candidates) != 1 || page.Candidates[0].ID != "b" || page.Total != 1 {
		t.Errorf("filtered list %+v, %v", page, err)
	}
	checkInvariants(t, rdb, "m")
}

func TestListCandidatesFilters(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustPut(t, s, "empty")
	kinds := []string{"svc", "repo", "topic.v1"}
	statuses := map[string]migration.CandidateStatus{}
	var cs []migration.Candidate
	for i, id := range ids("acme/app-", 0, 47) {
		cs = append(cs, cand(id, kinds[i%3], "n", fmt.Sprint(i)))
	}
	// Submitted backwards: the listing order is the id order anyway.
	slices.Reverse(cs)
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs}, at(1))
	for i, id := range ids("acme/app-", 0, 47) {
		statuses[id] = migration.CandidateNotStarted
		if i%4 == 1 || i%4 == 2 {
			mustSetStatus(t, s, "m", id, migration.CandidateNotStarted, migration.CandidateRunning)
			statuses[id] = migration.CandidateRunning
		}
		if i%4 == 2 {
			mustSetStatus(t, s, "m", id, migration.CandidateRunning, migration.CandidateCompleted)
			statuses[id] = migration.CandidateCompleted
		}
	}
	kindOf := func(id string) string {
		var n int
		fmt.Sscanf(id, "acme/app-%03d", &n)
		return kinds[n%3]
	}

	filters := []migration.CandidateFilter{{}}
	for _, st := range migration.CandidateStatuses {
		filters = append(filters, migration.CandidateFilter{Status: st})
	}
	for _, k := range append(kinds, "none") {
		filters = append(filters, migration.CandidateFilter{Kind: k})
		for _, st := range migration.CandidateStatuses {
			filters = append(filters, migration.CandidateFilter{Status: st, Kind: k})
		}
	}
	for _, f := range filters {
		var want []string
		for _, id := range ids("acme/app-", 0, 47) {
			if (f.Status == "" || statuses[id] == f.Status) && (f.Kind == "" || kindOf(id) == f.Kind) {
				want = append(want, id)
			}
		}
		for _, limit := range []int{1, 7, 100} {
			t.Run(fmt.Sprintf("status=%s/kind=%s/limit=%d", f.Status, f.Kind, limit), func(t *testing.T) {
				var got []string
				after := ""
				for pages := 0; ; pages++ {
					page, err := s.ListCandidates(ctx, "m", f, migration.PageRequest{After: after, Limit: limit})
					if err != nil {
						t.Fatal(err)
					}
					if page.Total != int64(len(want)) {
						t.Errorf("total %d, want %d", page.Total, len(want))
					}
					if len(page.Candidates) > limit {
						t.Fatalf("page of %d, limit %d", len(page.Candidates), limit)
					}
					for _, c := range page.Candidates {
						if c.Status != statuses[c.ID] || c.Kind != kindOf(c.ID) || c.MigrationID != "m" || c.Metadata["n"] == "" {
							t.Errorf("candidate %+v", c)
						}
						got = append(got, c.ID)
					}
					if page.Next == "" {
						break
					}
					if len(page.Candidates) == 0 || page.Next != page.Candidates[len(page.Candidates)-1].ID {
						t.Fatalf("next %q is not the last id of the page", page.Next)
					}
					after = page.Next
					if pages > 100 {
						t.Fatal("paging does not end")
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("ids %v\nwant %v", got, want)
				}
			})
		}
	}

	page, err := s.ListCandidates(ctx, "empty", migration.CandidateFilter{}, migration.PageRequest{})
	if err != nil || page.Total != 0 || len(page.Candidates) != 0 || page.Next != "" {
		t.Errorf("empty migration: %+v, %v", page, err)
	}
	page, err = s.ListCandidates(ctx, "m", migration.CandidateFilter{}, migration.PageRequest{Limit: 0})
	if err != nil || len(page.Candidates) != 47 {
		t.Errorf("default page size: %d candidates, %v", len(page.Candidates), err)
	}
	_, err = s.ListCandidates(ctx, "m", migration.CandidateFilter{Status: "failed"}, migration.PageRequest{})
	refusal(t, err, migration.ErrInvalidArgument, "INVALID_STATUS")
	checkInvariants(t, rdb, "m")
}

func TestCompleteDiscoveryWithoutRounds(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	s.sweepBatch = 3 // many batches
	ctx := context.Background()
	mustPut(t, s, "m")
	var cs []migration.Candidate
	for _, id := range ids("c", 0, 20) {
		cs = append(cs, cand(id, "svc"))
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs}, at(1))
	mustSetStatus(t, s, "m", "c001", migration.CandidateNotStarted, migration.CandidateRunning)
	mustSetStatus(t, s, "m", "c002", migration.CandidateNotStarted, migration.CandidateRunning)
	mustSetStatus(t, s, "m", "c002", migration.CandidateRunning, migration.CandidateCompleted)
	frozen := map[string]map[string]string{
		"c001": hgetall(t, rdb, candidateKey("m", "c001")),
		"c002": hgetall(t, rdb, candidateKey("m", "c002")),
	}

	// The complete set is c000, c003..c009: c010..c019 are gone; c001 and
	// c002 are not submitted either, but running and completed.
	var complete []migration.Candidate
	for _, id := range append([]string{"c000"}, ids("c", 3, 10)...) {
		complete = append(complete, cand(id, "svc"))
	}
	res := mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: complete, Complete: true}, at(2))
	if want := ids("c", 10, 20); !slices.Equal(res.NoLongerDiscovered, want) {
		t.Errorf("flagged %v, want %v", res.NoLongerDiscovered, want)
	}
	if len(res.Unchanged) != 8 {
		t.Errorf("unchanged %v", res.Unchanged)
	}
	for _, id := range ids("c", 0, 20) {
		c, err := s.GetCandidate(ctx, "m", id)
		if err != nil {
			t.Fatal(err)
		}
		gone := id >= "c010"
		if c.NoLongerDiscovered != gone {
			t.Errorf("%s: no longer discovered = %v, want %v", id, c.NoLongerDiscovered, gone)
		}
		if gone && !c.UpdateTime.Equal(at(2).Truncate(1e6)) {
			t.Errorf("%s: flagged without moving utime", id)
		}
	}
	for id, h := range frozen {
		if after := hgetall(t, rdb, candidateKey("m", id)); !reflect.DeepEqual(after, h) {
			t.Errorf("%s changed: %v -> %v", id, h, after)
		}
	}

	// The same complete set again: nothing newly flagged.
	res = mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: complete, Complete: true}, at(3))
	if len(res.NoLongerDiscovered) != 0 {
		t.Errorf("flagged again: %v", res.NoLongerDiscovered)
	}
	if c, _ := s.GetCandidate(ctx, "m", "c015"); !c.NoLongerDiscovered || !c.UpdateTime.Equal(at(2).Truncate(1e6)) {
		t.Errorf("flag or utime changed by a second sweep: %+v", c)
	}

	// Discovered again: the flag is cleared, and it counts as updated.
	res = mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("c015", "svc")}}, at(4))
	if !slices.Equal(res.Updated, []string{"c015"}) {
		t.Errorf("rediscovery: %+v", res)
	}
	if c, _ := s.GetCandidate(ctx, "m", "c015"); c.NoLongerDiscovered {
		t.Errorf("flag not cleared")
	}
	if _, ok := hgetall(t, rdb, candidateKey("m", "c015"))["gone"]; ok {
		t.Errorf("gone field left in the hash")
	}

	// An empty complete submission flags every not_started Candidate.
	res = mustSubmit(t, s, migration.Submission{MigrationID: "m", Complete: true}, at(5))
	want := append(append([]string{"c000"}, ids("c", 3, 10)...), "c015")
	if !slices.Equal(res.NoLongerDiscovered, want) {
		t.Errorf("flagged %v, want %v", res.NoLongerDiscovered, want)
	}
	checkInvariants(t, rdb, "m")
}

func TestCompleteDiscoveryWithRounds(t *testing.T) {
	for _, batch := range []int{1, 4, 500} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) {
			t.Parallel()
			s, rdb := newStore(t)
			s.sweepBatch = batch
			ctx := context.Background()
			mustPut(t, s, "m")
			var cs []migration.Candidate
			for _, id := range ids("p", 0, 40) {
				cs = append(cs, cand(id, "svc"))
			}
			mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs, Round: "r1", Complete: true}, at(1))
			mustSetStatus(t, s, "m", "p007", migration.CandidateNotStarted, migration.CandidateRunning)
			mustSetStatus(t, s, "m", "p008", migration.CandidateNotStarted, migration.CandidateRunning)
			mustSetStatus(t, s, "m", "p008", migration.CandidateRunning, migration.CandidateCompleted)

			// Round r2 spans three submissions; only the last completes it.
			// Reported: p00..p09, p20..p24, p30..p34 and a new n000.
			parts := [][]string{ids("p", 0, 10), ids("p", 20, 25), append(ids("p", 30, 35), "n000")}
			for i, part := range parts {
				var sub []migration.Candidate
				for _, id := range part {
					sub = append(sub, cand(id, "svc"))
				}
				res := mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: sub, Round: "r2", Complete: i == len(parts)-1}, at(2+i))
				if i < len(parts)-1 && len(res.NoLongerDiscovered) != 0 {
					t.Fatalf("part %d flagged %v before the round completed", i, res.NoLongerDiscovered)
				}
				if i == len(parts)-1 {
					want := append(append(ids("p", 10, 20), ids("p", 25, 30)...), ids("p", 35, 40)...)
					if !slices.Equal(res.NoLongerDiscovered, want) {
						t.Errorf("flagged %v\nwant %v", res.NoLongerDiscovered, want)
					}
				}
			}
			page, err := s.ListCandidates(ctx, "m", migration.CandidateFilter{}, migration.PageRequest{Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			var gone []string
			for _, c := range page.Candidates {
				if c.NoLongerDiscovered {
					gone = append(gone, c.ID)
				}
			}
			if len(gone) != 20 || slices.Contains(gone, "p007") || slices.Contains(gone, "p008") {
				t.Errorf("gone %v", gone)
			}

			// Round r3 reports everything again: every flag is cleared.
			var again []migration.Candidate
			for _, id := range append(ids("p", 0, 40), "n000") {
				again = append(again, cand(id, "svc"))
			}
			res := mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: again, Round: "r3", Complete: true}, at(9))
			if len(res.NoLongerDiscovered) != 0 || len(res.Updated) != 20 || len(res.LeftAlone) != 2 || len(res.Unchanged) != 19 {
				t.Errorf("r3: %d flagged, %d updated, %d left alone, %d unchanged",
					len(res.NoLongerDiscovered), len(res.Updated), len(res.LeftAlone), len(res.Unchanged))
			}
			checkInvariants(t, rdb, "m")
		})
	}
}

func TestSubmitToUnknownMigrationWritesNothing(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "known")
	mustSubmit(t, s, migration.Submission{MigrationID: "known", Candidates: []migration.Candidate{cand("a", "svc")}}, at(1))
	keysBefore := scanKeys(t, rdb, "*")
	sizeBefore := rdb.DBSize(ctx).Val()

	for _, sub := range []migration.Submission{
		{MigrationID: "unknown", Candidates: []migration.Candidate{cand("a", "svc"), cand("b", "svc")}},
		{MigrationID: "unknown", Candidates: []migration.Candidate{cand("a", "svc")}, Complete: true},
		{MigrationID: "unknown", Complete: true, Round: "r"},
	} {
		_, err := s.SubmitCandidates(ctx, sub, at(2))
		refusal(t, err, migration.ErrNotFound, migration.ReasonMigrationNotFound)
	}
	if size := rdb.DBSize(ctx).Val(); size != sizeBefore {
		t.Errorf("dbsize %d -> %d", sizeBefore, size)
	}
	if keys := scanKeys(t, rdb, "*"); !slices.Equal(keys, keysBefore) {
		t.Errorf("keys %v -> %v", keysBefore, keys)
	}
}

func TestUpdateCandidateInputs(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("org/a", "svc"), cand("org/b", "svc")}}, at(1))
	mustSetStatus(t, s, "m", "org/b", migration.CandidateNotStarted, migration.CandidateRunning)

	steps := []struct {
		name   string
		id     string
		change migration.InputChange
		want   map[string]string
	}{
		{"set", "org/a", migration.InputChange{Set: map[string]string{"tag": "v2", "path": "a/b", "note": `quote " and ✓ \ `}},
			map[string]string{"tag": "v2", "path": "a/b", "note": `quote " and ✓ \ `}},
		{"remove and set", "org/a", migration.InputChange{Remove: []string{"path", "absent"}, Set: map[string]string{"tag": "v3", "n": "1"}},
			map[string]string{"tag": "v3", "note": `quote " and ✓ \ `, "n": "1"}},
		{"remove before set", "org/a", migration.InputChange{Remove: []string{"tag"}, Set: map[string]string{"tag": "v4"}},
			map[string]string{"tag": "v4", "note": `quote " and ✓ \ `, "n": "1"}},
		{"remove all", "org/a", migration.InputChange{Remove: []string{"tag", "note", "n"}}, map[string]string{}},
		{"empty value", "org/a", migration.InputChange{Set: map[string]string{"e": ""}}, map[string]string{"e": ""}},
		{"running candidate", "org/b", migration.InputChange{Set: map[string]string{"tag": "v9"}}, map[string]string{"tag": "v9"}},
	}
	for i, st := range steps {
		now := at(10 + i)
		c, err := s.UpdateCandidateInputs(ctx, "m", st.id, st.change, now)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if !reflect.DeepEqual(c.Inputs, st.want) {
			t.Errorf("%s: inputs %v, want %v", st.name, c.Inputs, st.want)
		}
		if !c.UpdateTime.Equal(now.Truncate(1e6)) {
			t.Errorf("%s: utime %v", st.name, c.UpdateTime)
		}
		got, _ := s.GetCandidate(ctx, "m", st.id)
		if !reflect.DeepEqual(got, c) {
			t.Errorf("%s: get %+v, update returned %+v", st.name, got, c)
		}
	}
	if c, _ := s.GetCandidate(ctx, "m", "org/b"); c.Status != migration.CandidateRunning {
		t.Errorf("status changed to %s", c.Status)
	}
	// Inputs survive re-discovery.
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("org/a", "svc", "new", "meta")}}, at(30))
	if c, _ := s.GetCandidate(ctx, "m", "org/a"); !reflect.DeepEqual(c.Inputs, map[string]string{"e": ""}) {
		t.Errorf("inputs after re-discovery %v", c.Inputs)
	}
	checkInvariants(t, rdb, "m")
}

func TestSetCandidateStatus(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc"), cand("b", "svc")}}, at(1))

	if err := s.SetCandidateStatus(ctx, "m", "a", migration.CandidateNotStarted, migration.CandidateRunning, at(2)); err != nil {
		t.Fatal(err)
	}
	c, _ := s.GetCandidate(ctx, "m", "a")
	if c.Status != migration.CandidateRunning || !c.UpdateTime.Equal(at(2).Truncate(1e6)) {
		t.Errorf("after set: %+v", c)
	}
	before := hgetall(t, rdb, candidateKey("m", "a"))
	err := s.SetCandidateStatus(ctx, "m", "a", migration.CandidateNotStarted, migration.CandidateCompleted, at(3))
	r := refusal(t, err, migration.ErrFailedPrecondition, migration.ReasonCandidateStatusChanged)
	if r.Metadata["status"] != "running" {
		t.Errorf("metadata %v", r.Metadata)
	}
	if after := hgetall(t, rdb, candidateKey("m", "a")); !reflect.DeepEqual(after, before) {
		t.Errorf("refused change wrote %v -> %v", before, after)
	}
	// Same status: accepted, nothing written.
	if err := s.SetCandidateStatus(ctx, "m", "a", migration.CandidateRunning, migration.CandidateRunning, at(4)); err != nil {
		t.Fatal(err)
	}
	if after := hgetall(t, rdb, candidateKey("m", "a")); !reflect.DeepEqual(after, before) {
		t.Errorf("no-op change wrote %v -> %v", before, after)
	}
	err = s.SetCandidateStatus(ctx, "m", "a", "running", "failed", at(5))
	refusal(t, err, migration.ErrInvalidArgument, "INVALID_STATUS")
	if got := zmembers(t, rdb, statusKindIndexKey("m", "running", "svc")); !slices.Equal(got, []string{"a"}) {
		t.Errorf("running index %v", got)
	}
	checkInvariants(t, rdb, "m")
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc")}}, at(1))
	const noMig, noCand = migration.ReasonMigrationNotFound, migration.ReasonCandidateNotFound
	cases := []struct {
		name   string
		reason string
		call   func() error
	}{
		{"get migration", noMig, func() error { _, err := s.GetMigration(ctx, "x"); return err }},
		{"delete migration", noMig, func() error { _, err := s.DeleteMigration(ctx, "x", time.Now()); return err }},
		{"submit", noMig, func() error {
			_, err := s.SubmitCandidates(ctx, migration.Submission{MigrationID: "x", Candidates: []migration.Candidate{cand("a", "k")}}, at(2))
			return err
		}},
		{"list candidates", noMig, func() error {
			_, err := s.ListCandidates(ctx, "x", migration.CandidateFilter{Kind: "svc"}, migration.PageRequest{})
			return err
		}},
		{"get candidate, no migration", noMig, func() error { _, err := s.GetCandidate(ctx, "x", "a"); return err }},
		{"get candidate", noCand, func() error { _, err := s.GetCandidate(ctx, "m", "b"); return err }},
		{"update inputs, no migration", noMig, func() error {
			_, err := s.UpdateCandidateInputs(ctx, "x", "a", migration.InputChange{}, at(2))
			return err
		}},
		{"update inputs", noCand, func() error {
			_, err := s.UpdateCandidateInputs(ctx, "m", "b", migration.InputChange{Set: map[string]string{"k": "v"}}, at(2))
			return err
		}},
		{"set status, no migration", noMig, func() error {
			return s.SetCandidateStatus(ctx, "x", "a", migration.CandidateNotStarted, migration.CandidateRunning, at(2))
		}},
		{"set status", noCand, func() error {
			return s.SetCandidateStatus(ctx, "m", "b", migration.CandidateNotStarted, migration.CandidateRunning, at(2))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			refusal(t, tc.call(), migration.ErrNotFound, tc.reason)
		})
	}
	// A not-found update created nothing.
	if _, err := s.GetCandidate(ctx, "m", "b"); err == nil {
		t.Errorf("candidate b exists")
	}
}

func TestGetMigrationAndCandidateReadsBothInOneCall(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc")}}, at(0))
	m, c, err := s.GetMigrationAndCandidate(ctx, "m", "a")
	if err != nil {
		t.Fatal(err)
	}
	wantM, err1 := s.GetMigration(ctx, "m")
	wantC, err2 := s.GetCandidate(ctx, "m", "a")
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	wantM.Kinds = nil // the engine's read leaves the per-kind counts out
	if !reflect.DeepEqual(m, wantM) || !reflect.DeepEqual(c, wantC) {
		t.Fatalf("read %+v / %+v, want %+v / %+v", m, c, wantM, wantC)
	}
	for _, tc := range []struct{ m, c, reason string }{
		{"m", "zz", migration.ReasonCandidateNotFound},
		{"nope", "a", migration.ReasonMigrationNotFound},
	} {
		_, _, err := s.GetMigrationAndCandidate(ctx, tc.m, tc.c)
		var ref *migration.Refusal
		if !errors.Is(err, migration.ErrNotFound) || !errors.As(err, &ref) || ref.Reason != tc.reason {
			t.Errorf("%s/%s: %v, want not found (%s)", tc.m, tc.c, err, tc.reason)
		}
	}
}

// A metadata change leaves the members of the old pairs, read back from the
// stored definition, whatever bytes their JSON escapes.
func TestMetadataChangeLeavesTheOldPairs(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	mustPut(t, s, "m")
	odd := "é <&> \"q\" \\ \u2028 {x} 1:a=b"
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{
		cand("a", "svc", odd, odd, "team", "t1"), cand("b", "svc", odd, odd)}}, at(1))
	checkInvariants(t, rdb, "m")
	res := mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{
		cand("a", "svc", "team", "t2", odd, "other")}}, at(2))
	if !slices.Equal(res.Updated, []string{"a"}) {
		t.Fatalf("metadata change: %+v", res)
	}
	checkInvariants(t, rdb, "m")
	want := []string{metadataMember(metadataPair(odd, odd), "b"), metadataMember(metadataPair(odd, "other"), "a"),
		metadataMember(metadataPair("team", "t2"), "a")}
	slices.Sort(want)
	if got := zmembers(t, rdb, metadataIndexKey("m")); !slices.Equal(got, want) {
		t.Errorf("metadata index %q, want %q", got, want)
	}
	page, err := s.ListCandidates(context.Background(), "m", migration.CandidateFilter{Metadata: map[string]string{odd: odd}}, migration.PageRequest{})
	if err != nil || len(page.Candidates) != 1 || page.Candidates[0].ID != "b" || page.Total != 1 {
		t.Errorf("filter on the odd pair: %+v, %v", page, err)
	}
}

// A complete pass that marked every not_started Candidate skips the sweep
// (the round count says so); every change that unmarks one, or takes a
// marked one out of not_started, keeps the sweep from being skipped when
// something is left to flag.
func TestTheRoundCountSkipsOnlyEmptySweeps(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	mustPut(t, s, "m")
	count := func() (string, string) {
		h := hgetall(t, rdb, migrationKey("m"))
		return h["rnd:n"], h["n:not_started"]
	}
	sub := func(round string, complete bool, ids ...string) migration.SubmitResult {
		var cs []migration.Candidate
		for _, id := range ids {
			cs = append(cs, cand(id, "svc"))
		}
		return mustSubmit(t, s, migration.Submission{MigrationID: "m", Round: round, Complete: complete, Candidates: cs}, at(1))
	}
	sub("r1", false, "a", "b")
	sub("r1", true, "c")
	if n, ns := count(); n != "3" || ns != "3" {
		t.Fatalf("after a pass over all: marked %s of %s", n, ns)
	}
	// A submission without a round unmarks b: the next pass must sweep.
	sub("r2", false, "a", "b", "c")
	sub("", false, "b")
	if res := sub("r2", true, "a", "c"); !slices.Equal(res.NoLongerDiscovered, []string{"b"}) {
		t.Errorf("b lost its mark: flagged %v", res.NoLongerDiscovered)
	}
	// A marked Candidate that starts leaves the count: d, added without a
	// round, is then the one the pass must flag.
	sub("r3", false, "a", "b", "c")
	mustBegin(t, s, newRun("m", "a", 1, at(2)))
	sub("", false, "d")
	if n, ns := count(); n != "2" || ns != "3" {
		t.Fatalf("after a start: marked %s of %s", n, ns)
	}
	if res := sub("r3", true, "b", "c"); !slices.Equal(res.NoLongerDiscovered, []string{"d"}) {
		t.Errorf("d was never marked: flagged %v", res.NoLongerDiscovered)
	}
	// SetCandidateStatus too.
	sub("r4", false, "b", "c", "d")
	mustSetStatus(t, s, "m", "b", migration.CandidateNotStarted, migration.CandidateCompleted)
	if n, ns := count(); n != "2" || ns != "2" {
		t.Fatalf("after a status change: marked %s of %s", n, ns)
	}
	// Interleaved rounds count from 0 again, and sweep.
	sub("r5", false, "c")
	sub("r4", true, "c", "d")
	if n, ns := count(); n != "1" || ns != "2" {
		t.Fatalf("after r5 then r4: marked %s of %s", n, ns)
	}
	checkInvariants(t, rdb, "m")
}

// A submission large enough to be encoded on several goroutines stores
// each Candidate as one encoded alone, in order, with its metadata members.
func TestLargeSubmissionIsEncodedInOrder(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	mustPut(t, s, "m")
	var cs []migration.Candidate
	for i := range migration.MaxSubmitCandidates {
		meta := []string{"team", fmt.Sprintf("t%d", i%7)}
		if i%3 == 0 {
			meta = append(meta, "repo", fmt.Sprintf("git@x:%d.git", i))
		}
		cs = append(cs, cand(fmt.Sprintf("c%04d", i), []string{"svc", "repo"}[i%2], meta...))
	}
	res := mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs}, at(1))
	if len(res.Added) != len(cs) {
		t.Fatalf("added %d of %d", len(res.Added), len(cs))
	}
	members := map[string]bool{}
	for _, m := range zmembers(t, rdb, metadataIndexKey("m")) {
		members[m] = true
	}
	want := 0
	for i, c := range cs {
		if res.Added[i] != c.ID {
			t.Fatalf("added[%d] = %s, want %s", i, res.Added[i], c.ID)
		}
		def, err := encodeCandidateDef(c)
		if err != nil {
			t.Fatal(err)
		}
		h := hgetall(t, rdb, candidateKey("m", c.ID))
		if h["def"] != def || h["kind"] != c.Kind {
			t.Fatalf("%s stored %q (%s), want %q (%s)", c.ID, h["def"], h["kind"], def, c.Kind)
		}
		for k, v := range c.Metadata {
			want++
			if !members[metadataMember(metadataPair(k, v), c.ID)] {
				t.Fatalf("%s: no metadata member for %s=%s", c.ID, k, v)
			}
		}
	}
	if len(members) != want {
		t.Fatalf("%d metadata members, want %d", len(members), want)
	}
}
