package store

import "github.com/redis/go-redis/v9"

// Lua scripts: every change that touches more than one key is one script, so
// it applies whole or not at all and concurrent writers cannot interleave.
// Scripts run with redis.Script.Run (EVALSHA, falling back to EVAL).
//
// Keys. Each script declares in KEYS the fixed keys it touches and, where it
// must reach keys named by data it reads (a Candidate, the index of its
// kind), the key prefix of those keys (see keys.go, "...Prefix" functions).
// The script appends the variable part to the prefix. Every prefix carries
// the Migration's hash tag, so every key a script builds is in the slot of
// its declared keys: the scripts run unchanged on Redis Cluster, which runs a
// script on the node that owns its declared keys' slot, where every key built
// this way lives too.
//
// Replies. Scripts that can refuse return an array whose first element is a
// reply code (reply* below), followed by the script's data. Refusals are
// data, not Redis errors, so no error string is ever parsed.
//
// Names. Scripts use the literal hash field names of keys.go and encode.go
// ("def", "status", "n:<status>", ...) and the status names "not_started",
// "running", "completed" of migration.CandidateStatus. They need Redis ≥ 6.2
// (ZRANGE ... BYLEX).

// Reply codes: the first element of a script's reply.
const (
	replyOK                = 0
	replyMigrationNotFound = 1
	replyCandidateNotFound = 2
	replyHasRunning        = 3
	replyStatusChanged     = 4
	replyCompleted         = 5
	replyStaleExecution    = 6
	replyRunNotFound       = 7
)

// Submission outcome per Candidate, in submitScript's reply.
const (
	outcomeAdded     = 1
	outcomeUpdated   = 2
	outcomeUnchanged = 3
	outcomeLeftAlone = 4
)

// historyLua is prepended to every script that records events. By
// convention the last two KEYS of such a script are eventsKey(m) and
// candidateEventsPrefix(m), and its last four ARGV the actor, the most events
// kept per Migration and per Candidate, and the oldest event id kept (unix
// ms): addEvent appends an event to the Migration's stream (and, for a
// Candidate's event, to the Candidate's, under the same id), trims both by
// count and age, and announces it for watchers.
const historyLua = `
local H_ACTOR, H_MAX, H_CMAX, H_MINID = ARGV[#ARGV - 3], ARGV[#ARGV - 2], ARGV[#ARGV - 1], ARGV[#ARGV]
local H_EV, H_CEV = KEYS[#KEYS - 1], KEYS[#KEYS]
local H_NARGV = #ARGV - 4
local function addEvent(e)
  local f = {'k', e.k, 't', tostring(e.t), 'by', e.by or H_ACTOR}
  if e.c and e.c ~= '' then f[#f + 1] = 'c'; f[#f + 1] = e.c end
  if e.r and e.r ~= '' then f[#f + 1] = 'r'; f[#f + 1] = e.r end
  if e.x and tonumber(e.x) ~= 0 then f[#f + 1] = 'x'; f[#f + 1] = tostring(e.x) end
  if e.s and e.s ~= '' then f[#f + 1] = 's'; f[#f + 1] = e.s end
  if e.a and tonumber(e.a) ~= 0 then f[#f + 1] = 'a'; f[#f + 1] = tostring(e.a) end
  if e.d and next(e.d) ~= nil then f[#f + 1] = 'd'; f[#f + 1] = cjson.encode(e.d) end
  local id = '*'
  if not e.conly then
    id = redis.call('XADD', H_EV, 'MAXLEN', '~', H_MAX, '*', unpack(f))
    redis.call('XTRIM', H_EV, 'MINID', '~', H_MINID)
    redis.call('PUBLISH', H_EV .. ':changes', id)
  end
  if e.c and e.c ~= '' then
    redis.call('XADD', H_CEV .. e.c, 'MAXLEN', '~', H_CMAX, id, unpack(f))
    redis.call('XTRIM', H_CEV .. e.c, 'MINID', '~', H_MINID)
  end
  return id
end
`

