package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// registry.go owns the Migrations themselves: put, get, list and delete a
// Migration (deleteMigrationScript drops every key of it), and the global
// index of Migration ids.

// putMigrationScript creates a Migration or replaces its definition.
//
//	KEYS k_migration, then the history KEYS (see historyLua; the block:
//	     no Candidate)
//	ARGV[1] def: canonical JSON migrationRecord
//	ARGV[2] now, unix milliseconds, then the history ARGV
//
// Records migration_announced or migration_updated. Creates the hash (def, ctime = utime = now, counters 0) when absent; when
// present and def differs, replaces def and sets utime = now; when def is
// identical, writes nothing. Never touches Candidates, nor the global index
// (another slot: the caller ZADDs it afterwards).
//
// Returns {created (0|1), updated (0|1), HGETALL of the hash after the change}.
var putMigrationScript = newHistoryScript(scriptKeys{ofMigration("k_migration", migrationKey)}, `
local cur = redis.call('HGET', k_migration, 'def')
local created, updated = 0, 0
if not cur then
  redis.call('HSET', k_migration, 'def', ARGV[1], 'ctime', ARGV[2], 'utime', ARGV[2],
    'n:not_started', 0, 'n:running', 0, 'n:completed', 0)
  created = 1
  -- The history of a deleted Migration of the same id was set to expire:
  -- it is this one's again.
  redis.call('PERSIST', k_events)
  redis.call('PERSIST', k_event_days)
  addEvent({k = 'migration_announced', t = ARGV[2]})
elseif cur ~= ARGV[1] then
  redis.call('HSET', k_migration, 'def', ARGV[1], 'utime', ARGV[2])
  updated = 1
  addEvent({k = 'migration_updated', t = ARGV[2]})
end
return {created, updated, redis.call('HGETALL', k_migration)}
`)

// PutMigration creates m or replaces its definition (see putMigrationScript).
// updated is true only when the definition changed; an identical re-announce
// writes nothing but the (idempotent) index entry.
func (s *Store) PutMigration(ctx context.Context, m migration.Migration, now time.Time) (stored migration.Migration, created, updated bool, err error) {
	def, err := encodeMigrationDef(m)
	if err != nil {
		return migration.Migration{}, false, false, err
	}
	res, err := putMigrationScript.run(ctx, s.rdb, m.ID, "", nil, s.withHistoryArgs(ctx, now, def, millis(now))...).Slice()
	if err != nil {
		return migration.Migration{}, false, false, fmt.Errorf("put migration %s: %w", m.ID, err)
	}
	if len(res) != 3 {
		return migration.Migration{}, false, false, fmt.Errorf("put migration %s: unexpected reply %v", m.ID, res)
	}
	c, err1 := replyInt(res[0])
	u, err2 := replyInt(res[1])
	h, err3 := replyFields(res[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return migration.Migration{}, false, false, fmt.Errorf("put migration %s: %w", m.ID, err)
	}
	// Always (not only on create): repairs an entry lost between the script
	// and this command by an earlier failure. See the package doc.
	if err := s.reindex(ctx, m.ID); err != nil {
		return migration.Migration{}, false, false, fmt.Errorf("put migration %s: index: %w", m.ID, err)
	}
	stored, err = decodeMigration(m.ID, h)
	if err != nil {
		return migration.Migration{}, false, false, err
	}
	return stored, c == 1, u == 1, nil
}

// GetMigration returns the Migration id with its Candidate counts.
func (s *Store) GetMigration(ctx context.Context, id string) (migration.Migration, error) {
	h, err := s.rdb.HGetAll(ctx, migrationKey(id)).Result()
	if err != nil {
		return migration.Migration{}, fmt.Errorf("get migration %s: %w", id, err)
	}
	if len(h) == 0 {
		return migration.Migration{}, migration.MigrationNotFound(id)
	}
	return decodeMigration(id, h)
}

// ListMigrations returns the page of Migrations whose ids sort after
// page.After, in id order, with their counts. A page may hold fewer than
// page.Limit Migrations when index entries name deleted Migrations (they are
// skipped); Next is then still the last id of the page's window, so paging
// always moves forward. page.Limit ≤ 0 means
// migration.DefaultMigrationPageSize.
func (s *Store) ListMigrations(ctx context.Context, page migration.PageRequest) (migration.MigrationPage, error) {
	limit := page.Limit
	if limit <= 0 {
		limit = migration.DefaultMigrationPageSize
	}
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key:   migrationsKey(),
		Start: lexAfter(page.After),
		Stop:  "+",
		ByLex: true,
		Count: int64(limit) + 1,
	}).Result()
	if err != nil {
		return migration.MigrationPage{}, fmt.Errorf("list migrations: %w", err)
	}
	var out migration.MigrationPage
	if len(ids) > limit {
		ids = ids[:limit]
		out.Next = ids[limit-1]
	}
	if len(ids) == 0 {
		return out, nil
	}
	// One pipeline; on Redis Cluster go-redis splits it per node.
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, migrationKey(id))
		}
		return nil
	})
	if err != nil {
		return migration.MigrationPage{}, fmt.Errorf("list migrations: %w", err)
	}
	for i, id := range ids {
		h := cmds[i].Val()
		if len(h) == 0 {
			continue // deleted; its index entry is about to go (see package doc)
		}
		m, err := decodeMigration(id, h)
		if err != nil {
			return migration.MigrationPage{}, fmt.Errorf("list migrations: %w", err)
		}
		out.Migrations = append(out.Migrations, m)
	}
	return out, nil
}

