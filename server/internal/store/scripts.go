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
// convention the last four KEYS of such a script are changeIndexKey(m),
// eventDaysKey(m), eventsKey(m) and candidateEventsPrefix(m), and its last
// four ARGV the
// actor, the most events kept per Migration and per Candidate, and the
// oldest event id kept (unix ms): addEvent appends an event to the
// Migration's stream (and, for a Candidate's event, to the Candidate's,
// under the same id), trims both by count and age, counts it in its day,
// and announces it for watchers: on the Migration's channel, and with the
// Migration's id on the fleet's (fleetChannel). A Candidate's event also moves the Candidate's last change
// forward (ZADD XX GT: never backwards, and never for a Candidate that is
// not in the index, such as one of a deleted Migration).
//
// touch moves a Candidate's last change to now: the scripts call it where
// they set its utime, events or not. The Candidate must exist.
//
// STATUS_ORDER is statusOrder (keys.go) of each Candidate status.
const historyLua = `
local H_ACTOR, H_MAX, H_CMAX, H_MINID = ARGV[#ARGV - 3], ARGV[#ARGV - 2], ARGV[#ARGV - 1], ARGV[#ARGV]
local H_LAST, H_DAYS, H_EV, H_CEV = KEYS[#KEYS - 3], KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]
local STATUS_ORDER = {not_started = 1, running = 2, completed = 3}
local function touch(id, now) redis.call('ZADD', H_LAST, 'GT', now, id) end
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
    redis.call('PUBLISH', '` + fleetChannel + `', string.sub(H_EV, ` + tagStart + `, -` + eventsSuffix + `))
    redis.call('HINCRBY', H_DAYS, tostring(math.floor(tonumber(e.t) / 86400000)), 1)
  end
  if e.c and e.c ~= '' then
    redis.call('XADD', H_CEV .. e.c, 'MAXLEN', '~', H_CMAX, id, unpack(f))
    redis.call('XTRIM', H_CEV .. e.c, 'MINID', '~', H_MINID)
    redis.call('ZADD', H_LAST, 'XX', 'GT', tostring(e.t), e.c)
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
  redis.call('PERSIST', H_DAYS)
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
//	KEYS[17] statusOrderKey(m), KEYS[18] stepOrderKey(m)
//	KEYS[19] stepNamesKey(m), KEYS[20] currentStepIndexPrefix(m)
//	KEYS[21] metadataPairsKey(m), KEYS[22] metadataIndexPrefix(m)
//	KEYS[23] listTempKey(m), KEYS[24] listPrefixTempKey(m)
//	then the history KEYS (changeIndexKey is one of them); ARGV[1] now
//	(unix ms), then the history ARGV
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
unlink(KEYS[9] .. ':dispatch-failing')
unlink(KEYS[9])
for i = 13, 16 do unlink(KEYS[i]) end
for _, name in ipairs(redis.call('HKEYS', KEYS[19])) do unlink(KEYS[20] .. name) end
for _, pair in ipairs(redis.call('HKEYS', KEYS[21])) do unlink(KEYS[22] .. pair) end
for _, i in ipairs({17, 18, 19, 21, 23, 24}) do unlink(KEYS[i]) end
unlink(H_LAST)
addEvent({k = 'migration_deleted', t = ARGV[1]})
local ttl = tonumber(ARGV[1]) - tonumber(H_MINID)
if ttl < 1000 then ttl = 1000 end
redis.call('PEXPIRE', H_EV, ttl)
redis.call('PEXPIRE', H_DAYS, ttl)
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
//	KEYS[8] statusOrderKey(m)
//	KEYS[9] stepOrderKey(m)
//	KEYS[10] metadataIndexPrefix(m)
//	KEYS[11] metadataPairsKey(m), then the history KEYS
//	ARGV[1] now, unix milliseconds
//	ARGV[2] round: the discovery round this submission belongs to
//	ARGV[3..] one quadruple per Candidate: id, kind, def (canonical JSON
//	        candidateRecord), midx (JSON array of the metadataPair of each
//	        metadata pair, sorted); then the history ARGV
//
// Records candidate_discovered in the history of each Candidate added or
// updated, and one candidates_discovered with the counts.
//
// Per Candidate, in order:
//   - absent: created not_started (inputs "{}", exec 0, ctime = utime = now,
//     round, midx), added to cands, status, kind, status×kind and metadata
//     indexes and to the three orders (status, step position 0, last change
//     now), kinds and metadata pair counts and n:not_started incremented
//     → outcomeAdded;
//   - not_started, and kind or def differ or it is flagged gone: def, kind,
//     utime, round, midx written, gone cleared, last change now; a kind
//     change moves it between the kind and status×kind indexes and the kinds
//     counts, a metadata change between the metadata indexes and their
//     counts → outcomeUpdated;
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
local function indexMetadata(id, midx, delta)
  for _, pair in ipairs(cjson.decode(midx)) do
    if delta > 0 then
      redis.call('ZADD', KEYS[10] .. pair, 0, id)
      redis.call('HINCRBY', KEYS[11], pair, 1)
    else
      redis.call('ZREM', KEYS[10] .. pair, id)
      if redis.call('HINCRBY', KEYS[11], pair, -1) <= 0 then redis.call('HDEL', KEYS[11], pair) end
    end
  end
end
for i = 3, H_NARGV, 4 do
  local id, kind, def, midx = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local key = KEYS[4] .. id
  local cur = redis.call('HMGET', key, 'status', 'kind', 'def', 'gone', 'midx')
  if not cur[1] then
    redis.call('HSET', key, 'def', def, 'kind', kind, 'status', NS, 'inputs', '{}',
      'exec', 0, 'ctime', now, 'utime', now, 'round', round, 'midx', midx)
    redis.call('ZADD', KEYS[2], 0, id)
    redis.call('ZADD', KEYS[5] .. NS, 0, id)
    redis.call('ZADD', KEYS[6] .. kind, 0, id)
    redis.call('ZADD', KEYS[7] .. NS .. ':' .. kind, 0, id)
    redis.call('HINCRBY', KEYS[3], kind, 1)
    redis.call('ZADD', KEYS[8], STATUS_ORDER[NS], id)
    redis.call('ZADD', KEYS[9], 0, id)
    touch(id, now)
    indexMetadata(id, midx, 1)
    added = added + 1
    out[#out + 1] = 1
  elseif cur[1] ~= NS then
    out[#out + 1] = 4
  elseif cur[2] ~= kind or cur[3] ~= def or cur[4] then
    if (cur[5] or '[]') ~= midx then
      indexMetadata(id, cur[5] or '[]', -1)
      indexMetadata(id, midx, 1)
    end
    touch(id, now)
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
    redis.call('HSET', key, 'def', def, 'kind', kind, 'utime', now, 'round', round, 'midx', midx)
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
    local id = ARGV[3 + (j - 2) * 4]
    local outcome = 'added'
    if out[j] == 2 then outcome = 'updated' end
    if out[j] == 1 then redis.call('PERSIST', H_CEV .. id) end
    addEvent({k = 'candidate_discovered', t = now, c = id, conly = true, d = {outcome = outcome, kind = ARGV[4 + (j - 2) * 4]}})
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
//	KEYS[4] changeIndexKey(m)
//	ARGV[1] after: walk ids strictly after this one; "" starts at the first
//	ARGV[2] batch size (ids examined, not ids flagged)
//	ARGV[3] round: the round that just completed
//	ARGV[4] now, unix milliseconds
//
// Walks up to ARGV[2] ids of the not_started index in lex order; each one
// whose hash still says not_started (re-checked here, atomically), whose
// round differs from ARGV[3] and that is not already flagged gets gone = "1"
// and utime = now (its last change too). Running and completed Candidates are not in the index
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
    redis.call('ZADD', KEYS[4], 'GT', ARGV[4], id)
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

// listCandidatesScript reads one page of the Candidates of a Migration
// that match every filter, in one order, with the number of matches and
// each row's progress, consistently (one script, one view).
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidateKeyPrefix(m)
//	KEYS[3] runKeyPrefix(m)
//	KEYS[4] changeIndexKey(m) (for each row's last change)
//	KEYS[5] the order: candidatesKey(m) for id order, else statusOrderKey,
//	        stepOrderKey or changeIndexKey
//	KEYS[6] candidatesKey(m)
//	KEYS[7] listTempKey(m), KEYS[8] listPrefixTempKey(m): scratch
//	KEYS[9..] the filter sets, each of score 0 (status, kind, status×kind,
//	        current step name, current step status, metadata pair indexes)
//	ARGV[1] "1" for id order (KEYS[5] is lexicographic), else "0"
//	ARGV[2] id prefix, "" for none
//	ARGV[3] "1" for descending order
//	ARGV[4], ARGV[5] the cursor: score and id of the last row of the
//	        previous page (ARGV[5] "" for the first page)
//	ARGV[6] most rows to return (page size + 1, to learn if more exist)
//
// The rows are a range of ranks of one sorted set, src:
//   - id order: with no filter set, cands itself; with one, that set; with
//     more, their ZINTERSTORE into KEYS[7] (scores 0). An id prefix is a
//     range of ranks found with ZLEXCOUNT.
//   - another order: with no filter and no prefix, the order's set itself;
//     else the ZINTERSTORE of the order (weight 1: the scores are the
//     order's) with the filter sets (weight 0) and, for a prefix, the ids
//     of cands in the prefix's lex range (ZRANGESTORE into KEYS[8]).
//
// Cost. Unfiltered, a page is O(log N + page): ZRANK-like counts and a
// ZRANGE by rank. With filters it is dominated by the intersection:
// ZINTERSTORE is O(S·K + M·log M), S the size of the smallest set, K the
// number of sets (at most 9: status×kind or one of them, step name, step
// status, 4 metadata pairs, prefix, order), M the number of matches, so it
// is bounded by the Migration's size, never by more: with 10,000
// Candidates, a few milliseconds (see BenchmarkListCandidatesFiltered). The
// scratch sets live only within the script (deleted before it returns; they
// also expire after 60 s should the script fail half-way), so concurrent
// requests never see each other's.
//
// The cursor is a position, not a rank: the next page starts after (score,
// id) in (score, id) order, wherever rows moved since. For a scored src the
// number of rows before it is found by ZCOUNT, then by a binary search over
// the ranks of its score's ties (ties are in member byte order; bytes are
// compared one by one, never with Lua's locale-dependent string <).
//
// Returns {replyMigrationNotFound}, else {replyOK, total, then per row: id,
// score in src, HGETALL of the Candidate, its run fields and last change
// (candidateRowLua)}.
var listCandidatesScript = redis.NewScript(candidateRowLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
local lex, prefix, desc = ARGV[1] == '1', ARGV[2], ARGV[3] == '1'
local n = tonumber(ARGV[6])
local sets = {}
for i = 9, #KEYS do sets[#sets + 1] = KEYS[i] end
local src, scratch = KEYS[5], false
if lex then
  if #sets == 1 then
    src = sets[1]
  elseif #sets > 1 then
    redis.call('ZINTERSTORE', KEYS[7], #sets, unpack(sets))
    src, scratch = KEYS[7], true
  end
else
  if prefix ~= '' then
    redis.call('ZRANGESTORE', KEYS[8], KEYS[6], '[' .. prefix, '(' .. prefix .. '\255', 'BYLEX')
    redis.call('PEXPIRE', KEYS[8], 60000)
    sets[#sets + 1] = KEYS[8]
  end
  if #sets > 0 then
    local args = {'ZINTERSTORE', KEYS[7], #sets + 1, KEYS[5]}
    for _, k in ipairs(sets) do args[#args + 1] = k end
    args[#args + 1] = 'WEIGHTS'
    args[#args + 1] = 1
    for _ = 1, #sets do args[#args + 1] = 0 end
    redis.call(unpack(args))
    src, scratch = KEYS[7], true
  end
end
if scratch then redis.call('PEXPIRE', KEYS[7], 60000) end

local lo, hi = 0, redis.call('ZCARD', src)
if lex and prefix ~= '' then
  lo = redis.call('ZLEXCOUNT', src, '-', '(' .. prefix)
  hi = redis.call('ZLEXCOUNT', src, '-', '(' .. prefix .. '\255')
end

local function cmp(x, y)
  if x == y then return 0 end
  for i = 1, math.min(#x, #y) do
    local p, q = string.byte(x, i), string.byte(y, i)
    if p ~= q then
      if p < q then return -1 end
      return 1
    end
  end
  if #x < #y then return -1 end
  return 1
end

-- before(score, id, incl): how many rows of src come before (score, id),
-- or before or at it when incl.
local function before(score, id, incl)
  if lex then
    local b = '('
    if incl then b = '[' end
    return redis.call('ZLEXCOUNT', src, '-', b .. id)
  end
  local a = redis.call('ZCOUNT', src, '-inf', '(' .. score)
  local b = redis.call('ZCOUNT', src, '-inf', score)
  while a < b do
    local mid = math.floor((a + b) / 2)
    local c = cmp(redis.call('ZRANGE', src, mid, mid)[1], id)
    if c < 0 or (incl and c == 0) then a = mid + 1 else b = mid end
  end
  return a
end

local first, last
if not desc then
  first = lo
  if ARGV[5] ~= '' then first = math.max(lo, before(ARGV[4], ARGV[5], true)) end
  last = math.min(hi, first + n) - 1
else
  local stop = hi
  if ARGV[5] ~= '' then stop = math.min(hi, before(ARGV[4], ARGV[5], false)) end
  first, last = math.max(lo, stop - n), stop - 1
end

local out = {0, hi - lo}
if first <= last then
  local r = redis.call('ZRANGE', src, first, last, 'WITHSCORES')
  local from, to, step = 1, #r - 1, 2
  if desc then from, to, step = #r - 1, 1, -2 end
  for i = from, to, step do
    local id = r[i]
    local p = progressOf(KEYS[3] .. id, KEYS[4], id)
    out[#out + 1] = id
    out[#out + 1] = r[i + 1]
    out[#out + 1] = redis.call('HGETALL', KEYS[2] .. id)
    out[#out + 1] = p[1]
    out[#out + 1] = p[2]
  end
end
if scratch then redis.call('DEL', KEYS[7]) end
if prefix ~= '' and not lex then redis.call('DEL', KEYS[8]) end
return out
`)