// putMigrationScript creates a Migration or replaces its definition.
//
//	KEYS[1] migrationKey(m), then the history KEYS (see historyLua)
//	ARGV[1] def: canonical JSON migrationRecord
//	ARGV[2] now, unix milliseconds, then the history ARGV
//
// Records migration_announced or migration_updated. Creates the hash (def, ctime = utime = now, counters 0) when absent; when
// present and def differs, replaces def and sets utime = now; when def is
// identical, writes nothing. Never touches Candidates, nor the global index
// (another slot: the caller ZADDs it afterwards).
//
// Returns {created (0|1), updated (0|1), HGETALL of the hash after the change}.
var putMigrationScript = redis.NewScript(historyLua + `
local cur = redis.call('HGET', KEYS[1], 'def')
local created, updated = 0, 0
if not cur then
  redis.call('HSET', KEYS[1], 'def', ARGV[1], 'ctime', ARGV[2], 'utime', ARGV[2],
    'n:not_started', 0, 'n:running', 0, 'n:completed', 0)
  created = 1
  -- The history of a deleted Migration of the same id was set to expire:
  -- it is this one's again.
  redis.call('PERSIST', H_EV)
  addEvent({k = 'migration_announced', t = ARGV[2]})
elseif cur ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'def', ARGV[1], 'utime', ARGV[2])
  updated = 1
  addEvent({k = 'migration_updated', t = ARGV[2]})
end
return {created, updated, redis.call('HGETALL', KEYS[1])}
`)

