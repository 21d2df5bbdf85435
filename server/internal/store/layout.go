package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// layout.go owns the upgrade of data written by an earlier layout of the
// keys: UpgradeLayout rebuilds what changed, a bounded chunk per script.
//
// Layout 1 (Loom before the store at fleet scale) indexed every Candidate
// in cands (ids), cands:status:<s>, cands:kind:<k> and cands:by:status
// beside cands:sk:<s>:<k>; every Candidate in cands:by:step; and each
// metadata pair in a sorted set of its own, cands:meta:<pair>, counted in
// metas, with the pairs in the Candidate hash's midx. Layout 2 keeps only
// the status×kind sets, the running and completed Candidates in the step
// order and one metadata index (see keys.go). The status×kind sets, the
// orders by step and change and the Candidate hashes are the same, so a
// Migration not yet upgraded lists right but for metadata filters (which
// miss its Candidates) and the order by current step (which shows its
// not_started ones twice) until its upgrade, a few milliseconds per
// thousand Candidates.

// currentLayout is the layout this code writes; a Migration hash records
// its own in field "layout" (absent: 1), and layoutKey says every
// Migration has it.
const currentLayout = "2"

// layoutKey holds currentLayout once every Migration has been upgraded to
// it (STRING), so that a server's start costs one GET.
func layoutKey() string { return keyPrefix + "layout" }

// legacyCandidatesKey and the functions below name the keys of layout 1.
func legacyCandidatesKey(m string) string     { return migrationTag(m) + "cands" }
func legacyStatusIndexPrefix(m string) string { return migrationTag(m) + "cands:status:" }
func legacyKindIndexPrefix(m string) string   { return migrationTag(m) + "cands:kind:" }
func legacyStatusOrderKey(m string) string    { return migrationTag(m) + "cands:by:status" }
func legacyMetadataPrefix(m string) string    { return migrationTag(m) + "cands:meta:" }
func legacyMetadataPairsKey(m string) string  { return migrationTag(m) + "metas" }
func legacyPrefixTempKey(m string) string     { return migrationTag(m) + "cands:tmp:prefix" }

var upgradeKeys = scriptKeys{
	ofMigration("k_migration", migrationKey),
	ofMigration("k_tombstone", tombstoneKey),
	ofMigration("k_candidates", legacyCandidatesKey),
	ofMigration("k_kinds", kindsKey),
	ofMigration("k_candidate_prefix", candidateKeyPrefix), // + each id of k_candidates
	ofMigration("k_step_order", stepOrderKey),
	ofMigration("k_metadata", metadataIndexKey),
	ofMigration("k_status_prefix", legacyStatusIndexPrefix), // + each Candidate status
	ofMigration("k_kind_prefix", legacyKindIndexPrefix),     // + each kind of k_kinds
	ofMigration("k_status_order", legacyStatusOrderKey),
	ofMigration("k_metadata_prefix", legacyMetadataPrefix), // + each pair of k_metadata_pairs
	ofMigration("k_metadata_pairs", legacyMetadataPairsKey),
	ofMigration("k_prefix_tmp", legacyPrefixTempKey),
	ofMigration("k_runs", runsKey),
}

