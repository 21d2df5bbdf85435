package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// dispatch.go owns the dispatch failures shown on a run view: recording
// and clearing them.

// A dispatch that keeps failing is shown on the Run's view: its failures
// live in the run view's hash beside the view the workflow writes (field
// dfail, a dispatchFailure), and its Candidate in runDispatchFailingKey.
// The dispatch activity records them (it is the one that sees each try
// fail), so they cost the Run's history nothing; saveRunScript drops them
// when the view moves past the attempt, and the activity when the Migrator
// finally accepts it.

// dispatchFailure is the dfail field of a run view's hash.
type dispatchFailure struct {
	Execution int64  `json:"x"`
	Step      string `json:"s"`
	Failures  int    `json:"n"`
	Error     string `json:"e"`
	Next      int64  `json:"next"` // unix ms
}

// recordDispatchFailureScript appends a dispatch_failed event and, while
// the run view still has this attempt's step in progress, counts the
// failure on it.
//
//	KEYS k_migration, k_activity, k_run (the run view of c),
//	     k_dispatch_failing, then the history KEYS (the block: c)
//	ARGV[1] c, ARGV[2] the execution, ARGV[3] the step, ARGV[4] the next
//	try (unix ms), ARGV[5] the error, ARGV[6] runChannel(m, c), ARGV[7] the
//	event: a JSON array of one {k, t, c, r, x, s, a, by, d}; then the
//	history ARGV
//
// Returns {replyMigrationNotFound} or {replyOK, 1 when the view counts it
// else 0}.
var recordDispatchFailureScript = newHistoryScript(scriptKeys{
	ofMigration("k_migration", migrationKey),
	ofMigration("k_activity", activityKey),
	ofCandidate("k_run", runKey),
	ofMigration("k_dispatch_failing", runDispatchFailingKey),
}, `
if redis.call('EXISTS', k_migration) == 0 then return {1} end
for _, e in ipairs(cjson.decode(ARGV[7])) do
  addEvent(e)
  redis.call('ZADD', k_activity, 'XX', e.t, e.c)
end
local x = tonumber(ARGV[2])
local r = redis.call('HMGET', k_run, 'exec', 'status', 'step', 'cstep', 'dfail')
if tonumber(r[1] or '0') ~= x or r[2] ~= 'running' or r[3] ~= 'in_progress' or r[4] ~= ARGV[3] then return {0, 0} end
local n = 1
if r[5] then
  local d = cjson.decode(r[5])
  if d.x == x and d.s == ARGV[3] then n = d.n + 1 end
end
redis.call('HSET', k_run, 'dfail', cjson.encode({x = x, s = ARGV[3], n = n, e = ARGV[5], next = tonumber(ARGV[4])}))
redis.call('ZADD', k_dispatch_failing, 0, ARGV[1])
redis.call('PUBLISH', ARGV[6], redis.call('HINCRBY', k_run, 'ver', 1))
return {0, 1}
`)

// clearDispatchFailureScript drops the failures of a dispatch the Migrator
// accepted.
//
//	KEYS[1] runKey(m, c), KEYS[2] runDispatchFailingKey(m)
//	ARGV[1] c, ARGV[2] the execution, ARGV[3] the step, ARGV[4] runChannel
//
// Returns 1 when there were failures to drop, else 0.
var clearDispatchFailureScript = redis.NewScript(`
local d = redis.call('HGET', KEYS[1], 'dfail')
if not d then return 0 end
local f = cjson.decode(d)
if f.x ~= tonumber(ARGV[2]) or f.s ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], 'dfail')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[4], redis.call('HINCRBY', KEYS[1], 'ver', 1))
return 1
`)

// RecordDispatchFailure records a failed try to hand a step to its
// Migrator: ev, a dispatch_failed event, in the history, and, while the
// Run's view still has ev's step in progress, the failure on the view (one
// more, its error, the next try at next) and in ListRuns' dispatch-failing
// filter.
func (s *Store) RecordDispatchFailure(ctx context.Context, ev migration.Event, next time.Time) error {
	m, c := ev.MigrationID, ev.CandidateID
	enc, err := encodeEvents([]migration.Event{ev})
	if err != nil {
		return err
	}
	res, err := recordDispatchFailureScript.run(ctx, s.rdb, m, c, candidateList(c),
		s.withHistoryArgs(ctx, ev.Time, c, ev.Execution, ev.Step, millis(next), ev.Details["reason"], runChannel(m, c), enc)...).Slice()
	if err != nil {
		return fmt.Errorf("record a dispatch failure of %s/%s: %w", m, c, err)
	}
	if code, _ := replyCode(res); code == replyMigrationNotFound {
		return migration.MigrationNotFound(m)
	}
	return nil
}

// ClearDispatchFailure drops the failures recorded for step of execution
// exec of the Run of c, once its Migrator accepted the dispatch.
func (s *Store) ClearDispatchFailure(ctx context.Context, m, c string, exec int64, step string) error {
	err := clearDispatchFailureScript.Run(ctx, s.rdb, []string{runKey(m, c), runDispatchFailingKey(m)},
		c, exec, step, runChannel(m, c)).Err()
	if err != nil {
		return fmt.Errorf("clear the dispatch failures of %s/%s: %w", m, c, err)
	}
	return nil
}

// withDispatchFailure sets on r's current step the failures of the dfail
// field of its hash, when they are about that step of r's execution.
func withDispatchFailure(r *migration.Run, field string) {
	c := r.Current()
	if field == "" || c == nil || r.Status != migration.RunRunning {
		return
	}
	var d dispatchFailure
	if json.Unmarshal([]byte(field), &d) != nil || d.Execution != r.Execution || d.Step != c.StepName {
		return
	}
	c.DispatchFailures, c.LastDispatchError = d.Failures, d.Error
	if d.Next > 0 {
		c.NextDispatchTime = time.UnixMilli(d.Next).UTC()
	}
}
