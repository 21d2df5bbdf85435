package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// candidates.go owns the Candidates one at a time and as a discovery sees
// them: submit a discovery (submitScript) and sweep what it did not report,
// get a Candidate, update its inputs, set its status.

// Submission outcome per Candidate, in submitScript's reply.
const (
	outcomeAdded     = 1
	outcomeUpdated   = 2
	outcomeUnchanged = 3
	outcomeLeftAlone = 4
)

// submitKeys are the KEYS of submitScript. The script appends to the
// _prefix key a kind, submitted or stored (see script.go: the keys so built
// are in the Migration's slot). Those cannot be declared ahead: which to
// leave is the stored kind of each updated Candidate, read inside the
// script.
var submitKeys = scriptKeys{
	ofMigration("k_migration", migrationKey),
	ofMigration("k_kinds", kindsKey),
	ofEachCandidate("k_candidate", candidateKey),               // one per submitted Candidate, in ARGV order
	ofMigration("k_status_kind_prefix", statusKindIndexPrefix), // + not_started ':' kind, new or stored
	ofMigration("k_metadata", metadataIndexKey),
}

// legacyDefLua defines isLegacyDef(stored, def, kind): whether stored is
// def as written before def dropped the kind (see candidateRecord), for a
// Candidate of that kind. Records are canonical and "kind" came right after
// "v", so that form is '{"v":1,"kind":' .. a JSON string .. what follows
// '{"v":1' in def; the JSON string must decode to kind (compared decoded,
// not re-encoded: Go and cjson escape differently). Nothing else can have
// that form, so stored and def then describe the same Candidate.
const legacyDefLua = `
local function isLegacyDef(stored, def, kind)
  local head, v = '{"v":1,"kind":', '{"v":1'
  if not stored or string.sub(stored, 1, #head) ~= head or string.sub(def, 1, #v) ~= v then return false end
  local rest = string.sub(def, #v + 1)
  if #stored <= #head + #rest or string.sub(stored, -#rest) ~= rest then return false end
  local ok, k = pcall(cjson.decode, string.sub(stored, #head + 1, #stored - #rest))
  return ok and k == kind
end
`

