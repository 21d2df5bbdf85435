package store

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// toLayout1 rewrites Migration m, written by this code, as Loom wrote it
// before layout 2 (see layout.go): the indexes that layout dropped, every
// Candidate in the step order, a set per metadata pair with its count, the
// pairs in each hash, no single metadata index and no layout marks.
func toLayout1(t *testing.T, rdb *redis.Client, m string) {
	t.Helper()
	ctx := context.Background()
	for _, id := range checkInvariants(t, rdb, m) {
		h := hgetall(t, rdb, candidateKey(m, id))
		st := migration.CandidateStatus(h[fieldStatus])
		rdb.ZAdd(ctx, legacyCandidatesKey(m), redis.Z{Member: id})
		rdb.ZAdd(ctx, legacyStatusIndexPrefix(m)+string(st), redis.Z{Member: id})
		rdb.ZAdd(ctx, legacyKindIndexPrefix(m)+h[fieldKind], redis.Z{Member: id})
		rdb.ZAdd(ctx, legacyStatusOrderKey(m), redis.Z{Score: float64(statusOrder(st)), Member: id})
		if st == migration.CandidateNotStarted {
			rdb.ZAdd(ctx, stepOrderKey(m), redis.Z{Member: id})
		}
		if rdb.Exists(ctx, runKey(m, id)).Val() == 1 {
			rdb.ZAdd(ctx, runsKey(m), redis.Z{Member: id})
		}
		var def struct{ Metadata map[string]string }
		if err := json.Unmarshal([]byte(h["def"]), &def); err != nil {
			t.Fatal(err)
		}
		rdb.HSet(ctx, candidateKey(m, id), "midx", encodeMetadataPairs(def.Metadata))
		for k, v := range def.Metadata {
			rdb.ZAdd(ctx, legacyMetadataPrefix(m)+metadataPair(k, v), redis.Z{Member: id})
			rdb.HIncrBy(ctx, legacyMetadataPairsKey(m), metadataPair(k, v), 1)
		}
	}
	rdb.Del(ctx, metadataIndexKey(m), layoutKey())
	rdb.HDel(ctx, migrationKey(m), "layout")
}

func TestUpgradeLayoutFromLayout1(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	setupListing(t, s, "m")
	toLayout1(t, rdb, "m")
	if page, err := s.ListCandidates(ctx, "m", migration.CandidateFilter{Metadata: map[string]string{"team": "t1"}}, migration.PageRequest{}); err != nil || page.Total != 0 {
		t.Fatalf("before the upgrade, a metadata filter finds %d, %v (the test's layout 1 is not)", page.Total, err)
	}
	s.upgradeChunk = 7 // several chunks
	n, err := s.UpgradeLayout(ctx)
	if err != nil || n != 1 {
		t.Fatalf("upgrade: %d, %v", n, err)
	}
	checkCandidateListings(t, s, rdb, "m", listFilters) // and checkInvariants
	for _, pattern := range []string{"loom:{m}:cands", "loom:{m}:cands:status:*", "loom:{m}:cands:kind:*", "loom:{m}:cands:by:status",
		"loom:{m}:cands:meta:*", "loom:{m}:metas", "loom:{m}:runs"} {
		if left := scanKeys(t, rdb, pattern); len(left) != 0 {
			t.Errorf("layout 1 keys left: %v", left)
		}
	}
	for id, h := range map[string]map[string]string{"migration": hgetall(t, rdb, migrationKey("m"))} {
		if h["layout"] != currentLayout {
			t.Errorf("%s layout %q", id, h["layout"])
		}
	}
	if got := rdb.Get(ctx, layoutKey()).Val(); got != currentLayout {
		t.Errorf("layout key %q", got)
	}
	if n, err := s.UpgradeLayout(ctx); err != nil || n != 0 {
		t.Errorf("a second upgrade: %d, %v", n, err)
	}
	// A Migration announced now is of the current layout at once.
	mustPut(t, s, "new")
	if got := hgetall(t, rdb, migrationKey("new"))["layout"]; got != currentLayout {
		t.Errorf("new migration's layout %q", got)
	}
}

// A Migration of layout 1 deleted before it was upgraded leaves nothing
// behind either.
func TestDeleteOfLayout1LeavesNothing(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	setupListing(t, s, "m")
	toLayout1(t, rdb, "m")
	for _, id := range zmembers(t, rdb, legacyStatusIndexPrefix("m")+"running") {
		mustSetStatus(t, s, "m", id, migration.CandidateRunning, migration.CandidateNotStarted)
	}
	if _, err := s.DeleteMigration(ctx, "m", at(90)); err != nil {
		t.Fatal(err)
	}
	if left := stateKeysLeft(t, rdb, "m"); len(left) != 0 {
		t.Errorf("keys left behind: %v", left)
	}
}

// encodeMetadataPairs returns the midx field of layout 1: the JSON array
// of the metadataPair of each pair of metadata, in key order ("[]" when
// there is none).
func encodeMetadataPairs(metadata map[string]string) string {
	pairs := make([]string, 0, len(metadata))
	for _, k := range slices.Sorted(maps.Keys(metadata)) {
		pairs = append(pairs, metadataPair(k, metadata[k]))
	}
	b, _ := json.Marshal(pairs)
	return string(b)
}
