package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/redistest"

	"github.com/loomhq/loom/server/internal/migration"
)

func TestPutMigration(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()

	changed := testMigration("helm")
	changed.Steps[0].Config["c"] = "3"
	sameButEmpty := testMigration("helm")
	sameButEmpty.Steps[1].Config = map[string]string{} // nil and empty are one definition
	leaseChanged := testMigration("helm")
	leaseChanged.LeaseByType["pr"] = 2 * time.Hour
	previewable := leaseChanged
	previewable.ViewersMayPreview = true

	steps := []struct {
		name                 string
		m                    migration.Migration
		now                  int
		created, updated     bool
		wantCtime, wantUtime int
	}{
		{"create", testMigration("helm"), 0, true, false, 0, 0},
		{"identical re-announce", testMigration("helm"), 1, false, false, 0, 0},
		{"identical up to empty maps", sameButEmpty, 2, false, false, 0, 0},
		{"definition changed", changed, 3, false, true, 0, 3},
		{"changed back", testMigration("helm"), 4, false, true, 0, 4},
		{"a lease changed", leaseChanged, 5, false, true, 0, 5},
		{"viewers may preview", previewable, 6, false, true, 0, 6},
		{"and no longer", leaseChanged, 7, false, true, 0, 7},
	}
	for _, st := range steps {
		stored, created, updated, err := s.PutMigration(ctx, st.m, at(st.now))
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if created != st.created || updated != st.updated {
			t.Errorf("%s: created, updated = %v, %v; want %v, %v", st.name, created, updated, st.created, st.updated)
		}
		want := st.m
		want.Steps = slices.Clone(want.Steps)
		want.Steps[1].Config = nil
		want.CreateTime, want.UpdateTime = at(st.wantCtime).Truncate(1e6), at(st.wantUtime).Truncate(1e6)
		if !reflect.DeepEqual(stored, want) {
			t.Errorf("%s: stored\n %+v\nwant\n %+v", st.name, stored, want)
		}
		got, err := s.GetMigration(ctx, "helm")
		if err != nil {
			t.Fatalf("%s: get: %v", st.name, err)
		}
		if !reflect.DeepEqual(got, stored) {
			t.Errorf("%s: get returns %+v, put returned %+v", st.name, got, stored)
		}
	}
	if got := zmembers(t, rdb, migrationsKey()); !slices.Equal(got, []string{"helm"}) {
		t.Errorf("index = %v", got)
	}
}

func TestPutMigrationNeverTouchesCandidates(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc"), cand("b", "svc")}}, at(1))
	mustSetStatus(t, s, "m", "a", migration.CandidateNotStarted, migration.CandidateRunning)
	before := hgetall(t, rdb, candidateKey("m", "a"))
	changed := testMigration("m")
	changed.Name = "renamed"
	stored, _, updated, err := s.PutMigration(ctx, changed, at(5))
	if err != nil || !updated {
		t.Fatalf("put: updated %v, err %v", updated, err)
	}
	if want := (migration.CandidateCounts{NotStarted: 1, Running: 1}); stored.Counts != want {
		t.Errorf("counts %+v, want %+v", stored.Counts, want)
	}
	if after := hgetall(t, rdb, candidateKey("m", "a")); !reflect.DeepEqual(before, after) {
		t.Errorf("candidate changed by a re-announce: %v -> %v", before, after)
	}
	checkInvariants(t, rdb, "m")
}

func TestMigrationCounts(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustPut(t, s, "other")
	var cs []migration.Candidate
	for _, id := range ids("c", 0, 6) {
		cs = append(cs, cand(id, "svc"))
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs}, at(1))
	mustSetStatus(t, s, "m", "c000", migration.CandidateNotStarted, migration.CandidateRunning)
	mustSetStatus(t, s, "m", "c001", migration.CandidateNotStarted, migration.CandidateRunning)
	mustSetStatus(t, s, "m", "c002", migration.CandidateNotStarted, migration.CandidateRunning)
	mustSetStatus(t, s, "m", "c002", migration.CandidateRunning, migration.CandidateCompleted)

	want := migration.CandidateCounts{NotStarted: 3, Running: 2, Completed: 1}
	m, err := s.GetMigration(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	if m.Counts != want || m.Counts.Total() != 6 {
		t.Errorf("get: counts %+v, want %+v", m.Counts, want)
	}
	page, err := s.ListMigrations(ctx, migration.PageRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Migrations) != 2 || page.Migrations[0].ID != "m" || page.Migrations[0].Counts != want ||
		page.Migrations[1].Counts != (migration.CandidateCounts{}) {
		t.Errorf("list: %+v", page)
	}
	checkInvariants(t, rdb, "m")
}

