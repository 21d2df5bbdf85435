package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/redistest"
)

// t0 and the times after it are the injected clock of the tests.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 8_000_000, time.UTC)

func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }

// newStore starts a redis-server for the test and returns a Store on it and
// a raw client to inspect what the Store wrote.
func newStore(t testing.TB) (*Store, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return New(rdb), rdb
}

func testMigration(id string) migration.Migration {
	return migration.Migration{
		ID:          id,
		Name:        "Upgrade " + id,
		Description: "what it does",
		Overview:    "# Overview\nmarkdown",
		Steps: []migration.StepDefinition{
			{Name: "bump", Type: "pr", MigratorApp: "app", Config: map[string]string{"b": "2", "a": "1"}, Description: "bump it", ReportTimeout: 90 * time.Second},
			{Name: "review", Type: "manual-review"},
		},
		RequiredInputs: []migration.InputDefinition{{Name: "tag", Label: "Tag", Description: "image tag"}},
		MigratorURL:    "http://migrator.example:8080",
		DispatchLease:  15 * time.Minute,
		LeaseByType:    map[string]time.Duration{"pr": time.Hour},
	}
}

func cand(id, kind string, meta ...string) migration.Candidate {
	c := migration.Candidate{ID: id, Kind: kind}
	if len(meta) > 0 {
		c.Metadata = map[string]string{}
		for i := 0; i+1 < len(meta); i += 2 {
			c.Metadata[meta[i]] = meta[i+1]
		}
	}
	return c
}

// mustPut announces a Migration or fails the test.
func mustPut(t testing.TB, s *Store, id string) {
	t.Helper()
	if _, _, _, err := s.PutMigration(context.Background(), testMigration(id), t0); err != nil {
		t.Fatalf("put migration %s: %v", id, err)
	}
}

// mustSubmit submits Candidates or fails the test.
func mustSubmit(t testing.TB, s *Store, sub migration.Submission, now time.Time) migration.SubmitResult {
	t.Helper()
	res, err := s.SubmitCandidates(context.Background(), sub, now)
	if err != nil {
		t.Fatalf("submit to %s: %v", sub.MigrationID, err)
	}
	return res
}

func mustSetStatus(t testing.TB, s *Store, m, c string, from, to migration.CandidateStatus) {
	t.Helper()
	if err := s.SetCandidateStatus(context.Background(), m, c, from, to, at(30)); err != nil {
		t.Fatalf("set status %s/%s %s -> %s: %v", m, c, from, to, err)
	}
}

// scanKeys lists the keys matching pattern, sorted.
func scanKeys(t testing.TB, rdb *redis.Client, pattern string) []string {
	t.Helper()
	var keys []string
	iter := rdb.Scan(context.Background(), 0, pattern, 1000).Iterator()
	for iter.Next(context.Background()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan %s: %v", pattern, err)
	}
	slices.Sort(keys)
	return keys
}

// migrationKeysPattern matches every key of Migration m (braces are literal
// in SCAN patterns).
func migrationKeysPattern(m string) string { return "loom:{" + m + "}:*" }

func zmembers(t testing.TB, rdb *redis.Client, key string) []string {
	t.Helper()
	v, err := rdb.ZRange(context.Background(), key, 0, -1).Result()
	if err != nil {
		t.Fatalf("zrange %s: %v", key, err)
	}
	return v
}

func hgetall(t testing.TB, rdb *redis.Client, key string) map[string]string {
	t.Helper()
	v, err := rdb.HGetAll(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("hgetall %s: %v", key, err)
	}
	return v
}

