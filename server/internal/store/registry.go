package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// registry.go owns the Migrations themselves: put, get, list and delete a
// Migration (a tombstone at once, then its keys swept away in chunks), and
// the global indexes of Migration ids (all, and those being swept).

// putMigrationScript creates a Migration or replaces its definition.
//
//	KEYS k_migration, k_tombstone, k_kinds, then the history KEYS (see historyLua;
//	     the block: no Candidate)
//	ARGV[1] def: canonical JSON migrationRecord
//	ARGV[2] now, unix milliseconds, then the history ARGV
//
// Records migration_announced or migration_updated. Creates the hash (def, ctime = utime = now, counters 0) when absent; when
// present and def differs, replaces def and sets utime = now; when def is
// identical, writes nothing. Never touches Candidates, nor the global index
// (another slot: the caller ZADDs it afterwards).
//
// Returns {replyBeingDeleted} while a Migration of the id is being swept
// away (nothing is written), else {created (0|1), updated (0|1), HGETALL of
// the hash after the change, HGETALL of k_kinds}.
var putMigrationScript = newHistoryScript(scriptKeys{
	ofMigration("k_migration", migrationKey),
	ofMigration("k_tombstone", tombstoneKey),
	ofMigration("k_kinds", kindsKey),
}, `
if redis.call('EXISTS', k_tombstone) == 1 then return {8} end
local cur = redis.call('HGET', k_migration, 'def')
local created, updated = 0, 0
if not cur then
  redis.call('HSET', k_migration, 'def', ARGV[1], 'ctime', ARGV[2], 'utime', ARGV[2],
    'n:not_started', 0, 'n:running', 0, 'n:completed', 0, 'layout', '`+currentLayout+`')
  created = 1
  -- The history of a deleted Migration of the same id was set to expire:
  -- it is this one's again, and so are its Candidates' streams, which
  -- submitScript then persists one by one (reborn).
  if redis.call('PERSIST', k_events) == 1 then redis.call('HSET', k_migration, 'reborn', 1) end
  redis.call('PERSIST', k_event_days)
  addEvent({k = 'migration_announced', t = ARGV[2]})
elseif cur ~= ARGV[1] then
  redis.call('HSET', k_migration, 'def', ARGV[1], 'utime', ARGV[2])
  updated = 1
  addEvent({k = 'migration_updated', t = ARGV[2]})
end
return {created, updated, redis.call('HGETALL', k_migration), redis.call('HGETALL', k_kinds)}
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
	if code, _ := replyCode(res); len(res) == 1 && code == replyBeingDeleted {
		// Resume a sweep cut short, so that the announce's retry succeeds.
		s.sweepSoon(ctx, m.ID)
		return migration.Migration{}, false, false, migration.Unavailable(migration.ReasonMigrationBeingDeleted,
			"migration %q is being deleted: announce it again in a few seconds", m.ID).With("migration_id", m.ID)
	}
	if len(res) != 4 {
		return migration.Migration{}, false, false, fmt.Errorf("put migration %s: unexpected reply %v", m.ID, res)
	}
	c, err1 := replyInt(res[0])
	u, err2 := replyInt(res[1])
	h, err3 := replyFields(res[2])
	kinds, err4 := replyFields(res[3])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return migration.Migration{}, false, false, fmt.Errorf("put migration %s: %w", m.ID, err)
	}
	// Always (not only on create): repairs an entry lost between the script
	// and this command by an earlier failure. See the package doc.
	if err := s.reindex(ctx, m.ID); err != nil {
		return migration.Migration{}, false, false, fmt.Errorf("put migration %s: index: %w", m.ID, err)
	}
	stored, err = withKinds(m.ID, h, kinds)
	if err != nil {
		return migration.Migration{}, false, false, err
	}
	return stored, c == 1, u == 1, nil
}

// GetMigration returns the Migration id with its Candidate counts, by
// status and by kind.
func (s *Store) GetMigration(ctx context.Context, id string) (migration.Migration, error) {
	var mig, kinds *redis.MapStringStringCmd
	// Both keys are in the Migration's slot: one MULTI, one consistent read.
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		mig = p.HGetAll(ctx, migrationKey(id))
		kinds = p.HGetAll(ctx, kindsKey(id))
		return nil
	})
	if err != nil {
		return migration.Migration{}, fmt.Errorf("get migration %s: %w", id, err)
	}
	if len(mig.Val()) == 0 {
		return migration.Migration{}, migration.MigrationNotFound(id)
	}
	return withKinds(id, mig.Val(), kinds.Val())
}

// ListMigrations returns the page of Migrations whose ids sort after
// page.After, in id order, with their counts (by status and kind). A page may hold fewer than
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
	kinds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, migrationKey(id))
			kinds[i] = p.HGetAll(ctx, kindsKey(id))
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
		m, err := withKinds(id, h, kinds[i].Val())
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

// Deleting a Migration takes two kinds of script, so that Redis is never
// held for long however large the Migration: deleteMigrationScript, O(1),
// makes it disappear at once (its hash renamed to a tombstone: every script
// then finds no Migration, and an announce of the same id is refused until
// the sweep ends), then sweepDeletedScript removes its keys a bounded chunk
// at a time, each call a script of its own between which Redis serves
// everyone else. The global deletingKey lists the Migrations still being
// swept, so that a sweep cut short is resumed (SweepDeleted).

// deleteMigrationScript makes a Migration disappear, unless one of its
// Candidates is running.
//
//	KEYS k_migration, k_tombstone, k_kinds, then the history KEYS
//	ARGV[1] now (unix ms), then the history ARGV
//
// The history is kept: migration_deleted is its last event, and the
// Migration's streams expire once older than the age limit (the
// Candidates' streams are set to expire by the sweep).
//
// Returns {replyMigrationNotFound} when the Migration hash does not exist,
// {replyHasRunning, n} when its n:running counter is above 0 (nothing is
// changed), else {replyOK, number of its Candidates}.
var deleteMigrationScript = newHistoryScript(scriptKeys{
	ofMigration("k_migration", migrationKey),
	ofMigration("k_tombstone", tombstoneKey),
}, `
if redis.call('EXISTS', k_migration) == 0 then return {1} end
local running = tonumber(redis.call('HGET', k_migration, 'n:running') or '0')
if running > 0 then return {3, running} end
local ttl = tonumber(ARGV[1]) - tonumber(h_min_id)
if ttl < 1000 then ttl = 1000 end
redis.call('RENAME', k_migration, k_tombstone)
redis.call('HSET', k_tombstone, 'dtime', ARGV[1], 'ttl', ttl)
addEvent({k = 'migration_deleted', t = ARGV[1]})
redis.call('PEXPIRE', k_events, ttl)
redis.call('PEXPIRE', k_event_days, ttl)
local n = 0
for _, st in ipairs({'not_started', 'running', 'completed'}) do n = n + tonumber(redis.call('HGET', k_tombstone, 'n:' .. st) or '0') end
return {0, n}
`)

// sweepKeys are the KEYS of sweepDeletedScript. A _prefix key is there for
// the keys the script builds from it by appending what it reads (ids,
// kinds, step names, metadata pairs) or what it knows (every Candidate, Run
// and step status): each is in the Migration's slot, as the prefix carries
// its hash tag (see script.go). They cannot be declared one by one, as
// which exist is read inside the script; no writer adds one meanwhile, as
// every script that writes finds no Migration once it is a tombstone.
var sweepKeys = scriptKeys{
	ofMigration("k_tombstone", tombstoneKey),
	ofMigration("k_kinds", kindsKey),
	ofMigration("k_candidate_prefix", candidateKeyPrefix),           // + each id of the status×kind indexes
	ofMigration("k_candidate_events_prefix", candidateEventsPrefix), // + each id of them: its stream, to expire
	ofMigration("k_status_kind_prefix", statusKindIndexPrefix),      // + each status ':' kind
	ofMigration("k_run_prefix", runKeyPrefix),                       // + each id of k_runs and of the Run status indexes
	ofMigration("k_runs", runsKey),                                  // written before the Run status indexes were enough
	ofMigration("k_dispatch_failing", runDispatchFailingKey),
	ofMigration("k_run_status_prefix", runStatusIndexPrefix),          // + each Run status
	ofMigration("k_run_step_prefix", runStepIndexPrefix),              // + each step status
	ofMigration("k_run_status_step_prefix", runStatusStepIndexPrefix), // + each Run status ':' step status
	ofMigration("k_metrics", metricsKey),
	ofMigration("k_burndown", burndownKey),
	ofMigration("k_failures", failuresKey),
	ofMigration("k_activity", activityKey),
	ofMigration("k_step_order", stepOrderKey),
	ofMigration("k_change", changeIndexKey),
	ofMigration("k_step_names", stepNamesKey),
	ofMigration("k_current_step_prefix", currentStepIndexPrefix), // + each step name of k_step_names
	ofMigration("k_metadata", metadataIndexKey),
	ofMigration("k_list_tmp", listTempKey),
}

// sweepDeletedScript removes one chunk of the keys of a deleted Migration
// (one whose tombstone exists).
//
//	KEYS sweepKeys
//	ARGV[1] the most Candidates (or Runs) to remove
//
// In order, one kind per call: ARGV[1] Candidates, from the status×kind
// indexes (their hash UNLINKed, their stream set to expire with the
// Migration's history, their id removed from the index); then the Run
// views, from the Run status indexes (and k_runs of Migrations from before
// those were enough), which list every one: a Candidate's chunk names no
// run view of its own, as most Candidates of a large Migration have none,
// and each name was a write of the append-only file; then, at once, the
// remaining keys (indexes of statuses, steps and metadata, orders, metrics:
// a few dozen keys, large ones freed off Redis's main thread by UNLINK) and
// the tombstone.
//
// Returns {1} when there is more to sweep, {0} when the Migration is gone
// (or was never deleted).
//
// A call holds Redis for as long as it runs, and the same chunk costs far
// more at times (see sweepChunkTarget): sweepDeleted sizes each call's
// chunk by how long the last took, and calls none while Redis runs a fork
// child (see waitForkChild).
var sweepDeletedScript = newKeyedScript(sweepKeys, `
if redis.call('EXISTS', k_tombstone) == 0 then return {0} end
local n = tonumber(ARGV[1])
local ttl = tonumber(redis.call('HGET', k_tombstone, 'ttl') or '1000')
local statuses = {'not_started', 'running', 'completed'}
local kinds = redis.call('HKEYS', k_kinds)

for _, k in ipairs(kinds) do
  for _, st in ipairs(statuses) do
    local index = k_status_kind_prefix .. st .. ':' .. k
    local ids = redis.call('ZRANGE', index, 0, n - 1)
    if #ids > 0 then
      local keys = {}
      for _, id in ipairs(ids) do
        keys[#keys + 1] = k_candidate_prefix .. id
        redis.call('PEXPIRE', k_candidate_events_prefix .. id, ttl)
      end
      redis.call('UNLINK', unpack(keys))
      redis.call('ZREM', index, unpack(ids))
      return {1}
    end
  end
end
-- Every Run view is in the index of its status (and, if written before
-- those were enough, in k_runs).
for _, index in ipairs({k_runs, k_run_status_prefix .. 'running', k_run_status_prefix .. 'completed',
    k_run_status_prefix .. 'cancelled'}) do
  local runs = redis.call('ZRANGE', index, 0, n - 1)
  if #runs > 0 then
    local keys = {}
    for _, id in ipairs(runs) do keys[#keys + 1] = k_run_prefix .. id end
    redis.call('UNLINK', unpack(keys))
    redis.call('ZREM', index, unpack(runs))
    return {1}
  end
end

local keys = {}
local stepStatuses = {'in_progress', 'open', 'merged', 'awaiting_review', 'completed', 'failed', 'skipped'}
for _, r in ipairs({'running', 'completed', 'cancelled'}) do
  keys[#keys + 1] = k_run_status_prefix .. r
  for _, t in ipairs(stepStatuses) do keys[#keys + 1] = k_run_status_step_prefix .. r .. ':' .. t end
end
for _, t in ipairs(stepStatuses) do keys[#keys + 1] = k_run_step_prefix .. t end
for _, name in ipairs(redis.call('HKEYS', k_step_names)) do keys[#keys + 1] = k_current_step_prefix .. name end
for _, k in ipairs({k_dispatch_failing, k_runs, k_metrics, k_burndown, k_failures, k_activity,
    k_step_order, k_change, k_step_names, k_metadata, k_list_tmp, k_kinds, k_tombstone}) do
  keys[#keys + 1] = k
end
for i = 1, #keys, 500 do
  redis.call('UNLINK', unpack(keys, i, math.min(i + 499, #keys)))
end
return {0}
`)

// sweepChunk is the most Candidates (or Runs) one call of
// sweepDeletedScript removes, and the chunk a sweep starts with: about a
// millisecond of Redis's time when all goes well. sweepDeleted makes it
// smaller while calls take longer than sweepChunkTarget.
const sweepChunk = 250

// sweepChunkTarget is the longest a call of sweepDeletedScript should take,
// timed as its round trip. The chunk is what holds Redis, and the same
// chunk costs ten times more at times: with appendfsync always, Redis
// syncs the chunk's writes to disk before it serves anyone else (an fsync
// of a slow disk was seen to take 20 ms), and while a fork child runs
// every page the chunk touches is copied first. A call slower than the
// target halves the next chunk (down to sweepChunkMin); one faster than
// half of it makes the next half as large again (up to sweepChunk). The
// round trip also counts the network and, when writes wait for replicas,
// their WAIT: a chunk made smaller for those only makes the sweep slower.
const sweepChunkTarget = 4 * time.Millisecond

// sweepChunkMin is the smallest chunk: below it a call's cost is mostly its
// fixed part (the round trip, the fsync of however few writes), so smaller
// chunks would only make the sweep longer.
const sweepChunkMin = 25

// nextSweepChunk is the chunk after a call of n that took took (see
// sweepChunkTarget).
func nextSweepChunk(n int, took time.Duration) int {
	switch {
	case took > sweepChunkTarget:
		return max(n/2, sweepChunkMin)
	case took < sweepChunkTarget/2:
		return min(n+n/2, sweepChunk)
	}
	return n
}

// forkPoll is how often a sweep waiting for Redis's fork child to end
// looks again (see forkChildRunning).
const forkPoll = 50 * time.Millisecond

// sweepPause is the rest between two chunks of a sweep. Back to back, the
// chunks of a large delete kept Redis busy and its disk syncing the
// append-only file's writes ~400 times a second: with appendfsync always,
// one fsync held Redis for up to 17 ms (loom-bench -scale, 100,000
// Candidates, Redis's latency monitor). Paced, the longest was 7 ms in one
// run and 14 ms in another (the disk's own jitter), a reader of another
// Migration got six times as many answers during the sweep, and the sweep
// took 1.7 s instead of 0.9 s.
const sweepPause = 2 * time.Millisecond

// DeleteMigration makes the Migration id disappear at once, refusing while
// a Candidate is running (see deleteMigrationScript), then sweeps its keys
// away in chunks (sweepDeletedScript). It returns the number of Candidates
// deleted. A sweep cut short by an error is not the caller's: the
// Migration is deleted, and SweepDeleted finishes the sweep later.
func (s *Store) DeleteMigration(ctx context.Context, id string, now time.Time) (int64, error) {
	// Listed first, so that a crash after the delete leaves it to resume.
	if err := s.rdb.ZAdd(ctx, deletingKey(), redis.Z{Score: float64(millis(now)), Member: id}).Err(); err != nil {
		return 0, fmt.Errorf("delete migration %s: %w", id, err)
	}
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
		// Finish a sweep of an earlier delete, if one is pending, and drop a
		// stale index entry left by a crash (sweepDeleted does both); best
		// effort, the answer is "not found" either way.
		s.sweepSoon(ctx, id)
		return 0, migration.MigrationNotFound(id)
	case replyHasRunning:
		_ = s.rdb.ZRem(ctx, deletingKey(), id).Err() // nothing to sweep
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
	// The Migration is deleted: what remains is cleaning up, which
	// SweepDeleted finishes should it be cut short here.
	_ = s.rdb.ZAdd(ctx, deletingKey(), redis.Z{Score: float64(millis(now)), Member: id}).Err()
	s.sweepSoon(ctx, id)
	return n, nil
}

// sweepSoon has the keys of the deleted Migration id swept: by the server's
// sweeper when there is one (SweepDeletesLater), as no caller's answer is
// the sweep's to wait for (it waits out Redis's fork children, see
// waitForkChild); else here, best effort (SweepDeleted finishes it).
func (s *Store) sweepSoon(ctx context.Context, id string) {
	if s.sweepLater != nil {
		s.sweepLater(id)
		return
	}
	_ = s.sweepDeleted(ctx, id)
}

// SweepDeletesLater makes DeleteMigration answer once the Migration is a
// tombstone, gone from every read, and tell kick instead of sweeping its
// keys itself: kick's side runs SweepDeleted (the server's sweeper, which
// also finishes sweeps cut short). A sweep of a million Candidates takes
// seconds, paced; the caller's deadline, or its patience, is not the
// sweep's. Call it before the Store is used.
func (s *Store) SweepDeletesLater(kick func(id string)) { s.sweepLater = kick }

// sweepDeleted removes the keys of the deleted Migration id, a chunk per
// script, its rollouts and its index entry, then unlists it from
// deletingKey. Each step may be repeated.
func (s *Store) sweepDeleted(ctx context.Context, id string) error {
	if err := s.reindex(ctx, id); err != nil {
		return fmt.Errorf("sweep deleted migration %s: index: %w", id, err)
	}
	// Its rollouts first, while the tombstone keeps the id from being
	// announced again (a new Migration's rollouts are its own).
	if tomb, err := s.rdb.Exists(ctx, tombstoneKey(id)).Result(); err != nil {
		return fmt.Errorf("sweep deleted migration %s: %w", id, err)
	} else if tomb == 1 {
		if err := s.deleteRollouts(ctx, id); err != nil {
			return fmt.Errorf("sweep deleted migration %s: rollouts: %w", id, err)
		}
	}
	// A Migration of an earlier layout has keys this sweep does not know.
	if err := s.upgradeLayout(ctx, id); err != nil {
		return fmt.Errorf("sweep deleted migration %s: %w", id, err)
	}
	chunk := sweepChunk
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return fmt.Errorf("sweep deleted migration %s: %w", id, ctx.Err())
			case <-time.After(sweepPause):
			}
		}
		if err := s.waitForkChild(ctx, id); err != nil {
			return fmt.Errorf("sweep deleted migration %s: %w", id, err)
		}
		start := time.Now()
		res, err := sweepDeletedScript.run(ctx, s.rdb, id, "", nil, chunk).Slice()
		chunk = nextSweepChunk(chunk, time.Since(start))
		if err != nil {
			return fmt.Errorf("sweep deleted migration %s: %w", id, err)
		}
		more, err := replyCode(res)
		if err != nil {
			return fmt.Errorf("sweep deleted migration %s: %w", id, err)
		}
		if more == 0 {
			break
		}
	}
	if err := s.rdb.ZRem(ctx, deletingKey(), id).Err(); err != nil {
		return fmt.Errorf("sweep deleted migration %s: %w", id, err)
	}
	return nil
}

// waitForkChild returns once the Redis node holding the keys of Migration
// id runs no fork child (see forkChildRunning), looking every forkPoll, or
// with ctx's error. While a child runs (an append-only file rewrite, a
// BGSAVE, a full sync to a replica), every page Redis writes is copied
// first: a chunk of the sweep was seen to take 42-64 ms then instead of
// 1-3, and plain O(1) commands 16-22 ms. The sweep is background work; it
// waits for the child, however long it runs.
func (s *Store) waitForkChild(ctx context.Context, id string) error {
	for {
		node, err := s.nodeOf(ctx, tombstoneKey(id))
		if err != nil {
			return err
		}
		running, err := forkChildRunning(ctx, node)
		if err != nil || !running {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(forkPoll):
		}
	}
}

// nodeOf is the Redis node that holds key: on a Redis Cluster, the master
// of its slot; else the client itself.
func (s *Store) nodeOf(ctx context.Context, key string) (redis.Cmdable, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return s.rdb, nil
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		if u := unreachable(err); u != nil {
			return nil, u
		}
		return nil, err
	}
	return node, nil
}

// forkChildRunning reports whether node runs a fork child: INFO
// persistence says an append-only file rewrite, a BGSAVE (also the one of
// a full sync to a replica) or a module's fork is in progress.
func forkChildRunning(ctx context.Context, node redis.Cmdable) (bool, error) {
	info, err := node.Info(ctx, "persistence").Result()
	if err != nil {
		if u := unreachable(err); u != nil {
			return false, u
		}
		return false, fmt.Errorf("read redis persistence: %w", err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		switch strings.TrimSpace(line) {
		case "aof_rewrite_in_progress:1", "rdb_bgsave_in_progress:1", "module_fork_in_progress:1":
			return true, nil
		}
	}
	return false, nil
}

// SweepDeleted finishes the sweeps of deleted Migrations that were cut
// short (the server calls it at start and then now and then). It returns
// how many it finished.
func (s *Store) SweepDeleted(ctx context.Context) (int, error) {
	ids, err := s.rdb.ZRange(ctx, deletingKey(), 0, -1).Result()
	if err != nil {
		return 0, fmt.Errorf("list deleted migrations: %w", err)
	}
	done := 0
	for _, id := range ids {
		if err := s.sweepDeleted(ctx, id); err != nil {
			return done, err
		}
		done++
	}
	return done, nil
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