func TestMigrationKinds(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustPut(t, s, "empty")
	cs := []migration.Candidate{cand("a", "repo"), cand("b", "repo"), cand("c", "repo"), cand("d", "service")}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs}, at(1))
	mustSetStatus(t, s, "m", "a", migration.CandidateNotStarted, migration.CandidateRunning)

	want := map[string]int64{"repo": 3, "service": 1}
	m, err := s.GetMigration(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(m.Kinds, want) || m.Counts != (migration.CandidateCounts{NotStarted: 3, Running: 1}) {
		t.Errorf("get: kinds %v counts %+v, want %v", m.Kinds, m.Counts, want)
	}
	page, err := s.ListMigrations(ctx, migration.PageRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Migrations) != 2 || page.Migrations[0].ID != "empty" || len(page.Migrations[0].Kinds) != 0 ||
		!maps.Equal(page.Migrations[1].Kinds, want) {
		t.Errorf("list: %+v", page.Migrations)
	}
	stored, _, _, err := s.PutMigration(ctx, testMigration("m"), at(2))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(stored.Kinds, want) {
		t.Errorf("re-announce: kinds %v, want %v", stored.Kinds, want)
	}
	// A Candidate that changes kind moves between the counts.
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("d", "repo")}}, at(3))
	if m, err = s.GetMigration(ctx, "m"); err != nil || !maps.Equal(m.Kinds, map[string]int64{"repo": 4}) {
		t.Errorf("after a kind change: kinds %v, %v", m.Kinds, err)
	}
	checkInvariants(t, rdb, "m")
}

func TestListMigrationsPaging(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	var all []string
	for i := range 23 {
		all = append(all, fmt.Sprintf("mig-%02d", i))
	}
	for _, i := range rand.Perm(len(all)) { // announce order does not matter
		mustPut(t, s, all[i])
	}
	// An index entry whose Migration is gone (a crash between a delete's
	// script and its ZREM) is skipped, without breaking the paging.
	if err := rdb.ZAdd(ctx, migrationsKey(), redis.Z{Member: "mig-05x"}).Err(); err != nil {
		t.Fatal(err)
	}

	for _, limit := range []int{1, 5, 10, 22, 23, 24, 100} {
		t.Run(fmt.Sprint("limit=", limit), func(t *testing.T) {
			var got []string
			after := ""
			pages := 0
			for {
				page, err := s.ListMigrations(ctx, migration.PageRequest{After: after, Limit: limit})
				if err != nil {
					t.Fatal(err)
				}
				pages++
				if len(page.Migrations) > limit {
					t.Fatalf("page of %d, limit %d", len(page.Migrations), limit)
				}
				for _, m := range page.Migrations {
					if m.Name != "Upgrade "+m.ID || m.CreateTime.IsZero() {
						t.Errorf("incomplete migration %+v", m)
					}
					got = append(got, m.ID)
				}
				if page.Next == "" {
					break
				}
				if page.Next <= after {
					t.Fatalf("next %q does not move past %q", page.Next, after)
				}
				after = page.Next
				if pages > 100 {
					t.Fatal("paging does not end")
				}
			}
			if !slices.Equal(got, all) {
				t.Errorf("paged ids %v, want %v", got, all)
			}
		})
	}
	page, err := s.ListMigrations(ctx, migration.PageRequest{After: "mig-22"})
	if err != nil || len(page.Migrations) != 0 || page.Next != "" {
		t.Errorf("after the last: %+v, %v", page, err)
	}
	page, err = s.ListMigrations(ctx, migration.PageRequest{}) // 0 means the default size
	if err != nil || len(page.Migrations) != 23 || page.Next != "" {
		t.Errorf("default limit: %d migrations, next %q, %v", len(page.Migrations), page.Next, err)
	}

	// Deleting the ghost reports not found and drops its stale entry.
	_, err = s.DeleteMigration(ctx, "mig-05x", time.Now())
	refusal(t, err, migration.ErrNotFound, migration.ReasonMigrationNotFound)
	if n := len(zmembers(t, rdb, migrationsKey())); n != 23 {
		t.Errorf("index holds %d ids after the ghost's delete, want 23", n)
	}
}