// deleteMigrationScript removes a Migration and everything stored under its
// hash tag, unless one of its Candidates is running.
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidatesKey(m)
//	KEYS[3] kindsKey(m)
//	KEYS[4] candidateKeyPrefix(m)
//	KEYS[5] statusIndexPrefix(m)
//	KEYS[6] kindIndexPrefix(m)
//	KEYS[7] statusKindIndexPrefix(m)
//	KEYS[8] runKeyPrefix(m)
//	KEYS[9] runsKey(m)
//	KEYS[10] runStatusIndexPrefix(m)
//	KEYS[11] runStepIndexPrefix(m)
//	KEYS[12] runStatusStepIndexPrefix(m)
//	KEYS[13..16] metricsKey, burndownKey, failuresKey, activityKey (m)
//	then the history KEYS; ARGV[1] now (unix ms), then the history ARGV
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
var deleteMigrationScript = redis.NewScript(historyLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
local running = tonumber(redis.call('HGET', KEYS[1], 'n:running') or '0')
if running > 0 then return {3, running} end

local batch = {}
local function unlink(key)
  batch[#batch + 1] = key
  if #batch == 500 then
    redis.call('UNLINK', unpack(batch))
    batch = {}
  end
end

local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
for _, id in ipairs(ids) do unlink(KEYS[4] .. id) end

local kinds = redis.call('HKEYS', KEYS[3])
for _, s in ipairs({'not_started', 'running', 'completed'}) do
  unlink(KEYS[5] .. s)
  for _, k in ipairs(kinds) do unlink(KEYS[7] .. s .. ':' .. k) end
end
for _, k in ipairs(kinds) do unlink(KEYS[6] .. k) end

for _, id in ipairs(redis.call('ZRANGE', KEYS[9], 0, -1)) do unlink(KEYS[8] .. id) end
local stepStatuses = {'in_progress', 'open', 'merged', 'awaiting_review', 'completed', 'failed'}
for _, r in ipairs({'running', 'completed', 'cancelled'}) do
  unlink(KEYS[10] .. r)
  for _, t in ipairs(stepStatuses) do unlink(KEYS[12] .. r .. ':' .. t) end
end
for _, t in ipairs(stepStatuses) do unlink(KEYS[11] .. t) end
unlink(KEYS[9])
for i = 13, 16 do unlink(KEYS[i]) end
addEvent({k = 'migration_deleted', t = ARGV[1]})
local ttl = tonumber(ARGV[1]) - tonumber(H_MINID)
if ttl < 1000 then ttl = 1000 end
redis.call('PEXPIRE', H_EV, ttl)
for _, id in ipairs(ids) do redis.call('PEXPIRE', H_CEV .. id, ttl) end

unlink(KEYS[2])
unlink(KEYS[3])
unlink(KEYS[1])
if #batch > 0 then redis.call('UNLINK', unpack(batch)) end
return {0, #ids}
`)

// submitScript merges one submission of discovered Candidates (at most
// migration.MaxSubmitCandidates) into a Migration, atomically.
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidatesKey(m)
//	KEYS[3] kindsKey(m)
//	KEYS[4] candidateKeyPrefix(m)
//	KEYS[5] statusIndexPrefix(m)
//	KEYS[6] kindIndexPrefix(m)
//	KEYS[7] statusKindIndexPrefix(m)
//	ARGV[1] now, unix milliseconds
//	ARGV[2] round: the discovery round this submission belongs to
//	ARGV[3..] one triple per Candidate: id, kind, def (canonical JSON
//	        candidateRecord); then the history ARGV (the last two KEYS are
//	        the history KEYS)
//
// Records candidate_discovered in the history of each Candidate added or
// updated, and one candidates_discovered with the counts.
//
// Per Candidate, in order:
//   - absent: created not_started (inputs "{}", exec 0, ctime = utime = now,
//     round), added to cands, status, kind and status×kind indexes, kinds
//     count and n:not_started incremented → outcomeAdded;
//   - not_started, and kind or def differ or it is flagged gone: def, kind,
//     utime, round written, gone cleared; a kind change moves it between the
//     kind and status×kind indexes and the kinds counts → outcomeUpdated;
//   - not_started and identical: only round written → outcomeUnchanged;
//   - running or completed: nothing written at all (not even round; such a
//     Candidate is never flagged gone, so its round does not matter)
//     → outcomeLeftAlone.
//
// Returns {replyMigrationNotFound} when the Migration does not exist
// (nothing is written), else {replyOK, outcome of each triple, in order}.
var submitScript = redis.NewScript(historyLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
local now, round = ARGV[1], ARGV[2]
local NS = 'not_started'
local out = {0}
local added = 0
local counts = {0, 0, 0, 0}
for i = 3, H_NARGV, 3 do
  local id, kind, def = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = KEYS[4] .. id
  local cur = redis.call('HMGET', key, 'status', 'kind', 'def', 'gone')
  if not cur[1] then
    redis.call('HSET', key, 'def', def, 'kind', kind, 'status', NS, 'inputs', '{}',
      'exec', 0, 'ctime', now, 'utime', now, 'round', round)
    redis.call('ZADD', KEYS[2], 0, id)
    redis.call('ZADD', KEYS[5] .. NS, 0, id)
    redis.call('ZADD', KEYS[6] .. kind, 0, id)
    redis.call('ZADD', KEYS[7] .. NS .. ':' .. kind, 0, id)
    redis.call('HINCRBY', KEYS[3], kind, 1)
    added = added + 1
    out[#out + 1] = 1
  elseif cur[1] ~= NS then
    out[#out + 1] = 4
  elseif cur[2] ~= kind or cur[3] ~= def or cur[4] then
    local old = cur[2]
    if old ~= kind then
      if old then
        redis.call('ZREM', KEYS[6] .. old, id)
        redis.call('ZREM', KEYS[7] .. NS .. ':' .. old, id)
        if redis.call('HINCRBY', KEYS[3], old, -1) <= 0 then redis.call('HDEL', KEYS[3], old) end
      end
      redis.call('ZADD', KEYS[6] .. kind, 0, id)
      redis.call('ZADD', KEYS[7] .. NS .. ':' .. kind, 0, id)
      redis.call('HINCRBY', KEYS[3], kind, 1)
    end
    redis.call('HSET', key, 'def', def, 'kind', kind, 'utime', now, 'round', round)
    redis.call('HDEL', key, 'gone')
    out[#out + 1] = 2
  else
    redis.call('HSET', key, 'round', round)
    out[#out + 1] = 3
  end
end
if added > 0 then redis.call('HINCRBY', KEYS[1], 'n:not_started', added) end
for j = 2, #out do
  counts[out[j]] = counts[out[j]] + 1
  if out[j] <= 2 then
    local id = ARGV[3 + (j - 2) * 3]
    local outcome = 'added'
    if out[j] == 2 then outcome = 'updated' end
    if out[j] == 1 then redis.call('PERSIST', H_CEV .. id) end
    addEvent({k = 'candidate_discovered', t = now, c = id, conly = true, d = {outcome = outcome, kind = ARGV[4 + (j - 2) * 3]}})
  end
end
addEvent({k = 'candidates_discovered', t = now, d = {added = tostring(counts[1]), updated = tostring(counts[2]),
  unchanged = tostring(counts[3]), left_alone = tostring(counts[4])}})
return out
`)

// sweepScript flags, in one batch, the not_started Candidates that a
// complete discovery round did not report.
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] statusIndexKey(m, "not_started")
//	KEYS[3] candidateKeyPrefix(m)
//	ARGV[1] after: walk ids strictly after this one; "" starts at the first
//	ARGV[2] batch size (ids examined, not ids flagged)
//	ARGV[3] round: the round that just completed
//	ARGV[4] now, unix milliseconds
//
// Walks up to ARGV[2] ids of the not_started index in lex order; each one
// whose hash still says not_started (re-checked here, atomically), whose
// round differs from ARGV[3] and that is not already flagged gets gone = "1"
// and utime = now. Running and completed Candidates are not in the index
// walked and are re-checked anyway, so they are never touched.
//
// It walks the not_started index rather than all of cands: only not_started
// Candidates can be flagged, so running and completed ones cost the sweep
// nothing. An id's place in the order is fixed, so a Candidate that is
// not_started when the walk reaches its place is examined, whatever moved
// between batches.
//
// Returns {replyMigrationNotFound} when the Migration no longer exists, else
// {replyOK, next, flagged ids...} where next is the last id examined when
// the batch was full (pass it as ARGV[1] of the next call) and "" when the
// walk is over.
var sweepScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
local min = '-'
if ARGV[1] ~= '' then min = '(' .. ARGV[1] end
local n = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', KEYS[2], min, '+', 'BYLEX', 'LIMIT', 0, n)
local out = {0, ''}
if #ids == n then out[2] = ids[#ids] end
for _, id in ipairs(ids) do
  local key = KEYS[3] .. id
  local cur = redis.call('HMGET', key, 'status', 'round', 'gone')
  if cur[1] == 'not_started' and cur[2] ~= ARGV[3] and not cur[3] then
    redis.call('HSET', key, 'gone', '1', 'utime', ARGV[4])
    out[#out + 1] = id
  end
end
return out
`)

// listPageScript reads one page of an index of hashes, consistently: the
// Candidates of a Migration or its run views.
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] the index to page through: candidatesKey, statusIndexKey,
//	        kindIndexKey, statusKindIndexKey, runsKey, runStatusIndexKey,
//	        runStepIndexKey or runStatusStepIndexKey
//	KEYS[3] the prefix of the hashes the index names: candidateKeyPrefix(m)
//	        or runKeyPrefix(m)
//	ARGV[1] after: ids strictly after this one; "" starts at the first
//	ARGV[2] most ids to return (the page size + 1, to learn if more exist)
//
// Returns {replyMigrationNotFound} when the Migration does not exist, else
// {replyOK, ZCARD of the index, id1, HGETALL of id1, id2, ...}.
var listPageScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
local min = '-'
if ARGV[1] ~= '' then min = '(' .. ARGV[1] end
local out = {0, redis.call('ZCARD', KEYS[2])}
local ids = redis.call('ZRANGE', KEYS[2], min, '+', 'BYLEX', 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGETALL', KEYS[3] .. id)
end
return out
`)

// getCandidateScript reads one Candidate, telling an unknown Migration from
// an unknown Candidate in the same round trip.
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidateKey(m, c)
//
// Returns {replyMigrationNotFound}, {replyCandidateNotFound} or
// {replyOK, HGETALL of the Candidate}.
var getCandidateScript = redis.NewScript(`
local h = redis.call('HGETALL', KEYS[2])
if #h == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
  return {2}
end
return {0, h}
`)

// updateInputsScript removes then sets operator inputs of a Candidate, in
// any status. The inputs field is a JSON object edited with Redis's cjson:
// decode, change, encode, all inside the script (atomic; no WATCH retries).
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidateKey(m, c), then the history KEYS (see historyLua)
//	ARGV[1] now, unix milliseconds
//	ARGV[2] c, the Candidate id
//	ARGV[3] r: the number of input names to remove
//	ARGV[4..3+r] input names to remove
//	ARGV[4+r..] pairs of input name, value to set; then the history ARGV
//
// Sets inputs and utime = now, and records candidate_inputs_updated with
// the names set and removed. Returns {replyMigrationNotFound},
// {replyCandidateNotFound} or {replyOK, HGETALL of the Candidate after}.
var updateInputsScript = redis.NewScript(historyLua + `
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
  return {2}
end
local raw = redis.call('HGET', KEYS[2], 'inputs')
local inputs = {}
if raw and raw ~= '' then inputs = cjson.decode(raw) end
local r = tonumber(ARGV[3])
local d = {}
for i = 4, 3 + r do inputs[ARGV[i]] = nil; d['removed.' .. ARGV[i]] = '' end
for i = 4 + r, H_NARGV, 2 do inputs[ARGV[i]] = ARGV[i + 1]; d['inputs.' .. ARGV[i]] = ARGV[i + 1] end
local enc = '{}'
if next(inputs) ~= nil then enc = cjson.encode(inputs) end
redis.call('HSET', KEYS[2], 'inputs', enc, 'utime', ARGV[1])
addEvent({k = 'candidate_inputs_updated', t = ARGV[1], c = ARGV[2], d = d})
return {0, redis.call('HGETALL', KEYS[2])}
`)

// setStatusScript moves a Candidate from one status to another if its status
// is still the expected one (compare-and-set).
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidateKey(m, c)
//	KEYS[3] statusIndexPrefix(m)
//	KEYS[4] statusKindIndexPrefix(m)
//	ARGV[1] c, the Candidate id (member of the indexes)
//	ARGV[2] from: the status expected
//	ARGV[3] to: the new status
//	ARGV[4] now, unix milliseconds
//
// On success: status = to, utime = now, moved from the status and
// status×kind indexes of from to those of to, n:from decremented and n:to
// incremented; O(log N). from == to is a success that writes nothing.
//
// Returns {replyMigrationNotFound}, {replyCandidateNotFound},
// {replyStatusChanged, current status} when the status is not from (nothing
// written), or {replyOK}.
var setStatusScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[2], 'status', 'kind')
if not cur[1] then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
  return {2}