// submitScript merges one submission of discovered Candidates (at most
// migration.MaxSubmitCandidates) into a Migration, atomically.
//
//	KEYS submitKeys, then the history KEYS; the blocks (k_candidate,
//	     k_candidate_events) have one key per submitted Candidate, in
//	     ARGV order
//	ARGV[1] now, unix milliseconds
//	ARGV[2] round: the discovery round this submission belongs to; ""
//	        for a submission that names none and completes nothing (see
//	        SubmitCandidates: no sweep will ever look for it)
//	ARGV[3..] per Candidate: id, kind, def (canonical JSON
//	        candidateRecord), k, then its k members of the metadata index
//	        (metadataMember of each pair: made in Go, so that the script
//	        decodes nothing for an added Candidate); then the history ARGV,
//	        then the submitted ids again (the ids of the blocks)
//
// Records candidate_discovered in the history of each Candidate updated,
// and one candidates_discovered with the counts. A Candidate added gets no
// stream of its own: a stream costs about 4.8 KB however few its events,
// and most Candidates wait long before anything else happens to them. Its
// candidate_discovered event is kept in its hash instead (field dev), and
// read back as the oldest event of its history (discoveredEvent); its
// stream is made by its first event after that. dev holds the event's id,
// from Redis's clock at the start of the script (so older than any event
// written after it), its actor and the kind discovered, in one of two
// forms:
//   - "<d> <actor>" (written at discovery): the id is "<ctime + d>-0", the
//     actor the rest after the first space, and the kind is the hash's kind
//     field. d is the id's milliseconds counted from ctime: both are read
//     in this script, from two clocks that agree within milliseconds, so d
//     takes a digit or two where the id takes thirteen (ctime is written
//     once, at creation, so d stays true);
//   - JSON {i, by, kind} (written before, and by an update that changes the
//     kind of a Candidate whose dev has the first form: the kind discovered
//     must outlive the field).
//
// Per Candidate, in order:
//   - absent: created not_started (ctime = now, round unless "", dev;
//     inputs, exec and utime are left absent: see encode.go, fields with a
//     default), added to its status×kind index, its metadata pairs'
//     members and the order by last change (now) → outcomeAdded;
//   - not_started, and kind or def differ or it is flagged gone: def, kind,
//     utime, round written, gone cleared, last change now; a kind change
//     moves it between status×kind indexes (and keeps the kind discovered
//     in dev, see above), a metadata change between metadata members (the
//     stored pairs read from the stored def) → outcomeUpdated;
//   - not_started and identical: only round written → outcomeUnchanged. A
//     stored def of the form written before def dropped kind (see
//     legacyDefLua) is identical when it differs from def only by the kind,
//     the hash's: it is rewritten in the new form, and that is no change
//     (counting it updated would give every Candidate of a fleet a stream
//     and an event at its first discovery after an upgrade);
//   - running or completed: nothing written at all (not even round; such a
//     Candidate is never flagged gone, so its round does not matter)
//     → outcomeLeftAlone.
//
// "round written" is: HSET round, or HDEL round when ARGV[2] is "" (what
// a random round of the submission's own stood for before: a round that
// no sweep will look for, as absence is).
//
// Counters (kinds, n:not_started) change once per call, by the sum of the
// batch: a few writes per Candidate, each an append-only file entry, are
// what discovery costs.
//
// The round count. The Migration hash keeps rnd, the round of the latest
// submission that named one, and rnd:n, a lower bound of the number of
// not_started Candidates marked with it: +1 for each one this script marks
// that was not (0 when rnd changes), -1 for each one that leaves
// not_started (moveCandidate, setStatusScript) or loses the mark (a
// submission without a round) while marked with rnd. Every change that
// could make it too high lowers it, so when rnd:n equals n:not_started
// every not_started Candidate is marked with rnd: a complete submission
// of that round has nothing to sweep, and Go skips the sweep (a pass over
// an unchanged fleet then reads no Candidate twice).
//
// Returns {replyMigrationNotFound} when the Migration does not exist
// (nothing is written), else {replyOK, outcome of each Candidate, in
// order, then 1 when every not_started Candidate is marked with the
// round, else 0}.
var submitScript = newHistoryScript(submitKeys, legacyDefLua+`
if redis.call('EXISTS', k_migration) == 0 then return {1} end
local now, round = ARGV[1], ARGV[2]
local NS = 'not_started'
local clock = redis.call('TIME')
local discovered_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function markRound(key)
  if round == '' then redis.call('HDEL', key, 'round') else redis.call('HSET', key, 'round', round) end
end
-- keepDiscoveredKind turns a dev of the "<d> <actor>" form, which takes
-- its kind from the kind field, into the JSON form holding old, the kind
-- discovered, before the field changes.
local function keepDiscoveredKind(key, old)
  local f = redis.call('HMGET', key, 'dev', 'ctime')
  local dev, ctime = f[1], tonumber(f[2] or '')
  if not dev or not ctime or string.sub(dev, 1, 1) == '{' then return end
  local sp = string.find(dev, ' ', 1, true)
  local d = sp and tonumber(string.sub(dev, 1, sp - 1))
  if not d then return end
  redis.call('HSET', key, 'dev', cjson.encode({i = string.format('%d-0', ctime + d), by = string.sub(dev, sp + 1), kind = old or ''}))
end
local out = {0}
local added = 0
local counts = {0, 0, 0, 0}
local kinds = {}
local function count(kind, d) kinds[kind] = (kinds[kind] or 0) + d end
-- members(ps, id): id's members of the metadata index for pairs ps.
local function members(ps, id)
  local ms = {}
  for _, pair in ipairs(ps) do ms[#ms + 1] = #pair .. ':' .. pair .. id end
  return ms
end
-- storedPairs(def): the metadataPair of each pair of a stored def (# is
-- the length in bytes, as Go's len).
local function storedPairs(def)
  local md = cjson.decode(def).metadata
  local out = {}
  if type(md) == 'table' then
    for k, v in pairs(md) do out[#out + 1] = #k .. ':' .. k .. '=' .. v end
  end
  return out
end
-- Index writes are gathered and made once per key at the end (flush): a
-- redis.call per Candidate and index is most of what a discovery costs.
local zadd, zrem, touched = {}, {}, {}
local function add(key, member)
  local l = zadd[key]
  if not l then l = {}; zadd[key] = l end
  l[#l + 1] = 0
  l[#l + 1] = member
end
local function rem(key, member)
  local l = zrem[key]
  if not l then l = {}; zrem[key] = l end
  l[#l + 1] = member
end
local function addMembers(ms)
  for _, mb in ipairs(ms) do add(k_metadata, mb) end
end
-- reindexMetadata moves id from the members of its stored def's pairs to
-- ms, writing only the difference.
local function reindexMetadata(id, def, ms)
  local old, new = {}, {}
  for _, mb in ipairs(members(storedPairs(def), id)) do old[mb] = true end
  for _, mb in ipairs(ms) do
    new[mb] = true
    if not old[mb] then add(k_metadata, mb) end
  end
  for mb in pairs(old) do if not new[mb] then rem(k_metadata, mb) end end
end
local function flush()
  local step = 1000
  for key, l in pairs(zrem) do
    for i = 1, #l, step do redis.call('ZREM', key, unpack(l, i, math.min(i + step - 1, #l))) end
  end
  for key, l in pairs(zadd) do
    for i = 1, #l, step do redis.call('ZADD', key, unpack(l, i, math.min(i + step - 1, #l))) end
  end
  for i = 1, #touched, step / 2 do
    local args = {'ZADD', k_change, 'GT'}
    for j = i, math.min(i + step / 2 - 1, #touched) do
      args[#args + 1] = now
      args[#args + 1] = touched[j]
    end
    redis.call(unpack(args))
  end
end
-- A Migration announced again after a delete may find its Candidates'
-- streams, set to expire: an added Candidate's is its own again. Only
-- then (putMigrationScript says so) is a PERSIST per Candidate worth it.
local reborn = redis.call('HEXISTS', k_migration, 'reborn') == 1
-- The round count (see the doc above): a submission of another round
-- than rnd starts counting that one, from 0; marked is this call's change.
local rnd = redis.call('HGET', k_migration, 'rnd')
if round ~= '' and rnd ~= round then
  redis.call('HSET', k_migration, 'rnd', round, 'rnd:n', 0)
  rnd = round
end
local marked = 0
-- remark(stored): the count's change when a not_started Candidate whose
-- round was stored is marked with round.
local function remark(stored)
  if round ~= '' then
    if stored ~= round then marked = marked + 1 end
  elseif rnd and stored == rnd then
    marked = marked - 1
  end
end
local subs = {}
local i = 3
while i <= own_argc do
  local id, kind, def, k = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local ms = {}
  for j = i + 4, i + 3 + k do ms[#ms + 1] = ARGV[j] end
  i = i + 4 + k
  subs[#subs + 1] = {id, kind}
  local key = k_candidate[id]
  local cur = redis.call('HMGET', key, 'status', 'kind', 'def', 'gone', 'round')
  if not cur[1] then
    if round ~= '' then marked = marked + 1 end
    local dev = string.format('%d', discovered_ms - tonumber(now)) .. ' ' .. h_actor
    if round ~= '' then
      redis.call('HSET', key, 'def', def, 'kind', kind, 'status', NS, 'ctime', now, 'dev', dev, 'round', round)
    else
      redis.call('HSET', key, 'def', def, 'kind', kind, 'status', NS, 'ctime', now, 'dev', dev)
    end
    add(k_status_kind_prefix .. NS .. ':' .. kind, id)
    count(kind, 1)
    touched[#touched + 1] = id
    addMembers(ms)
    if reborn then redis.call('PERSIST', k_candidate_events[id]) end
    added = added + 1
    out[#out + 1] = 1
  elseif cur[1] ~= NS then
    out[#out + 1] = 4
  elseif cur[2] ~= kind or (cur[3] ~= def and not isLegacyDef(cur[3], def, kind)) or cur[4] then
    if cur[3] ~= def then reindexMetadata(id, cur[3], ms) end
    touched[#touched + 1] = id
    local old = cur[2]
    if old ~= kind then
      if old then
        rem(k_status_kind_prefix .. NS .. ':' .. old, id)
        count(old, -1)
      end
      add(k_status_kind_prefix .. NS .. ':' .. kind, id)
      count(kind, 1)
    end
    if cur[2] ~= kind then keepDiscoveredKind(key, cur[2]) end
    redis.call('HSET', key, 'def', def, 'kind', kind, 'utime', now)
    markRound(key)
    remark(cur[5])
    -- midx: the pairs, stored by Loom before the metadata index was one set.
    redis.call('HDEL', key, 'gone', 'midx')
    out[#out + 1] = 2
  else
    if cur[3] ~= def then redis.call('HSET', key, 'def', def) end -- the old form (isLegacyDef)
    markRound(key)
    remark(cur[5])
    out[#out + 1] = 3
  end
end
flush()
for kind, d in pairs(kinds) do
  if d ~= 0 and redis.call('HINCRBY', k_kinds, kind, d) <= 0 then redis.call('HDEL', k_kinds, kind) end
end
if added > 0 then redis.call('HINCRBY', k_migration, 'n:not_started', added) end
for j = 2, #out do
  counts[out[j]] = counts[out[j]] + 1
  -- An added Candidate's discovery is in its hash (dev).
  if out[j] == 2 then
    addEvent({k = 'candidate_discovered', t = now, c = subs[j - 1][1], conly = true,
      d = {outcome = 'updated', kind = subs[j - 1][2]}})
  end
end
addEvent({k = 'candidates_discovered', t = now, d = {added = tostring(counts[1]), updated = tostring(counts[2]),
  unchanged = tostring(counts[3]), left_alone = tostring(counts[4])}})
if rnd and marked ~= 0 then redis.call('HINCRBY', k_migration, 'rnd:n', marked) end
-- Whether every not_started Candidate is marked with round: a complete
-- submission then has nothing to sweep.
local m = redis.call('HMGET', k_migration, 'rnd', 'rnd:n', 'n:not_started')
if round ~= '' and m[1] == round and tonumber(m[2]) == tonumber(m[3]) then
  out[#out + 1] = 1
else
  out[#out + 1] = 0
end
return out
`)