func TestDeleteMigration(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "doomed")
	mustPut(t, s, "doomed-not") // shares a prefix; must survive
	var cs []migration.Candidate
	for i, id := range ids("org/repo.", 0, 40) {
		cs = append(cs, cand(id, []string{"svc", "repo", "topic"}[i%3], "i", fmt.Sprint(i)))
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "doomed", Candidates: cs}, at(1))
	mustSubmit(t, s, migration.Submission{MigrationID: "doomed-not", Candidates: cs[:5]}, at(1))
	mustSetStatus(t, s, "doomed", "org/repo.001", migration.CandidateNotStarted, migration.CandidateRunning)
	mustSetStatus(t, s, "doomed", "org/repo.002", migration.CandidateNotStarted, migration.CandidateRunning)
	mustSetStatus(t, s, "doomed", "org/repo.002", migration.CandidateRunning, migration.CandidateCompleted)
	// A kind whose last Candidate moved away leaves no key behind either.
	mustSubmit(t, s, migration.Submission{MigrationID: "doomed", Candidates: []migration.Candidate{cand("org/repo.000", "lonely")}}, at(2))
	mustSubmit(t, s, migration.Submission{MigrationID: "doomed", Candidates: []migration.Candidate{cand("org/repo.000", "svc")}}, at(3))

	keysBefore := scanKeys(t, rdb, migrationKeysPattern("doomed"))
	_, err := s.DeleteMigration(ctx, "doomed", time.Now())
	r := refusal(t, err, migration.ErrFailedPrecondition, migration.ReasonMigrationHasRunning)
	if r.Metadata["running_candidates"] != "1" {
		t.Errorf("refusal metadata %v", r.Metadata)
	}
	if keysAfter := scanKeys(t, rdb, migrationKeysPattern("doomed")); !slices.Equal(keysBefore, keysAfter) {
		t.Errorf("a refused delete changed keys: %v -> %v", keysBefore, keysAfter)
	}
	if _, err := s.GetMigration(ctx, "doomed"); err != nil {
		t.Errorf("get after refused delete: %v", err)
	}

	mustSetStatus(t, s, "doomed", "org/repo.001", migration.CandidateRunning, migration.CandidateNotStarted)
	n, err := s.DeleteMigration(ctx, "doomed", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n != 40 {
		t.Errorf("deleted %d candidates, want 40", n)
	}
	if left := stateKeysLeft(t, rdb, "doomed"); len(left) != 0 {
		t.Errorf("keys left behind: %v", left)
	}
	if got := zmembers(t, rdb, migrationsKey()); !slices.Equal(got, []string{"doomed-not"}) {
		t.Errorf("index after delete = %v", got)
	}
	_, err = s.GetMigration(ctx, "doomed")
	refusal(t, err, migration.ErrNotFound, migration.ReasonMigrationNotFound)
	_, err = s.DeleteMigration(ctx, "doomed", time.Now())
	refusal(t, err, migration.ErrNotFound, migration.ReasonMigrationNotFound)
	if ids := checkInvariants(t, rdb, "doomed-not"); len(ids) != 5 {
		t.Errorf("the other migration lost candidates: %v", ids)
	}

	// The id can be announced again, from scratch.
	stored, created, _, err := s.PutMigration(ctx, testMigration("doomed"), at(9))
	if err != nil || !created || stored.Counts.Total() != 0 {
		t.Errorf("re-create: %+v created=%v err=%v", stored.Counts, created, err)
	}
}

func TestDeleteEmptyMigration(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	mustPut(t, s, "empty")
	n, err := s.DeleteMigration(context.Background(), "empty", time.Now())
	if err != nil || n != 0 {
		t.Fatalf("delete: %d, %v", n, err)
	}
	if left := stateKeysLeft(t, rdb, "empty"); len(left) != 0 {
		t.Errorf("keys left: %v", left)
	}
}