end
local id, from, to = ARGV[1], ARGV[2], ARGV[3]
if cur[1] ~= from then return {4, cur[1]} end
if from == to then return {0} end
local kind = cur[2]
redis.call('HSET', KEYS[2], 'status', to, 'utime', ARGV[4])
redis.call('ZREM', KEYS[3] .. from, id)
redis.call('ZADD', KEYS[3] .. to, 0, id)
redis.call('ZREM', KEYS[4] .. from .. ':' .. kind, id)
redis.call('ZADD', KEYS[4] .. to .. ':' .. kind, 0, id)
redis.call('HINCRBY', KEYS[1], 'n:' .. from, -1)
redis.call('HINCRBY', KEYS[1], 'n:' .. to, 1)
return {0}
`)

// Run views. A run view is written only by the Run's own workflow (and by a
// cancel of a Run whose workflow is gone), so the scripts below guard against
// writes from another execution and against writes arriving out of order
// (the Seq of a view only grows within an execution). Each accepted write
// bumps the view's version, moves the Run between the run indexes, and
// PUBLISHes the version on runChannel, for watchers on any replica.

// runViewLua is shared by beginRunScript and saveRunScript (same KEYS, see
// runKeysDoc): storeView writes a run view, keeps the run indexes and the
// count of running Runs per current step and status, and announces the new
// version on channel; moveCandidate moves the Candidate between statuses
// with its indexes and counters.
const runViewLua = `
local function storeView(id, view, exec, seq, status, step, channel, cstep)
  local runKey = KEYS[3]
  local old = redis.call('HMGET', runKey, 'status', 'step', 'cstep')
  if old[1] then
    redis.call('ZREM', KEYS[7] .. old[1], id)
    if old[2] and old[2] ~= '' then
      redis.call('ZREM', KEYS[8] .. old[2], id)
      redis.call('ZREM', KEYS[9] .. old[1] .. ':' .. old[2], id)
      if old[1] == 'running' and old[3] then
        redis.call('HINCRBY', KEYS[10], 'cur:' .. old[3] .. ':' .. old[2], -1)
      end
    end
  end
  local ver = redis.call('HINCRBY', runKey, 'ver', 1)
  redis.call('HSET', runKey, 'view', view, 'exec', exec, 'seq', seq, 'status', status, 'step', step, 'cstep', cstep)
  redis.call('ZADD', KEYS[6], 0, id)
  redis.call('ZADD', KEYS[7] .. status, 0, id)
  if step ~= '' then
    redis.call('ZADD', KEYS[8] .. step, 0, id)
    redis.call('ZADD', KEYS[9] .. status .. ':' .. step, 0, id)
    if status == 'running' then
      redis.call('HINCRBY', KEYS[10], 'cur:' .. cstep .. ':' .. step, 1)
    end
  end
  redis.call('PUBLISH', channel, ver)