// SubmitCandidates merges a submission into its Migration in one atomic
// script (see submitScript): new Candidates are added not_started, known
// not_started ones updated when their discovered data changed, running and
// completed ones left alone. Result lists are in submission order.
//
// Every submitted not_started Candidate is marked with the submission's
// round (s.Round, or a fresh random value when it is empty, which makes this
// submission a round of its own; an incomplete submission without a round
// stores none instead, see unnamedRound). When s.Complete is set, the
// not_started Candidates not marked with this round are then flagged no longer
// discovered, in batches (see sweepScript) so that a large Migration never
// blocks Redis; they are listed in id order. Submitting a flagged Candidate
// again clears the flag (it counts as updated).
//
// Rounds assume a Migrator uses a fresh Round name for each pass. One edge:
// a Candidate submitted while running (left alone, so not marked) and moved
// back to not_started (a cancelled Run) before the same round completes is
// flagged; the next pass that reports it clears the flag.
func (s *Store) SubmitCandidates(ctx context.Context, sub migration.Submission, now time.Time) (migration.SubmitResult, error) {
	m := sub.MigrationID
	round := sub.Round
	if round == "" && sub.Complete {
		round = unnamedRound()
	}
	perCandidate, err := submissionArgs(sub.Candidates)
	if err != nil {
		return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: %w", m, err)
	}
	args := make([]any, 0, 2+len(perCandidate))
	args = append(args, millis(now), round)
	args = append(args, perCandidate...)
	ids := make([]string, len(sub.Candidates))
	for i, c := range sub.Candidates {
		ids[i] = c.ID
	}
	res, err := submitScript.run(ctx, s.rdb, m, "", ids, s.withHistoryArgs(ctx, now, args...)...).Slice()
	if err != nil {
		return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: %w", m, err)
	}
	code, err := replyCode(res)
	if err != nil {
		return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: %w", m, err)
	}
	switch {
	case code == replyMigrationNotFound:
		return migration.SubmitResult{}, migration.MigrationNotFound(m)
	case code != replyOK || len(res) != 2+len(sub.Candidates):
		return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: unexpected reply of %d elements", m, len(res))
	}
	var out migration.SubmitResult
	for i, c := range sub.Candidates {
		o, err := replyInt(res[1+i])
		if err != nil {
			return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: %w", m, err)
		}
		switch o {
		case outcomeAdded:
			out.Added = append(out.Added, c.ID)
		case outcomeUpdated:
			out.Updated = append(out.Updated, c.ID)
		case outcomeUnchanged:
			out.Unchanged = append(out.Unchanged, c.ID)
		case outcomeLeftAlone:
			out.LeftAlone = append(out.LeftAlone, c.ID)
		default:
			return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: unexpected outcome %d", m, o)
		}
	}
	covered, err := replyInt(res[len(res)-1])
	if err != nil {
		return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: %w", m, err)
	}
	// A pass that marked every not_started Candidate has nothing to flag.
	if sub.Complete && covered == 0 {
		gone, err := s.sweep(ctx, m, round, now)
		if err != nil {
			return migration.SubmitResult{}, err
		}
		out.NoLongerDiscovered = gone
	}
	return out, nil
}