// A deleted Migration disappears at once, while its keys go away in chunks
// of sweepChunk Candidates per script, each short; a sweep cut short (here:
// the caller gone right after the delete) is finished by SweepDeleted, and
// until then the id cannot be announced again.
func TestADeleteDisappearsAtOnceAndSweepsInChunks(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	mustPut(t, s, "big")
	mustPut(t, s, "other")
	const n = 2*sweepChunk + 100
	all := ids("acme/repo-", 0, n)
	for i := 0; i < n; i += 1000 {
		var cs []migration.Candidate
		for _, id := range all[i:min(i+1000, n)] {
			cs = append(cs, cand(id, "svc", "repo", id)) // a metadata value of its own: an index key each
		}
		mustSubmit(t, s, migration.Submission{MigrationID: "big", Candidates: cs}, at(1))
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "other", Candidates: []migration.Candidate{cand("a", "svc")}}, at(1))
	r := newRun("big", all[7], 1, at(2))
	if _, err := s.BeginRun(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	mustSetStatus(t, s, "big", all[7], migration.CandidateRunning, migration.CandidateCompleted)
	keysBefore := len(scanKeys(t, rdb, migrationKeysPattern("big")))

	// The caller goes away once the Migration is deleted: the sweep is cut short.
	ctx, cancel := context.WithCancel(context.Background())
	s.afterDeleteScript = func(string) { cancel() }
	if got, err := s.DeleteMigration(ctx, "big", time.Now()); err != nil || got != n {
		t.Fatalf("delete: %d, %v", got, err)
	}
	s.afterDeleteScript = nil
	bg := context.Background()
	if left := len(scanKeys(t, rdb, migrationKeysPattern("big"))); left < keysBefore/2 {
		t.Fatalf("%d of %d keys left: the sweep was not cut short", left, keysBefore)
	}
	_, err := s.GetMigration(bg, "big")
	refusal(t, err, migration.ErrNotFound, migration.ReasonMigrationNotFound)
	_, err = s.GetCandidate(bg, "big", all[0])
	refusal(t, err, migration.ErrNotFound, migration.ReasonMigrationNotFound)
	_, err = s.GetRun(bg, "big", all[7])
	refusal(t, err, migration.ErrNotFound, migration.ReasonRunNotFound)
	_, err = s.ListCandidates(bg, "big", migration.CandidateFilter{}, migration.PageRequest{Limit: 10})
	refusal(t, err, migration.ErrNotFound, migration.ReasonMigrationNotFound)
	if page, err := s.ListMigrations(bg, migration.PageRequest{}); err != nil || len(page.Migrations) != 1 || page.Migrations[0].ID != "other" {
		t.Fatalf("list: %+v, %v", page, err)
	}
	if _, err := s.SubmitCandidates(bg, migration.Submission{MigrationID: "big", Candidates: []migration.Candidate{cand("new", "svc")}}, at(3)); err == nil {
		t.Fatal("a submit to a deleted Migration")
	}
	if got := zmembers(t, rdb, deletingKey()); !slices.Equal(got, []string{"big"}) {
		t.Fatalf("being deleted: %v", got)
	}

	// One sweep call removes one chunk and no more.
	if res, err := sweepDeletedScript.run(bg, rdb, "big", "", nil, sweepChunk).Slice(); err != nil || res[0] != int64(1) {
		t.Fatalf("a sweep: %v %v", res, err)
	}
	if left := len(scanKeys(t, rdb, "loom:{big}:c:*")); left != n-sweepChunk {
		t.Fatalf("%d Candidates left after a chunk, want %d", left, n-sweepChunk)
	}

	if done, err := s.SweepDeleted(bg); err != nil || done != 1 {
		t.Fatalf("sweep deleted: %d, %v", done, err)
	}
	if left := stateKeysLeft(t, rdb, "big"); len(left) != 0 {
		t.Fatalf("keys left behind: %d, e.g. %v", len(left), left[:min(5, len(left))])
	}
	if got := zmembers(t, rdb, deletingKey()); len(got) != 0 {
		t.Fatalf("still being deleted: %v", got)
	}
	if ids := checkInvariants(t, rdb, "other"); len(ids) != 1 {
		t.Fatalf("the other Migration: %v", ids)
	}
	if stored, created, _, err := s.PutMigration(bg, testMigration("big"), at(9)); err != nil || !created || stored.Counts.Total() != 0 {
		t.Fatalf("announced again: %+v created=%v %v", stored.Counts, created, err)
	}
}