// lexAfter is the ZRANGE BYLEX lower bound of the ids strictly after after;
// "" means from the first.
func lexAfter(after string) string {
	if after == "" {
		return "-"
	}
	return "(" + after
}

// deleteMigrationKeys are the KEYS of deleteMigrationScript. A _prefix key
// is there for the keys the script builds from it by appending what it
// reads (ids, kinds, step names, metadata pairs) or what it knows (every
// Candidate, Run and step status): each is in the Migration's slot, as the
// prefix carries its hash tag (see script.go). These keys cannot be
// declared one by one: which exist is read inside the script (the ids of
// k_candidates and k_runs, the kinds, step names and metadata pairs
// counted), and reading them first, in another call, would let a writer
// add one between the two calls that the delete then leaves behind.
var deleteMigrationKeys = scriptKeys{
	ofMigration("k_migration", migrationKey),
	ofMigration("k_candidates", candidatesKey),
	ofMigration("k_kinds", kindsKey),
	ofMigration("k_candidate_prefix", candidateKeyPrefix),      // + each id of k_candidates
	ofMigration("k_status_prefix", statusIndexPrefix),          // + each Candidate status
	ofMigration("k_kind_prefix", kindIndexPrefix),              // + each kind of k_kinds
	ofMigration("k_status_kind_prefix", statusKindIndexPrefix), // + each status ':' kind
	ofMigration("k_run_prefix", runKeyPrefix),                  // + each id of k_runs
	ofMigration("k_runs", runsKey),
	ofMigration("k_dispatch_failing", runDispatchFailingKey),
	ofMigration("k_run_status_prefix", runStatusIndexPrefix),          // + each Run status
	ofMigration("k_run_step_prefix", runStepIndexPrefix),              // + each step status
	ofMigration("k_run_status_step_prefix", runStatusStepIndexPrefix), // + each Run status ':' step status
	ofMigration("k_metrics", metricsKey),
	ofMigration("k_burndown", burndownKey),
	ofMigration("k_failures", failuresKey),
	ofMigration("k_activity", activityKey),
	ofMigration("k_status_order", statusOrderKey),
	ofMigration("k_step_order", stepOrderKey),
	ofMigration("k_step_names", stepNamesKey),
	ofMigration("k_current_step_prefix", currentStepIndexPrefix), // + each step name of k_step_names
	ofMigration("k_metadata_pairs", metadataPairsKey),
	ofMigration("k_metadata_prefix", metadataIndexPrefix), // + each pair of k_metadata_pairs
	ofMigration("k_list_tmp", listTempKey),
	ofMigration("k_list_prefix_tmp", listPrefixTempKey),
	ofMigration("k_candidate_events_prefix", candidateEventsPrefix), // + each id of k_candidates: its stream, to expire
}