// submissionArgs is submitScript's ARGV of each Candidate, in order: id,
// kind, def, k and its k metadata members. Encoding them is most of the
// CPU a discovery costs Loom, while Redis, which the request waits for
// next, is idle: a large submission is encoded on every CPU at once.
func submissionArgs(cs []migration.Candidate) ([]any, error) {
	parts := make([][]any, len(cs))
	encode := func(from, to int) error {
		for i := from; i < to; i++ {
			c := cs[i]
			def, err := encodeCandidateDef(c)
			if err != nil {
				return err
			}
			a := make([]any, 0, 4+len(c.Metadata))
			a = append(a, c.ID, c.Kind, def, len(c.Metadata))
			for _, k := range slices.Sorted(maps.Keys(c.Metadata)) {
				a = append(a, metadataMember(metadataPair(k, c.Metadata[k]), c.ID))
			}
			parts[i] = a
		}
		return nil
	}
	// Below a few hundred Candidates a goroutine costs more than it saves.
	workers := min(runtime.GOMAXPROCS(0), len(cs)/parallelEncodeMin)
	if workers < 2 {
		if err := encode(0, len(cs)); err != nil {
			return nil, err
		}
	} else {
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { errs[w] = encode(w*len(cs)/workers, (w+1)*len(cs)/workers) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	n := 0
	for _, a := range parts {
		n += len(a)
	}
	out := make([]any, 0, n)
	for _, a := range parts {
		out = append(out, a...)
	}
	return out, nil
}

// parallelEncodeMin is the fewest Candidates per goroutine of
// submissionArgs.
const parallelEncodeMin = 200

// unnamedRound is the round of a complete submission that names none: a
// round of its own, so it must differ from every round ever stored in the
// Migration, and it is stored on each of its Candidates. 12 base32
// characters are 60 random bits: among a million such rounds in one
// Migration, the chance that any two meet is below one in two million (and
// a meeting only spares a Candidate a flag the next pass gives it). "r:"
// tells it from a Migrator's names in a dump.
//
// A submission that names no round and completes nothing needs none: the
// round only serves the sweep of a complete submission, which compares it
// with its own, and a random round of a single incomplete submission never
// equals any (submitScript removes the field instead: absent compares the
// same).
func unnamedRound() string { return "r:" + rand.Text()[:12] }

// defaultSweepBatch is how many ids one sweepScript call examines: small
// enough that a complete discovery of a large Migration never blocks Redis
// for long (a couple of milliseconds per call), large enough that 100k
// Candidates take 200 round trips (measured: ≈ 370 ms in all, on 2 cores).
const defaultSweepBatch = 500

// sweepScript flags, in one batch, the not_started Candidates that a
// complete discovery round did not report.
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] statusKindIndexKey(m, "not_started", k): one kind's at a time
//	KEYS[3] candidateKeyPrefix(m): the script appends each id of the batch,
//	        which it reads from KEYS[2] (so the caller cannot name them)
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
// It walks the not_started indexes rather than every Candidate: only
// not_started Candidates can be flagged, so running and completed ones cost
// the sweep nothing. An id's place in the order is fixed, so a Candidate
// that is not_started when the walk reaches its place is examined, whatever
// moved between batches (one whose kind changed meanwhile was reported, in
// another round: it is not the sweep's).
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

// sweep flags the not_started Candidates of m whose round is not round, one
// batch of s.sweepBatch ids per script call, kind by kind, and returns
// their ids in id order.
func (s *Store) sweep(ctx context.Context, m, round string, now time.Time) ([]string, error) {
	kinds, err := s.rdb.HKeys(ctx, kindsKey(m)).Result()
	if err != nil {
		return nil, fmt.Errorf("complete discovery of %s: %w", m, err)
	}
	var flagged []string
	for _, kind := range kinds {
		keys := []string{migrationKey(m), statusKindIndexKey(m, string(migration.CandidateNotStarted), kind), candidateKeyPrefix(m), changeIndexKey(m)}
		after := ""
		for {
			res, err := sweepScript.Run(ctx, s.rdb, keys, after, s.sweepBatch, round, millis(now)).Slice()
			if err != nil {
				return nil, fmt.Errorf("complete discovery of %s: %w", m, err)
			}
			code, err := replyCode(res)
			if err != nil {
				return nil, fmt.Errorf("complete discovery of %s: %w", m, err)
			}
			if code == replyMigrationNotFound {
				return nil, migration.MigrationNotFound(m) // deleted during the sweep
			}
			if code != replyOK || len(res) < 2 {
				return nil, fmt.Errorf("complete discovery of %s: unexpected reply %v", m, res)
			}
			next, err := replyString(res[1])
			if err != nil {
				return nil, fmt.Errorf("complete discovery of %s: %w", m, err)
			}
			for _, v := range res[2:] {
				id, err := replyString(v)
				if err != nil {
					return nil, fmt.Errorf("complete discovery of %s: %w", m, err)
				}
				flagged = append(flagged, id)
			}
			if next == "" {
				break
			}
			after = next
		}
	}
	slices.Sort(flagged) // byte order, as Redis orders ids
	return flagged, nil
}

// candidateRowLua reads what a Candidate's row shows beside its hash:
// runFieldsOf(runKey) is the HMGET of its run view's status, cstep, step
// (nil each when it has no run view); progressOf(runKey, changeKey, id)
// returns {those, its last change (ZSCORE, "" when unknown)}.
const candidateRowLua = `
local function runFieldsOf(runKey)
  return redis.call('HMGET', runKey, 'status', 'cstep', 'step')
end
local function progressOf(runKey, changeKey, id)
  return {runFieldsOf(runKey), redis.call('ZSCORE', changeKey, id) or ''}
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
var getCandidateScript = readOnlyScript(candidateRowLua + `
-- A deleted Migration's Candidates are gone at once, however far the sweep
-- of their keys has gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
local h = redis.call('HGETALL', KEYS[2])
if #h == 0 then return {2} end
local p = progressOf(KEYS[3], KEYS[4], ARGV[1])
return {0, h, p[1], p[2]}
`)

// GetCandidate returns one Candidate of m.
func (s *Store) GetCandidate(ctx context.Context, m, c string) (migration.Candidate, error) {
	res, err := getCandidateScript.Run(ctx, s.rdb, []string{migrationKey(m), candidateKey(m, c), runKey(m, c), changeIndexKey(m)}, c).Slice()
	if err != nil {
		return migration.Candidate{}, fmt.Errorf("get candidate %s/%s: %w", m, c, err)
	}
	return candidateReply(res, m, c, "get candidate")
}

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
var getMigrationCandidateScript = readOnlyScript(candidateRowLua + `
local m = redis.call('HGETALL', KEYS[1])
if #m == 0 then return {1} end
local h = redis.call('HGETALL', KEYS[2])
if #h == 0 then return {2} end
local p = progressOf(KEYS[3], KEYS[4], ARGV[1])
return {0, h, p[1], p[2], m}
`)

// GetMigrationAndCandidate reads Candidate c of m and m itself in one
// round trip (see getMigrationCandidateScript), without m's per-kind
// counts (Migration.Kinds), which the engine does not need.
func (s *Store) GetMigrationAndCandidate(ctx context.Context, m, c string) (migration.Migration, migration.Candidate, error) {
	res, err := getMigrationCandidateScript.Run(ctx, s.rdb, []string{migrationKey(m), candidateKey(m, c), runKey(m, c), changeIndexKey(m)}, c).Slice()
	if err != nil {
		return migration.Migration{}, migration.Candidate{}, fmt.Errorf("get candidate %s/%s: %w", m, c, err)
	}
	if len(res) != 5 {
		_, err := candidateReply(res, m, c, "get candidate")
		if err == nil {
			err = fmt.Errorf("get candidate %s/%s: unexpected reply %v", m, c, res)
		}
		return migration.Migration{}, migration.Candidate{}, err
	}
	cand, err := candidateReply(res[:4], m, c, "get candidate")
	if err != nil {
		return migration.Migration{}, migration.Candidate{}, err
	}
	h, err := replyFields(res[4])
	if err != nil {
		return migration.Migration{}, migration.Candidate{}, fmt.Errorf("get migration %s: %w", m, err)
	}
	mig, err := decodeMigration(m, h)
	return mig, cand, err
}

// updateInputsScript removes then sets operator inputs of a Candidate, in
// any status. The inputs field is a JSON object edited with Redis's cjson:
// decode, change, encode, all inside the script (atomic; no WATCH retries).
//
//	KEYS k_migration, k_candidate, k_run (the run view of c), then the
//	     history KEYS (see historyLua; the block: c)
//	ARGV[1] now, unix milliseconds
//	ARGV[2] c, the Candidate id
//	ARGV[3] the operator's note, "" for none
//	ARGV[4] r: the number of input names to remove
//	ARGV[5..4+r] input names to remove
//	ARGV[5+r..] pairs of input name, value to set; then the history ARGV
//
// Sets inputs (removed when none is left) and utime = now, and records
// candidate_inputs_updated with the names set and removed, and the note. Returns {replyMigrationNotFound},
// {replyCandidateNotFound} or {replyOK, HGETALL of the Candidate after, run
// fields, last change} (see candidateRowLua).
var updateInputsScript = newHistoryScript(scriptKeys{
	ofMigration("k_migration", migrationKey),
	ofCandidate("k_candidate", candidateKey),
	ofCandidate("k_run", runKey),
}, candidateRowLua+`
if redis.call('EXISTS', k_candidate) == 0 then
  if redis.call('EXISTS', k_migration) == 0 then return {1} end
  return {2}
end
local raw = redis.call('HGET', k_candidate, 'inputs')
local inputs = {}
if raw and raw ~= '' then inputs = cjson.decode(raw) end
local r = tonumber(ARGV[4])
local d = {}
if ARGV[3] ~= '' then d['note'] = ARGV[3] end
for i = 5, 4 + r do inputs[ARGV[i]] = nil; d['removed.' .. ARGV[i]] = '' end
for i = 5 + r, own_argc, 2 do inputs[ARGV[i]] = ARGV[i + 1]; d['inputs.' .. ARGV[i]] = ARGV[i + 1] end
-- No inputs: the field is removed, absent meaning none (see encode.go,
-- fields with a default).
if next(inputs) ~= nil then
  redis.call('HSET', k_candidate, 'inputs', cjson.encode(inputs), 'utime', ARGV[1])
else
  redis.call('HDEL', k_candidate, 'inputs')
  redis.call('HSET', k_candidate, 'utime', ARGV[1])
end
addEvent({k = 'candidate_inputs_updated', t = ARGV[1], c = ARGV[2], d = d})
touch(ARGV[2], ARGV[1])
local p = progressOf(k_run, k_change, ARGV[2])
return {0, redis.call('HGETALL', k_candidate), p[1], p[2]}
`)

// UpdateCandidateInputs removes change.Remove then sets change.Set in the
// stored inputs of a Candidate, in any status, and moves its update time to
// now (see updateInputsScript).
func (s *Store) UpdateCandidateInputs(ctx context.Context, m, c string, change migration.InputChange, now time.Time) (migration.Candidate, error) {
	args := make([]any, 0, 4+len(change.Remove)+2*len(change.Set))
	args = append(args, millis(now), c, change.Note, len(change.Remove))
	for _, k := range change.Remove {
		args = append(args, k)
	}
	for _, k := range slices.Sorted(maps.Keys(change.Set)) {
		args = append(args, k, change.Set[k])
	}
	res, err := updateInputsScript.run(ctx, s.rdb, m, c, []string{c}, s.withHistoryArgs(ctx, now, args...)...).Slice()
	if err != nil {
		return migration.Candidate{}, fmt.Errorf("update inputs of candidate %s/%s: %w", m, c, err)
	}
	return candidateReply(res, m, c, "update inputs of candidate")
}

// candidateReply decodes {code, HGETALL, run fields, last change} replies of
// getCandidateScript and updateInputsScript.
func candidateReply(res []any, m, c, op string) (migration.Candidate, error) {
	code, err := replyCode(res)
	if err != nil {
		return migration.Candidate{}, fmt.Errorf("%s %s/%s: %w", op, m, c, err)
	}
	switch code {
	case replyMigrationNotFound:
		return migration.Candidate{}, migration.MigrationNotFound(m)
	case replyCandidateNotFound:
		return migration.Candidate{}, migration.CandidateNotFound(m, c)
	case replyOK:
	default:
		return migration.Candidate{}, fmt.Errorf("%s %s/%s: unexpected reply %v", op, m, c, res)
	}
	if len(res) != 4 {
		return migration.Candidate{}, fmt.Errorf("%s %s/%s: unexpected reply %v", op, m, c, res)
	}
	h, err := replyFields(res[1])
	if err != nil {
		return migration.Candidate{}, fmt.Errorf("%s %s/%s: %w", op, m, c, err)
	}
	return decodeCandidateRow(m, c, h, res[2], res[3])
}

// setStatusScript moves a Candidate from one status to another if its status
// is still the expected one (compare-and-set).
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidateKey(m, c)
//	KEYS[3] statusKindIndexPrefix(m): the script appends from or to, ':'
//	        and the Candidate's kind, which it reads (so the caller cannot
//	        name those keys)
//	KEYS[4] stepOrderKey(m)
//	KEYS[5] changeIndexKey(m)
//	ARGV[1] c, the Candidate id (member of the indexes)
//	ARGV[2] from: the status expected
//	ARGV[3] to: the new status
//	ARGV[4] now, unix milliseconds
//
// On success: status = to, utime = now, moved from the status×kind index of
// from to that of to, out of the step order when not_started (into it, at
// the start, when it was not there), last change now, n:from decremented
// and n:to incremented; O(log N). from == to is a success that writes
// nothing.
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
if from == 'not_started' then
  -- The round count (see submitScript) loses a marked Candidate.
  local r = redis.call('HGET', KEYS[2], 'round')
  if r and r == redis.call('HGET', KEYS[1], 'rnd') then redis.call('HINCRBY', KEYS[1], 'rnd:n', -1) end
end
redis.call('HSET', KEYS[2], 'status', to, 'utime', ARGV[4])
redis.call('ZREM', KEYS[3] .. from .. ':' .. kind, id)
redis.call('ZADD', KEYS[3] .. to .. ':' .. kind, 0, id)
if to == 'not_started' then
  redis.call('ZREM', KEYS[4], id)
else
  redis.call('ZADD', KEYS[4], 'NX', 0, id)
end
redis.call('ZADD', KEYS[5], 'GT', ARGV[4], id)
redis.call('HINCRBY', KEYS[1], 'n:' .. from, -1)
redis.call('HINCRBY', KEYS[1], 'n:' .. to, 1)
return {0}
`)