// While a deleted Migration's keys are being swept, an announce of its id
// is refused as unavailable (retry shortly), and resumes the sweep, so
// that its retry succeeds.
func TestAnnounceWhileSweepingIsRefusedThenSucceeds(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc")}}, at(1))
	// Only the delete's first script: the tombstone, nothing swept.
	if _, err := deleteMigrationScript.run(ctx, rdb, "m", "", nil, s.withHistoryArgs(ctx, time.Now(), millis(time.Now()))...).Slice(); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := s.PutMigration(ctx, testMigration("m"), at(2))
	refusal(t, err, migration.ErrUnavailable, migration.ReasonMigrationBeingDeleted)
	if _, created, _, err := s.PutMigration(ctx, testMigration("m"), at(3)); err != nil || !created {
		t.Fatalf("the retry: created %v, %v", created, err)
	}
	if left := rdb.Exists(ctx, candidateKey("m", "a")).Val(); left != 0 {
		t.Fatal("the old Candidate survived its Migration")
	}
}

// With the server's sweeper (SweepDeletesLater), an announce (or a
// delete) of a Migration being swept wakes the sweeper and answers at
// once, sweeping nothing itself: the sweep may be waiting out a fork of Redis's for
// longer than the call may take. Its retry succeeds once the sweep ends.
func TestAnnounceWhileSweepingWakesTheSweeper(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	var kicked []string
	s.SweepDeletesLater(func(id string) { kicked = append(kicked, id) })
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc")}}, at(1))
	if _, err := s.DeleteMigration(ctx, "m", time.Now()); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := s.PutMigration(ctx, testMigration("m"), at(2))
	refusal(t, err, migration.ErrUnavailable, migration.ReasonMigrationBeingDeleted)
	if !slices.Equal(kicked, []string{"m", "m"}) { // the delete's, then the announce's
		t.Fatalf("sweeper woken for %v", kicked)
	}
	if rdb.Exists(ctx, candidateKey("m", "a")).Val() != 1 {
		t.Fatal("the announce swept the Candidate itself")
	}
	// A second delete finds no Migration and wakes the sweeper too.
	_, err = s.DeleteMigration(ctx, "m", time.Now())
	refusal(t, err, migration.ErrNotFound, migration.ReasonMigrationNotFound)
	if len(kicked) != 3 || rdb.Exists(ctx, candidateKey("m", "a")).Val() != 1 {
		t.Fatalf("after a second delete: sweeper woken for %v, the Candidate swept by the call: %v", kicked, rdb.Exists(ctx, candidateKey("m", "a")).Val() == 0)
	}
	if done, err := s.SweepDeleted(ctx); err != nil || done != 1 {
		t.Fatalf("sweep: %d, %v", done, err)
	}
	if _, created, _, err := s.PutMigration(ctx, testMigration("m"), at(3)); err != nil || !created {
		t.Fatalf("the retry: created %v, %v", created, err)
	}
}