end

local function moveCandidate(id, kind, from, to, now)
  if from == to then return end
  redis.call('HSET', KEYS[2], 'status', to, 'utime', now)
  redis.call('ZREM', KEYS[4] .. from, id)
  redis.call('ZADD', KEYS[4] .. to, 0, id)
  redis.call('ZREM', KEYS[5] .. from .. ':' .. kind, id)
  redis.call('ZADD', KEYS[5] .. to .. ':' .. kind, 0, id)
  redis.call('HINCRBY', KEYS[1], 'n:' .. from, -1)
  redis.call('HINCRBY', KEYS[1], 'n:' .. to, 1)
end

local function hour(ms) return tostring(math.floor(tonumber(ms) / 3600000)) end
`

// runKeysDoc is the KEYS of beginRunScript and saveRunScript:
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidateKey(m, c)
//	KEYS[3] runKey(m, c)
//	KEYS[4] statusIndexPrefix(m)
//	KEYS[5] statusKindIndexPrefix(m)
//	KEYS[6] runsKey(m)
//	KEYS[7] runStatusIndexPrefix(m)
//	KEYS[8] runStepIndexPrefix(m)
//	KEYS[9] runStatusStepIndexPrefix(m)
//	KEYS[10] metricsKey(m)
//	KEYS[11] burndownKey(m)
//	KEYS[12] failuresKey(m)
//	KEYS[13] activityKey(m)
//	KEYS[14] eventsKey(m), KEYS[15] candidateEventsPrefix(m) (history)

// beginRunScript records the start of execution N of a Candidate's Run: the
// Candidate becomes running with exec N and the Run's inputs, the run view
// is created, and run_started is recorded (with the burndown and the
// Candidate's activity). KEYS: see runKeysDoc.
//
//	ARGV[1] candidate id
//	ARGV[2] N, the execution
//	ARGV[3] inputs, JSON object
//	ARGV[4] view, JSON runRecord
//	ARGV[5] seq of the view
//	ARGV[6] now, unix milliseconds
//	ARGV[7] runChannel(m, c)
//	ARGV[8] the Run id; then the history ARGV (the actor: who started it)
//
// Allowed when the Candidate is not_started with exec < N, or running with
// exec < N (a start whose workflow never ran: the ExecutionEngine admits one
// running execution per Run, so that one is gone). Running with exec = N is
// a repeat: nothing is written.
//
// Returns {replyMigrationNotFound}, {replyCandidateNotFound},
// {replyCompleted}, {replyStaleExecution, current exec} or
// {replyOK, HGETALL of the run view}.
var beginRunScript = redis.NewScript(historyLua + runViewLua + `
local c = redis.call('HMGET', KEYS[2], 'status', 'kind', 'exec')
if not c[1] then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
  return {2}