// deleteMigrationScript removes a Migration and everything stored under its
// hash tag, unless one of its Candidates is running.
//
//	KEYS deleteMigrationKeys, then the history KEYS (k_change, the last
//	     change of each Candidate, is one of them)
//	ARGV[1] now (unix ms), then the history ARGV
//
// The history is kept: migration_deleted is its last event, and the streams
// expire once older than the age limit.
//
// Returns {replyMigrationNotFound} when the Migration hash does not exist,
// {replyHasRunning, n} when its n:running counter is above 0 (nothing is
// deleted), else {replyOK, number of Candidates deleted}.
//
// Keys are UNLINKed (memory is freed off the main thread) in groups of 500,
// under Lua's unpack limit. The script walks every Candidate id, so it costs
// O(Candidates); it is the one operation whose cost grows with the Migration
// (measured: ≈ 240 ms, during which Redis serves no one else, for 100,000
// Candidates on a 2-core machine). It stays one script so that "refuse while
// running" and the delete are one atomic step; should that pause matter, the
// remedy is a two-step delete (atomically mark the Migration deleted, then
// UNLINK in batches). The caller ZREMs the id from the global index
// afterwards.
var deleteMigrationScript = newHistoryScript(deleteMigrationKeys, `
if redis.call('EXISTS', k_migration) == 0 then return {1} end
local running = tonumber(redis.call('HGET', k_migration, 'n:running') or '0')
if running > 0 then return {3, running} end

local batch = {}
local function unlink(key)
  batch[#batch + 1] = key
  if #batch == 500 then
    redis.call('UNLINK', unpack(batch))
    batch = {}
  end
end

local ids = redis.call('ZRANGE', k_candidates, 0, -1)
for _, id in ipairs(ids) do unlink(k_candidate_prefix .. id) end

local kinds = redis.call('HKEYS', k_kinds)
for _, s in ipairs({'not_started', 'running', 'completed'}) do
  unlink(k_status_prefix .. s)
  for _, k in ipairs(kinds) do unlink(k_status_kind_prefix .. s .. ':' .. k) end
end
for _, k in ipairs(kinds) do unlink(k_kind_prefix .. k) end

for _, id in ipairs(redis.call('ZRANGE', k_runs, 0, -1)) do unlink(k_run_prefix .. id) end
local stepStatuses = {'in_progress', 'open', 'merged', 'awaiting_review', 'completed', 'failed', 'skipped'}
for _, r in ipairs({'running', 'completed', 'cancelled'}) do
  unlink(k_run_status_prefix .. r)
  for _, t in ipairs(stepStatuses) do unlink(k_run_status_step_prefix .. r .. ':' .. t) end
end
for _, t in ipairs(stepStatuses) do unlink(k_run_step_prefix .. t) end
unlink(k_dispatch_failing)
unlink(k_runs)
for _, k in ipairs({k_metrics, k_burndown, k_failures, k_activity}) do unlink(k) end
for _, name in ipairs(redis.call('HKEYS', k_step_names)) do unlink(k_current_step_prefix .. name) end
for _, pair in ipairs(redis.call('HKEYS', k_metadata_pairs)) do unlink(k_metadata_prefix .. pair) end
for _, k in ipairs({k_status_order, k_step_order, k_step_names, k_metadata_pairs, k_list_tmp, k_list_prefix_tmp}) do unlink(k) end
unlink(k_change)
addEvent({k = 'migration_deleted', t = ARGV[1]})
local ttl = tonumber(ARGV[1]) - tonumber(h_min_id)
if ttl < 1000 then ttl = 1000 end
redis.call('PEXPIRE', k_events, ttl)
redis.call('PEXPIRE', k_event_days, ttl)
for _, id in ipairs(ids) do redis.call('PEXPIRE', k_candidate_events_prefix .. id, ttl) end

unlink(k_candidates)
unlink(k_kinds)
unlink(k_migration)
if #batch > 0 then redis.call('UNLINK', unpack(batch)) end
return {0, #ids}
`)

// DeleteMigration removes the Migration id, its Candidates, their indexes
// and its run views (see deleteMigrationScript), refusing while a
// Candidate is running. It returns the number of Candidates deleted.
func (s *Store) DeleteMigration(ctx context.Context, id string, now time.Time) (int64, error) {
	res, err := deleteMigrationScript.run(ctx, s.rdb, id, "", nil, s.withHistoryArgs(ctx, now, millis(now))...).Slice()
	if err != nil {
		return 0, fmt.Errorf("delete migration %s: %w", id, err)
	}
	code, err := replyCode(res)
	if err != nil {
		return 0, fmt.Errorf("delete migration %s: %w", id, err)
	}
	switch code {
	case replyMigrationNotFound:
		// Drop a stale index entry if one was left by a crash; best effort,
		// the answer is "not found" either way.
		_ = s.reindex(ctx, id)
		return 0, migration.MigrationNotFound(id)
	case replyHasRunning:
		n, _ := replyIntAt(res, 1)
		return 0, migration.FailedPrecondition(migration.ReasonMigrationHasRunning,
			"migration %q has %d running candidates", id, n).
			With("migration_id", id).With("running_candidates", strconv.FormatInt(n, 10))
	case replyOK:
	default:
		return 0, fmt.Errorf("delete migration %s: unexpected reply %v", id, res)
	}
	n, err := replyIntAt(res, 1)
	if err != nil {
		return 0, fmt.Errorf("delete migration %s: %w", id, err)
	}
	if s.afterDeleteScript != nil {
		s.afterDeleteScript(id)
	}
	if err := s.deleteRollouts(ctx, id); err != nil {
		return 0, fmt.Errorf("delete migration %s: rollouts: %w", id, err)
	}
	if err := s.reindex(ctx, id); err != nil {
		return 0, fmt.Errorf("delete migration %s: index: %w", id, err)
	}
	return n, nil
}

// reindex makes the global index entry of id agree with whether the
// Migration exists, after a script that created or deleted it. Puts and
// deletes of one id may interleave between their scripts and these commands
// (see the package doc), so it writes what it read, then reads again and
// repeats while the Migration changed meanwhile: whichever reindex writes
// last has read the final state, so the index converges once the writers are
// quiet.
func (s *Store) reindex(ctx context.Context, id string) error {
	for {
		before, err := s.rdb.Exists(ctx, migrationKey(id)).Result()
		if err != nil {
			return err
		}
		if before > 0 {
			err = s.rdb.ZAdd(ctx, migrationsKey(), redis.Z{Member: id}).Err()
		} else {
			err = s.rdb.ZRem(ctx, migrationsKey(), id).Err()
		}
		if err != nil {
			return err
		}
		after, err := s.rdb.Exists(ctx, migrationKey(id)).Result()
		if err != nil {
			return err
		}
		if after == before {
			return nil
		}
	}
}