// Loom says when Redis keeps Candidates' hashes in their large encoding, or
// gives each of their streams more room than it needs, and is quiet when
// it does neither.
func TestCheckSettingsNamesWhatCostsCandidatesMemory(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	if got := s.CheckSettings(ctx); len(got) != 0 {
		t.Fatalf("redistest's Redis, as docs/production.md asks: %v", got)
	}
	if err := rdb.ConfigSet(ctx, "hash-max-listpack-value", "64").Err(); err != nil {
		t.Fatal(err)
	}
	if got := s.CheckSettings(ctx); len(got) != 1 || !strings.Contains(got[0], "hash-max-") {
		t.Fatalf("with Redis's default hash limit: %v", got)
	}
	if err := rdb.ConfigSet(ctx, "stream-node-max-bytes", "4096").Err(); err != nil {
		t.Fatal(err)
	}
	if got := s.CheckSettings(ctx); len(got) != 2 || !strings.Contains(got[1], "stream-node-max-bytes 4096") {
		t.Fatalf("with Redis's defaults: %v", got)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	if got := s.CheckSettings(ctx); len(got) != 3 || !strings.Contains(got[2], "maxmemory-policy allkeys-lru") {
		t.Fatalf("with keys that may be evicted: %v", got)
	}
}

// With Redis down, a delete answers unavailable (STORE_UNAVAILABLE) and
// changes nothing; a sweep cut short by Redis going away is finished once
// it is back.
func TestDeleteWithRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	s := New(rdb)
	ctx := context.Background()
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc"), cand("b", "svc")}}, at(1))

	srv.Down()
	_, err := s.DeleteMigration(ctx, "m", time.Now())
	refusal(t, err, migration.ErrUnavailable, migration.ReasonStoreUnavailable)
	srv.Up()
	if got, err := s.GetMigration(ctx, "m"); err != nil || got.Counts.Total() != 2 {
		t.Fatalf("after a delete refused with Redis down: %+v, %v", got.Counts, err)
	}

	// Redis goes away right after the Migration became a tombstone.
	s.afterDeleteScript = func(string) { srv.Down() }
	if n, err := s.DeleteMigration(ctx, "m", time.Now()); err != nil || n != 2 {
		t.Fatalf("delete: %d, %v", n, err)
	}
	s.afterDeleteScript = nil
	if _, err := s.SweepDeleted(ctx); !errors.Is(err, migration.ErrUnavailable) {
		t.Fatalf("sweep with Redis down: %v", err)
	}
	srv.Up()
	_, err = s.GetMigration(ctx, "m")
	refusal(t, err, migration.ErrNotFound, migration.ReasonMigrationNotFound)
	if done, err := s.SweepDeleted(ctx); err != nil || done != 1 {
		t.Fatalf("sweep once Redis is back: %d, %v", done, err)
	}
	if left := stateKeysLeft(t, rdb, "m"); len(left) != 0 {
		t.Fatalf("keys left: %v", left)
	}
}

// With SweepDeletesLater, DeleteMigration answers once the Migration is a
// tombstone, gone from every read, and leaves its keys to the sweeper it
// tells; SweepDeleted then removes them.
func TestADeleteCanLeaveItsSweepToTheSweeper(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	var told []string
	s.SweepDeletesLater(func(id string) { told = append(told, id) })
	mustPut(t, s, "m")
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("a", "svc"), cand("b", "svc")}}, at(1))
	n, err := s.DeleteMigration(ctx, "m", at(2))
	if err != nil || n != 2 {
		t.Fatalf("delete: %d, %v", n, err)
	}
	if len(told) != 1 || told[0] != "m" {
		t.Fatalf("the sweeper was told %v", told)
	}
	if _, err := s.GetMigration(ctx, "m"); !errors.Is(err, migration.ErrNotFound) {
		t.Fatalf("the deleted Migration reads %v", err)
	}
	if rdb.Exists(ctx, tombstoneKey("m"), candidateKey("m", "a")).Val() != 2 {
		t.Fatal("the keys were swept before the sweeper ran")
	}
	if done, err := s.SweepDeleted(ctx); err != nil || done != 1 {
		t.Fatalf("sweep: %d, %v", done, err)
	}
	if n := rdb.Exists(ctx, tombstoneKey("m"), candidateKey("m", "a"), candidateKey("m", "b")).Val(); n != 0 {
		t.Fatalf("%d keys left after the sweep", n)
	}
}