// checkInvariants recomputes, from the Candidate hashes, everything the
// scripts maintain beside them (indexes, counters, kinds counts) and fails
// the test on any difference. It returns the Candidate ids.
func checkInvariants(t testing.TB, rdb *redis.Client, m string) []string {
	t.Helper()
	var ids []string
	for _, key := range scanKeys(t, rdb, "loom:{"+m+"}:c:*") {
		ids = append(ids, strings.TrimPrefix(key, candidateKeyPrefix(m)))
	}
	slices.Sort(ids)
	byStatus := map[string][]string{}
	byKind := map[string][]string{}
	bySK := map[string][]string{}
	var stepped, meta []string
	for _, id := range ids {
		h := hgetall(t, rdb, candidateKey(m, id))
		st, k := h[fieldStatus], h[fieldKind]
		if !migration.CandidateStatus(st).Valid() || k == "" {
			t.Errorf("%s: %s has status %q kind %q", m, id, st, k)
		}
		byStatus[st] = append(byStatus[st], id)
		byKind[k] = append(byKind[k], id)
		bySK[st+":"+k] = append(bySK[st+":"+k], id)
		if st != string(migration.CandidateNotStarted) {
			stepped = append(stepped, id)
		}
		var def struct{ Metadata map[string]string }
		if err := json.Unmarshal([]byte(h["def"]), &def); err != nil {
			t.Errorf("%s: %s def %q: %v", m, id, h["def"], err)
		}
		for k, v := range def.Metadata {
			meta = append(meta, metadataMember(metadataPair(k, v), id))
		}
	}
	mh := hgetall(t, rdb, migrationKey(m))
	for _, s := range migration.CandidateStatuses {
		want := byStatus[string(s)]
		n, _ := strconv.Atoi(mh[counterField(s)])
		if n != len(want) {
			t.Errorf("%s: counter %s = %d, hashes say %d", m, counterField(s), n, len(want))
		}
	}
	kinds := hgetall(t, rdb, kindsKey(m))
	if !slices.Equal(slices.Sorted(maps.Keys(kinds)), slices.Sorted(maps.Keys(byKind))) {
		t.Errorf("%s: kinds hash %v, hashes say kinds %v", m, kinds, slices.Sorted(maps.Keys(byKind)))
	}
	for k, want := range byKind {
		if kinds[k] != strconv.Itoa(len(want)) {
			t.Errorf("%s: kinds[%s] = %q, hashes say %d", m, k, kinds[k], len(want))
		}
	}
	// Every non-empty status×kind index is one the hashes justify.
	for _, key := range scanKeys(t, rdb, "loom:{"+m+"}:cands:sk:*") {
		sk := strings.TrimPrefix(key, statusKindIndexPrefix(m))
		want := bySK[sk]
		if got := zmembers(t, rdb, key); !slices.Equal(got, want) {
			t.Errorf("%s: status×kind index %s = %v, hashes say %v", m, sk, got, want)
		}
		delete(bySK, sk)
	}
	if len(bySK) != 0 {
		t.Errorf("%s: status×kind indexes missing for %v", m, slices.Sorted(maps.Keys(bySK)))
	}
	if got := zmembers(t, rdb, stepOrderKey(m)); !slices.Equal(got, stepped) && !(len(got) == 0 && len(stepped) == 0) {
		// The step order is scored: compare as sets.
		if g := slices.Sorted(slices.Values(got)); !slices.Equal(g, stepped) {
			t.Errorf("%s: step order holds %v, hashes say the running and completed are %v", m, g, stepped)
		}
	}
	if got := slices.Sorted(slices.Values(zmembers(t, rdb, changeIndexKey(m)))); !slices.Equal(got, ids) && len(ids) > 0 {
		t.Errorf("%s: last-change order holds %v, hashes say %v", m, got, ids)
	}
	slices.Sort(meta)
	if got := zmembers(t, rdb, metadataIndexKey(m)); !slices.Equal(got, meta) && !(len(got) == 0 && len(meta) == 0) {
		t.Errorf("%s: metadata index = %q, hashes say %q", m, got, meta)
	}
	return ids
}

// refusal extracts the *migration.Refusal of err, failing the test when
// there is none or its kind is not kind.
func refusal(t testing.TB, err error, kind error, reason string) *migration.Refusal {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error %v is not %v", err, kind)
	}
	var r *migration.Refusal
	if !errors.As(err, &r) {
		t.Fatalf("error %v is not a *migration.Refusal", err)
	}
	if r.Reason != reason {
		t.Fatalf("reason %q, want %q", r.Reason, reason)
	}
	return r
}

func ids(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%03d", prefix, i))
	}
	return out
}