// candidateRowLua reads what a Candidate's row shows beside its hash:
// progressOf(runKey, changeKey, id) returns {HMGET of its run view's
// status, cstep, step (nil each when it has no run view), its last change
// (ZSCORE, "" when unknown)}.
const candidateRowLua = `
local function progressOf(runKey, changeKey, id)
  return {redis.call('HMGET', runKey, 'status', 'cstep', 'step'), redis.call('ZSCORE', changeKey, id) or ''}
end
`

// getCandidateScript reads one Candidate, telling an unknown Migration from
// an unknown Candidate in the same round trip.
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidateKey(m, c)
//	KEYS[3] runKey(m, c)
//	KEYS[4] changeIndexKey(m)
//	ARGV[1] c
//
// Returns {replyMigrationNotFound}, {replyCandidateNotFound} or
// {replyOK, HGETALL of the Candidate, run fields, last change} (see
// candidateRowLua).
var getCandidateScript = redis.NewScript(candidateRowLua + `
local h = redis.call('HGETALL', KEYS[2])
if #h == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
  return {2}
end
local p = progressOf(KEYS[3], KEYS[4], ARGV[1])
return {0, h, p[1], p[2]}
`)

// getMigrationCandidateScript reads one Candidate and its Migration.
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidateKey(m, c)
//	KEYS[3] runKey(m, c)
//	KEYS[4] changeIndexKey(m)
//	ARGV[1] c
//
// Returns {replyMigrationNotFound}, {replyCandidateNotFound} or
// {replyOK, HGETALL of the Candidate, run fields, last change, HGETALL of
// the Migration}.
var getMigrationCandidateScript = redis.NewScript(candidateRowLua + `
local m = redis.call('HGETALL', KEYS[1])
if #m == 0 then return {1} end
local h = redis.call('HGETALL', KEYS[2])
if #h == 0 then return {2} end
local p = progressOf(KEYS[3], KEYS[4], ARGV[1])
return {0, h, p[1], p[2], m}
`)