// persistenceField is the value of field in the INFO persistence of rdb.
func persistenceField(t testing.TB, rdb *redis.Client, field string) string {
	t.Helper()
	info, err := rdb.Info(context.Background(), "persistence").Result()
	if err != nil {
		t.Fatalf("info persistence: %v", err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	t.Fatalf("no %s in INFO persistence: %q", field, info)
	return ""
}

// While Redis runs a fork child (here a BGSAVE, made to last by
// rdb-key-save-delay, Redis's own setting for tests), the sweep of a
// deleted Migration removes nothing; once the child is gone, it finishes.
func TestTheSweepWaitsWhileRedisRunsAForkChild(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	sweepWaitsForForkChild(t, s, rdb, "m")
}

// On a Redis Cluster the sweep looks at the master of the Migration's
// slot: of two masters, the one that holds the Migration saves, and the
// other, the one the client was given, does not.
func TestTheSweepWaitsWhileTheMigrationsClusterNodeRunsAForkChild(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	first, _ := startNode(t)
	second, _ := startNode(t)
	a := redis.NewClient(&redis.Options{Addr: first})
	t.Cleanup(func() { _ = a.Close() })
	b := redis.NewClient(&redis.Options{Addr: second})
	t.Cleanup(func() { _ = b.Close() })
	if err := a.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 8191).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 8192, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(second)
	if err := a.Do(ctx, "CLUSTER", "MEET", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*redis.Client{a, b} {
		awaitTrue(t, "the cluster is ok", func() bool {
			info, _ := n.ClusterInfo(ctx).Result()
			return strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:2")
		})
	}
	// A Migration whose slot is the second master's.
	m := ""
	for i := 0; m == ""; i++ {
		id := fmt.Sprintf("m%d", i)
		if slot, err := a.ClusterKeySlot(ctx, tombstoneKey(id)).Result(); err != nil {
			t.Fatal(err)
		} else if slot >= 8192 {
			m = id
		}
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{first}})
	t.Cleanup(func() { _ = cc.Close() })
	sweepWaitsForForkChild(t, New(cc), b, m)
}

// sweepWaitsForForkChild deletes Migration m of s while rdb, the node
// that holds it, runs a BGSAVE made to last, and checks that the sweep
// removes nothing until the BGSAVE ends, then everything.
func sweepWaitsForForkChild(t *testing.T, s *Store, rdb *redis.Client, m string) {
	t.Helper()
	ctx := context.Background()
	s.SweepDeletesLater(func(string) {}) // the test runs the sweep
	mustPut(t, s, m)
	const n = 300
	var cs []migration.Candidate
	for _, id := range ids("acme/repo-", 0, n) {
		cs = append(cs, cand(id, "svc", "repo", id))
	}
	mustSubmit(t, s, migration.Submission{MigrationID: m, Candidates: cs}, at(1))
	// Keys for the child to save: with 1 ms per key, a BGSAVE of ~2,000
	// keys lasts about 2 s.
	pipe := rdb.Pipeline()
	for i := range 1500 {
		pipe.Set(ctx, fmt.Sprintf("{%s}filler:%d", m, i), "x", 0) // on rdb, in a cluster too
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ConfigSet(ctx, "rdb-key-save-delay", "1000").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.BgSave(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if got := persistenceField(t, rdb, "rdb_bgsave_in_progress"); got != "1" {
		t.Fatalf("rdb_bgsave_in_progress:%s right after BGSAVE", got)
	}
	if got, err := s.DeleteMigration(ctx, m, time.Now()); err != nil || got != n {
		t.Fatalf("delete: %d, %v", got, err)
	}
	type result struct {
		done int
		err  error
	}
	swept := make(chan result, 1)
	go func() {
		done, err := s.SweepDeleted(ctx)
		swept <- result{done, err}
	}()

	for range 5 {
		time.Sleep(100 * time.Millisecond)
		if left := len(scanKeys(t, rdb, "loom:{"+m+"}:c:*")); left != n {
			t.Fatalf("%d of %d Candidates left while Redis saves: the sweep did not wait", left, n)
		}
	}
	select {
	case r := <-swept:
		t.Fatalf("the sweep ended while Redis saves: %d, %v", r.done, r.err)
	default:
	}
	if got := persistenceField(t, rdb, "rdb_bgsave_in_progress"); got != "1" {
		t.Fatal("the BGSAVE ended before the test looked: it proves nothing (more keys, or a longer rdb-key-save-delay)")
	}

	// Once the child is gone, the sweep goes on.
	for deadline := time.Now().Add(30 * time.Second); persistenceField(t, rdb, "rdb_bgsave_in_progress") != "0"; {
		if time.Now().After(deadline) {
			t.Fatal("the BGSAVE still runs after 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := rdb.ConfigSet(ctx, "rdb-key-save-delay", "0").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-swept:
		if r.err != nil || r.done != 1 {
			t.Fatalf("sweep: %d, %v", r.done, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sweep did not end within 10 s of the BGSAVE")
	}
	if left := stateKeysLeft(t, rdb, m); len(left) != 0 {
		t.Fatalf("keys left: %d, e.g. %v", len(left), left[:min(5, len(left))])
	}
}

// A sweep call slower than sweepChunkTarget halves the next chunk, down to
// sweepChunkMin; faster than half of it, the chunk grows again, up to
// sweepChunk.
func TestNextSweepChunk(t *testing.T) {
	t.Parallel()
	slow, fast, fair := 2*sweepChunkTarget, sweepChunkTarget/4, sweepChunkTarget*3/4
	for _, c := range []struct {
		n    int
		took time.Duration
		want int
	}{
		{sweepChunk, slow, sweepChunk / 2},
		{sweepChunkMin + 1, slow, sweepChunkMin},
		{sweepChunkMin, time.Second, sweepChunkMin},
		{sweepChunkMin, fast, sweepChunkMin + sweepChunkMin/2},
		{100, fast, 150},
		{sweepChunk - 1, fast, sweepChunk},
		{sweepChunk, 0, sweepChunk},
		{100, fair, 100},
		{100, sweepChunkTarget, 100},
	} {
		if got := nextSweepChunk(c.n, c.took); got != c.want {
			t.Errorf("after %d in %v: %d, want %d", c.n, c.took, got, c.want)
		}
	}
}

// slowSweep is a client hook that delays the first `slow` calls of
// sweepDeletedScript by delay (a slow network, or a Redis slow to answer)
// and records the chunk each call asks for.
type slowSweep struct {
	delay  time.Duration
	mu     sync.Mutex
	slow   int
	chunks []string
}

func (h *slowSweep) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *slowSweep) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if cmd.Name() == "evalsha" && len(args) > 1 && args[1] == sweepDeletedScript.script.Hash() {
			h.mu.Lock()
			h.chunks = append(h.chunks, fmt.Sprint(args[len(args)-1]))
			delay := h.slow > 0
			h.slow--
			h.mu.Unlock()
			if delay {
				time.Sleep(h.delay)
			}
		}
		return next(ctx, cmd)
	}
}

func (h *slowSweep) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// The sweep sizes its chunks by how long the calls take: slow calls halve
// the chunk, down to sweepChunkMin, and fast ones grow it again.
func TestSweepChunksShrinkWhenSlowAndGrowBack(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	s.SweepDeletesLater(func(string) {}) // the test runs the sweep
	mustPut(t, s, "m")
	const n = 5000 // calls enough for some to be fast on a busy machine
	all := ids("acme/repo-", 0, n)
	for i := 0; i < n; i += 1000 {
		var cs []migration.Candidate
		for _, id := range all[i:min(i+1000, n)] {
			cs = append(cs, cand(id, "svc"))
		}
		mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs}, at(1))
	}
	if got, err := s.DeleteMigration(ctx, "m", time.Now()); err != nil || got != n {
		t.Fatalf("delete: %d, %v", got, err)
	}
	h := &slowSweep{delay: sweepChunkTarget + 2*time.Millisecond, slow: 6}
	rdb.AddHook(h)
	if done, err := s.SweepDeleted(ctx); err != nil || done != 1 {
		t.Fatalf("sweep: %d, %v", done, err)
	}
	if left := stateKeysLeft(t, rdb, "m"); len(left) != 0 {
		t.Fatalf("keys left: %d, e.g. %v", len(left), left[:min(5, len(left))])
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var chunks []int
	for _, c := range h.chunks {
		v, err := strconv.Atoi(c)
		if err != nil {
			t.Fatalf("chunk %q", c)
		}
		chunks = append(chunks, v)
	}
	// Six slow calls: halved each time, down to the floor.
	if want := []int{250, 125, 62, 31, 25, 25, 25}; len(chunks) < len(want) || !slices.Equal(chunks[:len(want)], want) {
		t.Fatalf("chunks %v, want them to start %v", chunks, want)
	}
	// Once calls are fast again the chunks grow (by how much depends on how
	// busy the machine is; nextSweepChunk's own test checks the growth up
	// to sweepChunk).
	grown := false
	for i, c := range chunks {
		if c < sweepChunkMin || c > sweepChunk {
			t.Fatalf("chunk %d of %v out of bounds", i, chunks)
		}
		if i > 6 && c > sweepChunkMin {
			grown = true
		}
	}
	if !grown {
		t.Fatalf("chunks %v: never grew again after the slow calls", chunks)
	}
}