// upgradeLayoutScript upgrades one chunk of a Migration of layout 1 (or of
// its tombstone, while it is being deleted) to layout 2.
//
//	KEYS upgradeKeys
//	ARGV[1] the most Candidates (or metadata pairs) to upgrade
//
// In order, one kind per call: ARGV[1] Candidates of cands (a not_started
// one leaves the step order; each gets the metadata index's members of the
// pairs of its def; midx is dropped; it leaves cands); then ARGV[1]
// metadata pairs' sets (UNLINKed); then the other keys of layout 1 (and
// runs, the index of every run view, no longer read), and the hash's
// layout is set.
//
// Returns {1} when there is more to do, {0} when the Migration is of the
// current layout (or gone).
var upgradeLayoutScript = newKeyedScript(upgradeKeys, `
local h = k_migration
if redis.call('EXISTS', h) == 0 then h = k_tombstone end
if redis.call('EXISTS', h) == 0 then return {0} end
if redis.call('HGET', h, 'layout') == '`+currentLayout+`' then return {0} end
local n = tonumber(ARGV[1])

local ids = redis.call('ZRANGE', k_candidates, 0, n - 1)
if #ids > 0 then
  for _, id in ipairs(ids) do
    local key = k_candidate_prefix .. id
    local c = redis.call('HMGET', key, 'status', 'def')
    if c[1] == 'not_started' then redis.call('ZREM', k_step_order, id) end
    if c[2] then
      local md = cjson.decode(c[2]).metadata
      if type(md) == 'table' then
        for k, v in pairs(md) do
          local pair = #k .. ':' .. k .. '=' .. v
          redis.call('ZADD', k_metadata, 0, #pair .. ':' .. pair .. id)
        end
      end
      redis.call('HDEL', key, 'midx')
    end
  end
  redis.call('ZREM', k_candidates, unpack(ids))
  return {1}
end
-- HSCAN may answer no field from a sparse table: go on to the cursor's end
-- before concluding there is none.
local cursor, keys, fields = '0', {}, {}
repeat
  local scan = redis.call('HSCAN', k_metadata_pairs, cursor, 'COUNT', n)
  cursor = scan[1]
  for i = 1, #scan[2], 2 do
    keys[#keys + 1] = k_metadata_prefix .. scan[2][i]
    fields[#fields + 1] = scan[2][i]
  end
until cursor == '0' or #fields >= n
if #fields > 0 then
  for i = 1, #keys, 500 do
    redis.call('UNLINK', unpack(keys, i, math.min(i + 499, #keys)))
    redis.call('HDEL', k_metadata_pairs, unpack(fields, i, math.min(i + 499, #fields)))
  end
  return {1}
end
local old = {k_candidates, k_status_order, k_metadata_pairs, k_prefix_tmp, k_runs}
for _, s in ipairs({'not_started', 'running', 'completed'}) do old[#old + 1] = k_status_prefix .. s end
for _, k in ipairs(redis.call('HKEYS', k_kinds)) do old[#old + 1] = k_kind_prefix .. k end
redis.call('UNLINK', unpack(old))
redis.call('HSET', h, 'layout', '`+currentLayout+`')
return {0}
`)

// defaultUpgradeChunk is how many Candidates one upgradeLayoutScript call
// upgrades: about a millisecond of Redis.
const defaultUpgradeChunk = 500

// UpgradeLayout upgrades every Migration (and every one being deleted)
// written by an earlier layout of the keys, a chunk per script, and then
// records in layoutKey that all are; it returns how many it looked at (0
// when layoutKey said there was nothing to do). Each step may be repeated,
// by any number of servers at once. The server calls it at start (and
// again after a failure): a Redis of data written by Loom before layout 2
// is upgraded as it is first served.
func (s *Store) UpgradeLayout(ctx context.Context) (int, error) {
	v, err := s.rdb.Get(ctx, layoutKey()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("read the layout: %w", err)
	}
	if v == currentLayout {
		return 0, nil
	}
	var ids []string
	for _, index := range []string{migrationsKey(), deletingKey()} {
		got, err := s.rdb.ZRange(ctx, index, 0, -1).Result()
		if err != nil {
			return 0, fmt.Errorf("upgrade the layout: %w", err)
		}
		ids = append(ids, got...)
	}
	for _, id := range ids {
		if err := s.upgradeLayout(ctx, id); err != nil {
			return 0, err
		}
	}
	if err := s.rdb.Set(ctx, layoutKey(), currentLayout, 0).Err(); err != nil {
		return 0, fmt.Errorf("upgrade the layout: %w", err)
	}
	return len(ids), nil
}

// upgradeLayout upgrades Migration id (or its tombstone), a chunk per
// script, unless it is of the current layout already (one script call).
func (s *Store) upgradeLayout(ctx context.Context, id string) error {
	for {
		res, err := upgradeLayoutScript.run(ctx, s.rdb, id, "", nil, s.upgradeChunk).Slice()
		if err != nil {
			return fmt.Errorf("upgrade the layout of %s: %w", id, err)
		}
		more, err := replyCode(res)
		if err != nil {
			return fmt.Errorf("upgrade the layout of %s: %w", id, err)
		}
		if more == 0 {
			return nil
		}
	}
}