// updateInputsScript removes then sets operator inputs of a Candidate, in
// any status. The inputs field is a JSON object edited with Redis's cjson:
// decode, change, encode, all inside the script (atomic; no WATCH retries).
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidateKey(m, c)
//	KEYS[3] runKey(m, c), then the history KEYS (see historyLua)
//	ARGV[1] now, unix milliseconds
//	ARGV[2] c, the Candidate id
//	ARGV[3] r: the number of input names to remove
//	ARGV[4..3+r] input names to remove
//	ARGV[4+r..] pairs of input name, value to set; then the history ARGV
//
// Sets inputs and utime = now, and records candidate_inputs_updated with
// the names set and removed. Returns {replyMigrationNotFound},
// {replyCandidateNotFound} or {replyOK, HGETALL of the Candidate after, run
// fields, last change} (see candidateRowLua).
var updateInputsScript = redis.NewScript(historyLua + candidateRowLua + `
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
touch(ARGV[2], ARGV[1])
local p = progressOf(KEYS[3], H_LAST, ARGV[2])
return {0, redis.call('HGETALL', KEYS[2]), p[1], p[2]}
`)

// setStatusScript moves a Candidate from one status to another if its status
// is still the expected one (compare-and-set).
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidateKey(m, c)
//	KEYS[3] statusIndexPrefix(m)
//	KEYS[4] statusKindIndexPrefix(m)
//	KEYS[5] statusOrderKey(m)
//	KEYS[6] changeIndexKey(m)
//	ARGV[1] c, the Candidate id (member of the indexes)
//	ARGV[2] from: the status expected
//	ARGV[3] to: the new status
//	ARGV[4] now, unix milliseconds
//
// On success: status = to, utime = now, moved from the status and
// status×kind indexes of from to those of to and to its place in the status
// order, last change now, n:from decremented and n:to incremented;
// O(log N). from == to is a success that writes nothing.
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
redis.call('ZADD', KEYS[5], ({not_started = 1, running = 2, completed = 3})[to], id)
redis.call('ZADD', KEYS[6], 'GT', ARGV[4], id)
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
// runKeysDoc): storeView writes a run view, keeps the run indexes, the
// Candidate's current step index and step order (spos: stepPosition), and
// the count of running Runs per current step and status, and announces the
// new version on channel; moveCandidate moves the Candidate between statuses
// with its indexes, order and counters.
const runViewLua = `
local function storeView(id, view, exec, seq, status, step, channel, cstep, spos)
  local runKey = KEYS[3]
  local old = redis.call('HMGET', runKey, 'status', 'step', 'cstep')
  if old[3] and old[3] ~= '' then
    redis.call('ZREM', KEYS[16] .. old[3], id)
    if redis.call('HINCRBY', KEYS[17], old[3], -1) <= 0 then redis.call('HDEL', KEYS[17], old[3]) end
  end
  if cstep ~= '' then
    redis.call('ZADD', KEYS[16] .. cstep, 0, id)
    redis.call('HINCRBY', KEYS[17], cstep, 1)
  end
  redis.call('ZADD', KEYS[15], spos, id)
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
  redis.call('ZADD', KEYS[14], STATUS_ORDER[to], id)
  touch(id, now)
  redis.call('HINCRBY', KEYS[1], 'n:' .. from, -1)
  redis.call('HINCRBY', KEYS[1], 'n:' .. to, 1)
end

local function hour(ms) return tostring(math.floor(tonumber(ms) / 3600000)) end

-- dropDispatchFailure drops the dispatch failures of the run view (see
-- store/dispatch.go) unless they are about step keep of execution exec:
-- the view moved past the attempt they were about.
local function dropDispatchFailure(id, exec, keep)
  local d = redis.call('HGET', KEYS[3], 'dfail')
  if not d then return end
  local f = cjson.decode(d)
  if keep ~= '' and f.x == exec and f.s == keep then return end
  redis.call('HDEL', KEYS[3], 'dfail')
  redis.call('ZREM', KEYS[18], id)
end

-- eventsSeq is the seq of the run view's execution up to which its events
-- are applied (evseq). Views written before evseq marked each save with a
-- field 'ev:<exec>:<seq>', a field per save for ever: those are removed
-- once, and every save up to the stored seq counts as applied (saves were
-- already one at a time).
local function eventsSeq(runKey, stored)
  local e = redis.call('HGET', runKey, 'evseq')
  if e then return tonumber(e) end
  for _, f in ipairs(redis.call('HKEYS', runKey)) do
    if string.sub(f, 1, 3) == 'ev:' then redis.call('HDEL', runKey, f) end
  end
  return tonumber(stored or '-1')
end
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
//	KEYS[14] statusOrderKey(m)
//	KEYS[15] stepOrderKey(m)
//	KEYS[16] currentStepIndexPrefix(m)
//	KEYS[17] stepNamesKey(m)
//	KEYS[18] runDispatchFailingKey(m)
//	KEYS[19] changeIndexKey(m), KEYS[20] eventDaysKey(m),
//	KEYS[21] eventsKey(m), KEYS[22] candidateEventsPrefix(m) (history)

// beginRunScript records the start of execution N of a Candidate's Run: the
// Candidate becomes running with exec N and the Run's inputs, the run view
// is created, and run_started is recorded (with the Candidate's activity,
// and, on the Candidate's first execution only, the burndown: it counts
// Candidates started, so one started again after a cancel counts once).
// KEYS: see runKeysDoc.
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
eventsSeq(KEYS[3], nil)
storeView(id, ARGV[4], n, ARGV[5], 'running', '', ARGV[7], '', 0)
redis.call('HSET', KEYS[3], 'evseq', ARGV[5])
dropDispatchFailure(id, n, '')
local d = {}
for k, v in pairs(cjson.decode(ARGV[3])) do d['inputs.' .. k] = v end
addEvent({k = 'run_started', t = now, c = id, r = ARGV[8], x = n, d = d})
-- exec is 0 until the Candidate's first execution is recorded here, and
-- only grows: a later execution (after a cancel, or replacing a start whose
-- workflow never ran) finds it above 0.
if exec == 0 then redis.call('HINCRBY', KEYS[11], 's:' .. hour(now), 1) end
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
//	ARGV[12] stepPosition of the view
//	then the history ARGV
//
// Events and measures are applied with a seq above every seq whose events
// were applied (evseq, one field: the record does not grow with the Run's
// age), so never twice (a retried save after a lost answer). A Run's
// workflow writes one save at a time, in order, each carrying every change
// since the last write, so none is skipped. Failures (a step
// failed by Loom, reported failed, or a review finished as failed) are
// listed (at most 50) and counted per step, and a running Candidate's last
// activity is kept for stuck detection.
//
// A view whose seq is not above the stored one (same execution) is older
// than what is stored: ignored, not an error. A Candidate with no run view
// was never begun (exec 0): it has no current execution, so any save is
// refused as stale.
//
// Returns {replyMigrationNotFound}, {replyCandidateNotFound},
// {replyStaleExecution, current exec} or {replyOK, the view's version}.
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
-- A save with nothing to apply (a repair copying the engine's Run) leaves
-- evseq alone: the writer's own save of that seq still brings its events.
local evs, obs = cjson.decode(ARGV[10]), cjson.decode(ARGV[11])
if (#evs > 0 or #obs > 0) and seq > eventsSeq(KEYS[3], r[2]) then
  redis.call('HSET', KEYS[3], 'evseq', seq)
  for _, e in ipairs(evs) do
    addEvent(e)
    local d = e.d or {}
    if e.k == 'step_failed' or ((e.k == 'step_reported' or e.k == 'review_finished') and d.status == 'failed') then
      redis.call('LPUSH', KEYS[12], cjson.encode({t = e.t, c = e.c, s = e.s, a = e.a, m = d.message or d.reason or ''}))
      redis.call('LTRIM', KEYS[12], 0, 49)
      redis.call('HINCRBY', KEYS[10], 'f:' .. e.s, 1)
    end
  end
  for _, o in ipairs(obs) do
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
  return {0, tonumber(redis.call('HGET', KEYS[3], 'ver'))}
end
storeView(id, ARGV[4], n, seq, ARGV[5], ARGV[6], ARGV[8], ARGV[9], ARGV[12])
if ARGV[5] ~= 'running' or ARGV[6] ~= 'in_progress' then
  dropDispatchFailure(id, n, '')
else
  dropDispatchFailure(id, n, ARGV[9])
end
touch(id, now)
if status == 'running' then
  if ARGV[5] == 'completed' then
    moveCandidate(id, kind, 'running', 'completed', now)
    redis.call('HINCRBY', KEYS[11], 'c:' .. hour(now), 1)
  elseif ARGV[5] == 'cancelled' then
    moveCandidate(id, kind, 'running', 'not_started', now)
  end
end
if ARGV[5] ~= 'running' then redis.call('ZREM', KEYS[13], id) end
return {0, tonumber(redis.call('HGET', KEYS[3], 'ver'))}
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