end
local id, n, now = ARGV[1], tonumber(ARGV[2]), ARGV[6]
local status, kind, exec = c[1], c[2], tonumber(c[3] or '0')
if status == 'completed' then return {5} end
if exec == n and status == 'running' then return {0, redis.call('HGETALL', KEYS[3])} end
if exec >= n then return {6, exec} end
moveCandidate(id, kind, status, 'running', now)
redis.call('HSET', KEYS[2], 'exec', n, 'inputs', ARGV[3], 'utime', now)
storeView(id, ARGV[4], n, ARGV[5], 'running', '', ARGV[7], '')
local d = {}
for k, v in pairs(cjson.decode(ARGV[3])) do d['inputs.' .. k] = v end
addEvent({k = 'run_started', t = now, c = id, r = ARGV[8], x = n, d = d})
redis.call('HINCRBY', KEYS[11], 's:' .. hour(now), 1)
redis.call('ZADD', KEYS[13], now, id)
return {0, redis.call('HGETALL', KEYS[3])}
`)

// saveRunScript stores a newer run view of the current execution, with the
// events and measures of the change. A view of a finished Run moves its
// Candidate too: completed → completed, cancelled → not_started. KEYS: see
// runKeysDoc.
//
//	ARGV[1] candidate id
//	ARGV[2] N, the execution of the view
//	ARGV[3] seq of the view
//	ARGV[4] view, JSON runRecord
//	ARGV[5] Run status: running | completed | cancelled
//	ARGV[6] status of the current step, "" when none
//	ARGV[7] now, unix milliseconds
//	ARGV[8] runChannel(m, c)
//	ARGV[9] name of the current step, "" when none
//	ARGV[10] events of the change: JSON array of {k, t, c, r, x, s, a, by, d}
//	ARGV[11] durations measured: JSON array of {s, m (merge: true), ms, b (bucket)}
//	then the history ARGV
//
// Events and measures are applied once per (execution, seq), even when the
// view itself is older than the stored one (writes may land out of order),
// and never twice (a retried save after a lost answer). Failures are listed
// (at most 50), and a running Candidate's last activity is kept for stuck
// detection.
//
// A view whose seq is not above the stored one (same execution) is older
// than what is stored: ignored, not an error. A Candidate with no run view
// was never begun (exec 0): it has no current execution, so any save is
// refused as stale.
//
// Returns {replyMigrationNotFound}, {replyCandidateNotFound},
// {replyStaleExecution, current exec} or {replyOK, HGETALL of the run view}.
var saveRunScript = redis.NewScript(historyLua + runViewLua + `
local c = redis.call('HMGET', KEYS[2], 'status', 'kind', 'exec')
if not c[1] then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
  return {2}