// SetCandidateStatus moves Candidate c of m from status from to status to,
// atomically and in O(log N) (see setStatusScript). When the Candidate's
// status is not from, it changes nothing and refuses with
// migration.ErrFailedPrecondition, reason migration.ReasonCandidateStatusChanged and
// the current status in the metadata key "status". from == to is accepted
// and writes nothing. Unknown ids are refusals wrapping migration.ErrNotFound.
func (s *Store) SetCandidateStatus(ctx context.Context, m, c string, from, to migration.CandidateStatus, now time.Time) error {
	if !from.Valid() {
		return migration.InvalidArgument("from", migration.ReasonInvalidStatus, "unknown candidate status %q", from)
	}
	if !to.Valid() {
		return migration.InvalidArgument("to", migration.ReasonInvalidStatus, "unknown candidate status %q", to)
	}
	res, err := setStatusScript.Run(ctx, s.rdb, []string{
		migrationKey(m),
		candidateKey(m, c),
		statusKindIndexPrefix(m),
		stepOrderKey(m),
		changeIndexKey(m),
	}, c, string(from), string(to), millis(now)).Slice()
	if err != nil {
		return fmt.Errorf("set status of candidate %s/%s: %w", m, c, err)
	}
	code, err := replyCode(res)
	if err != nil {
		return fmt.Errorf("set status of candidate %s/%s: %w", m, c, err)
	}
	switch code {
	case replyOK:
		return nil
	case replyMigrationNotFound:
		return migration.MigrationNotFound(m)
	case replyCandidateNotFound:
		return migration.CandidateNotFound(m, c)
	case replyStatusChanged:
		cur := ""
		if len(res) > 1 {
			cur, _ = replyString(res[1])
		}
		return migration.FailedPrecondition(migration.ReasonCandidateStatusChanged,
			"candidate %q of migration %q is %s, not %s", c, m, cur, from).
			With("migration_id", m).With("candidate_id", c).With("status", cur)
	}
	return fmt.Errorf("set status of candidate %s/%s: unexpected reply %v", m, c, res)
}