end
local id, n, seq, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[7]
local status, kind, exec = c[1], c[2], tonumber(c[3] or '0')
if exec ~= n then return {6, exec} end
local r = redis.call('HMGET', KEYS[3], 'exec', 'seq')
if not r[1] then return {6, exec} end
if redis.call('HSETNX', KEYS[3], 'ev:' .. n .. ':' .. seq, 1) == 1 then
  for _, e in ipairs(cjson.decode(ARGV[10])) do
    addEvent(e)
    local d = e.d or {}
    if e.k == 'step_failed' or (e.k == 'step_reported' and d.status == 'failed') then
      redis.call('LPUSH', KEYS[12], cjson.encode({t = e.t, c = e.c, s = e.s, a = e.a, m = d.message or d.reason or ''}))
      redis.call('LTRIM', KEYS[12], 0, 49)
    end
  end
  for _, o in ipairs(cjson.decode(ARGV[11])) do
    local p, h, mx = 'n:', 'hn:', 'max:'
    if o.m then p, h, mx = 'mn:', 'hm:', 'mmax:' end
    redis.call('HINCRBY', KEYS[10], p .. o.s, 1)
    redis.call('HINCRBY', KEYS[10], h .. o.s .. ':' .. o.b, 1)
    if o.ms > tonumber(redis.call('HGET', KEYS[10], mx .. o.s) or '0') then
      redis.call('HSET', KEYS[10], mx .. o.s, o.ms)
    end
  end
  if status == 'running' and ARGV[5] == 'running' then redis.call('ZADD', KEYS[13], now, id) end
end
if tonumber(r[1] or '0') == n and tonumber(r[2] or '-1') >= seq then
  return {0, redis.call('HGETALL', KEYS[3])}
end
storeView(id, ARGV[4], n, seq, ARGV[5], ARGV[6], ARGV[8], ARGV[9])
if status == 'running' then
  if ARGV[5] == 'completed' then
    moveCandidate(id, kind, 'running', 'completed', now)
    redis.call('HINCRBY', KEYS[11], 'c:' .. hour(now), 1)
  elseif ARGV[5] == 'cancelled' then
    moveCandidate(id, kind, 'running', 'not_started', now)
  end
end
if ARGV[5] ~= 'running' then redis.call('ZREM', KEYS[13], id) end
return {0, redis.call('HGETALL', KEYS[3])}
`)

// appendEventsScript records events that come with no change of state.
//
//	KEYS[1] migrationKey(m), KEYS[2] activityKey(m), then the history KEYS
//	ARGV[1] events: JSON array of {k, t, c, r, x, s, a, by, d}; then the
//	history ARGV
//
// A running Candidate's activity moves to the event's time. Returns
// {replyMigrationNotFound} or {replyOK}.
var appendEventsScript = redis.NewScript(historyLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
for _, e in ipairs(cjson.decode(ARGV[1])) do
  addEvent(e)
  if e.c and e.c ~= '' then redis.call('ZADD', KEYS[2], 'XX', e.t, e.c) end
end
return {0}
`)

// getRunScript reads one run view.
//
//	KEYS[1] runKey(m, c)
//
// Returns {replyRunNotFound} or {replyOK, HGETALL of the run view}.
var getRunScript = redis.NewScript(`
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {7} end
return {0, h}
`)
