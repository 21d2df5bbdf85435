package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/loomhq/loom/server/internal/migration"
)

// candidates_list.go owns ListCandidates: filters, orders and cursors over
// the Candidate indexes, in one script per page.

// listCandidatesScript reads one page of the Candidates of a Migration
// that match every filter, in one order, with the number of matches and
// each row's progress, consistently (one script, one view).
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] candidateKeyPrefix(m)
//	KEYS[3] runKeyPrefix(m): the script appends the id of each row of the
//	        page to these two, ids it reads (the page is found inside the
//	        script, so the caller cannot name those keys)
//	KEYS[4] changeIndexKey(m) (each row's last change; the order by it)
//	KEYS[5] stepOrderKey(m)
//	KEYS[6] kindsKey(m)
//	KEYS[7] statusKindIndexPrefix(m): the script appends status ':' kind,
//	        for the kinds of KEYS[6]
//	KEYS[8] metadataIndexKey(m)
//	KEYS[9] listTempKey(m): scratch
//	KEYS[10..] plain filter sets (score 0, ids): current step name, current
//	        step status
//	ARGV[1] the order: id, status, step or change
//	ARGV[2] id prefix, "" for none
//	ARGV[3] "1" for descending order
//	ARGV[4], ARGV[5] the cursor: score and id of the last row of the
//	        previous page (ARGV[5] "" for the first page)
//	ARGV[6] most rows to return (page size + 1, to learn if more exist)
//	ARGV[7] status, "" for any; ARGV[8] kind, "" for any
//	ARGV[9] the most Candidates a page examines (the walk's budget)
//	ARGV[10] the most Candidates counted one by one for an exact total
//	ARGV[11] the largest range a check reads whole (see keep)
//	ARGV[12..] metadataRangePrefix of each metadata pair filtered on
//
// Filters are ranges of sorted sets whose members are ids in id order (a
// prefix before the id for cands:meta): status and kind one status×kind
// set, or the union of a status's (kind's) sets; each plain set; each
// metadata pair's range of cands:meta. An id prefix narrows every range
// (two ZLEXCOUNTs). With no filter, the Migration is the union of every
// status×kind set.
//
// A page in id order walks the filter with the fewest members (its ranges
// merged in id order) from the cursor, keeping the ids every other filter
// holds (ZMSCORE, a batch of up to 256 at a time), until the page is full
// or ARGV[9] ids were examined: then the page is short, and its cursor is
// the last id examined. A page costs what it examines: O(page ÷ the share
// of the smallest filter's members that match), never the size of the
// sets.
//
// Status order is id order within each status in turn (not_started,
// running, completed), the cursor's score saying which. Current-step order
// is the not_started Candidates (score -1) in id order, then the step
// order's set (stepOrderKey: running and completed Candidates), walked
// from the cursor and checked against every filter. Last-change order walks
// changeIndexKey so. Where filters are so sparse that such a walk would
// examine more than ARGV[9] for a page, the script gathers their matches
// (the smallest filter walked whole, at most a few hundred) with their
// scores into KEYS[9] and reads the page there. Positions in a scored set
// are found by ZCOUNT, then a binary search over the ranks of the cursor's
// score's ties (ties are in member byte order; bytes are compared one by
// one, never with Lua's locale-dependent string <).
//
// The total. With no filter or one, the number of members of its ranges
// (counters and ZCARD/ZLEXCOUNT: exact, O(kinds · log N)). With more, the
// smallest filter walked whole and checked when it has at most ARGV[10]
// members: exact; else 512 of its members sampled (32 runs of 16 at
// evenly spaced ranks) and checked, and the total estimated from the share
// that match (flagged as an estimate; its error is about that of a sample
// of 512: ±4.5 % of the smallest filter's size at worst, more relative to
// the total the rarer the matches, and more where Candidates next to each
// other in id order tend to match together). 1,024 would halve the
// variance, and cost a millisecond more: a sampled Candidate costs about
// 2 µs (a read at a random place, then the check), and the sample was
// half of the most expensive pages' time (kind + a team at 100,000).
//
// Returns {replyMigrationNotFound}, else {replyOK, total, "1" when the total
// is an estimate else "0", the cursor of a short page ("" when the page is
// full or the last), then per row: id, score in the order, HGETALL of the
// Candidate, its run fields and last change (candidateRowLua)}.
var listCandidatesScript = unreplicatedScript(candidateRowLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
-- A listing only reads; its writes are to the scratch set, which it
-- deletes before it ends. Propagated, each would be an entry of the
-- append-only file and of every replica's stream, and with appendfsync
-- always an fsync before the answer: a page of several ranges paid one
-- per merge of 256, milliseconds each on a busy disk. Not propagated, the
-- scratch set exists on this Redis alone, and only while the script runs
-- (should a script fail midway, the next one starts by deleting it).
redis.set_repl(redis.REPL_NONE)
redis.call('DEL', KEYS[9])
local order, prefix, desc = ARGV[1], ARGV[2], ARGV[3] == '1'
local cur_score, cur_id = ARGV[4], ARGV[5]
local n = tonumber(ARGV[6])
local fstatus, fkind = ARGV[7], ARGV[8]
local budget, exact_max, small_max = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local STATUSES = {'not_started', 'running', 'completed'}
local kinds = redis.call('HKEYS', KEYS[6])

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

-- range: the members of key that are pre followed by an id with the id
-- prefix, as ranks [lo, hi).
local function range(key, pre)
  if prefix == '' and pre == '' then return {key = key, pre = pre, lo = 0, hi = redis.call('ZCARD', key)} end
  return {key = key, pre = pre, lo = redis.call('ZLEXCOUNT', key, '-', '(' .. pre .. prefix),
    hi = redis.call('ZLEXCOUNT', key, '-', '(' .. pre .. prefix .. '\255')}
end
local function filter(ranges)
  local size = 0
  for _, r in ipairs(ranges) do size = size + r.hi - r.lo end
  return {ranges = ranges, size = size}
end
local function sk(st, k) return range(KEYS[7] .. st .. ':' .. k, '') end

-- filters(st): the filters of the listing with status st ("" for any).
local function filters(st)
  local fs = {}
  if st ~= '' and fkind ~= '' then
    fs[#fs + 1] = filter({sk(st, fkind)})
  elseif st ~= '' then
    local rs = {}
    for _, k in ipairs(kinds) do rs[#rs + 1] = sk(st, k) end
    fs[#fs + 1] = filter(rs)
    fs[#fs].others = function()
      local os = {}
      for _, s in ipairs(STATUSES) do
        if s ~= st then for _, k in ipairs(kinds) do os[#os + 1] = sk(s, k) end end
      end
      return os
    end
  elseif fkind ~= '' then
    local rs = {}
    for _, s in ipairs(STATUSES) do rs[#rs + 1] = sk(s, fkind) end
    fs[#fs + 1] = filter(rs)
    fs[#fs].others = function()
      local os = {}
      for _, s in ipairs(STATUSES) do
        for _, k in ipairs(kinds) do if k ~= fkind then os[#os + 1] = sk(s, k) end end
      end
      return os
    end
  end
  for i = 10, #KEYS do fs[#fs + 1] = filter({range(KEYS[i], '')}) end
  for i = 12, #ARGV do fs[#fs + 1] = filter({range(KEYS[8], ARGV[i])}) end
  return fs
end
local function everything()
  local rs = {}
  for _, s in ipairs(STATUSES) do
    for _, k in ipairs(kinds) do rs[#rs + 1] = sk(s, k) end
  end
  return filter(rs)
end
-- smallest(fs): the filter to walk and the others, to check.
local function smallest(fs)
  if #fs == 0 then return everything(), {} end
  local best = 1
  for i = 2, #fs do if fs[i].size < fs[best].size then best = i end end
  local others = {}
  for i, f in ipairs(fs) do if i ~= best then others[#others + 1] = f end end
  return fs[best], others
end
-- keep(others, ids): which of ids every filter of others holds. It
-- looks up only what is still undecided: the most selective filter first
-- (an id it rejects is not looked up again), and within a filter its
-- ranges of up to small_max (512) ids first, read whole once per script into one Lua
-- set (a step's set, a status's few Candidates of a kind: one lookup in
-- Lua where a ZMSCORE costs Redis a lookup and Lua a string per member
-- and range), then its larger ranges, largest first (most ids it holds
-- are found at the first look).
--
-- A status's filter (a kind's) may be checked by its complement instead:
-- every Candidate is in exactly one status×kind set, so an id is of the
-- status when it is in none of the other statuses' sets. When the
-- complement is the smaller (not_started, early in a Migration: a few
-- hundred started among 100,000), that is what is looked up.
local function bySize(a, b) return a.size < b.size end
local function lookups(f, tag, ranges)
  local c = f[tag]
  if c then return c end
  c = {big = {}}
  for _, r in ipairs(ranges) do
    local size = r.hi - r.lo
    if size > small_max then
      r.size = size
      c.big[#c.big + 1] = r
    elseif size > 0 then
      c.set = c.set or {}
      for _, m in ipairs(redis.call('ZRANGE', r.key, r.lo, r.hi - 1)) do c.set[string.sub(m, #r.pre + 1)] = true end
    end
  end
  table.sort(c.big, function(a, b) return a.size > b.size end)
  f[tag] = c
  return c
end
local function keep(others, ids)
  local ok = {}
  for i = 1, #ids do ok[i] = true end
  local fs = {}
  for i, f in ipairs(others) do fs[i] = f end
  table.sort(fs, bySize)
  for _, f in ipairs(fs) do
    local pending = {}
    for i = 1, #ids do if ok[i] then pending[#pending + 1] = i end end
    if #pending == 0 then break end
    if f.others and not f.complement then f.complement = filter(f.others()) end
    local negate = f.complement ~= nil and f.complement.size < f.size
    local c
    if negate then c = lookups(f, 'neg', f.complement.ranges) else c = lookups(f, 'pos', f.ranges) end
    -- An id found in a range is decided (kept, or dropped when negate);
    -- one found in none is dropped (kept when negate) once every range
    -- was looked at.
    if c.set then
      local still = {}
      for _, i in ipairs(pending) do
        if c.set[ids[i]] then
          if negate then ok[i] = false end
        else
          still[#still + 1] = i
        end
      end
      pending = still
    end
    for _, r in ipairs(c.big) do
      if #pending == 0 then break end
      -- (Lua copies a string concatenated after an empty one.)
      local ms = {}
      if r.pre == '' then
        for j, i in ipairs(pending) do ms[j] = ids[i] end
      else
        for j, i in ipairs(pending) do ms[j] = r.pre .. ids[i] end
      end
      local sc = redis.call('ZMSCORE', r.key, unpack(ms))
      local still = {}
      for j, i in ipairs(pending) do
        if sc[j] then
          if negate then ok[i] = false end
        else
          still[#still + 1] = i
        end
      end
      pending = still
    end
    if not negate then
      for _, i in ipairs(pending) do ok[i] = false end
    end
  end
  return ok
end

-- walker(f, after, back): the ids of f's ranges merged in id order
-- (backwards when back), strictly after id after ("" from the start), in
-- batches.
local function walker(f, after, back)
  local heads = {}
  for _, r in ipairs(f.ranges) do
    if r.hi > r.lo then
      local pos
      if not back then
        pos = r.lo
        if after ~= '' then pos = math.max(r.lo, redis.call('ZLEXCOUNT', r.key, '-', '[' .. r.pre .. after)) end
      else
        pos = r.hi - 1
        if after ~= '' then pos = math.min(r.hi, redis.call('ZLEXCOUNT', r.key, '-', '(' .. r.pre .. after)) - 1 end
      end
      heads[#heads + 1] = {r = r, pos = pos, buf = {}, at = 1}
    end
  end
  -- fill(h, want): at least want ids unread in h's buffer, or all that
  -- are left. Returns how many are unread.
  local function fill(h, want)
    local r = h.r
    while #h.buf - h.at + 1 < want do
      local take = math.max(want - (#h.buf - h.at + 1), 32)
      local ms
      if not back then
        if h.pos >= r.hi then break end
        local to = math.min(r.hi - 1, h.pos + take - 1)
        ms = redis.call('ZRANGE', r.key, h.pos, to)
        h.pos = to + 1
      else
        if h.pos < r.lo then break end
        local from = math.max(r.lo, h.pos - take + 1)
        local fwd = redis.call('ZRANGE', r.key, from, h.pos)
        ms = {}
        for i = #fwd, 1, -1 do ms[#ms + 1] = fwd[i] end
        h.pos = from - 1
      end
      if #ms == 0 then break end
      for _, m in ipairs(ms) do
        if r.pre ~= '' then m = string.sub(m, #r.pre + 1) end
        h.buf[#h.buf + 1] = m
      end
    end
    return #h.buf - h.at + 1
  end
  -- next(max): up to max ids, in order; fewer only at the end. Several
  -- ranges are merged by Redis (a sorted set orders members by their
  -- bytes, as Lua cannot without a byte loop): the next max of each, put
  -- in the scratch set, whose first max are the next max of all.
  return function(max)
    local out = {}
    if #heads == 1 then
      local h = heads[1]
      fill(h, max)
      while #out < max and h.at <= #h.buf do
        out[#out + 1] = h.buf[h.at]
        h.at = h.at + 1
      end
      return out
    end
    local args = {'ZADD', KEYS[9]}
    for _, h in ipairs(heads) do
      local left = fill(h, max)
      for i = h.at, h.at + math.min(left, max) - 1 do
        args[#args + 1] = 0
        args[#args + 1] = h.buf[i]
      end
    end
    if #args == 2 then return out end
    redis.call(unpack(args))
    if not back then
      out = redis.call('ZRANGE', KEYS[9], 0, max - 1)
    else
      out = redis.call('ZRANGE', KEYS[9], 0, max - 1, 'REV')
    end
    redis.call('DEL', KEYS[9])
    local taken = {}
    for _, id in ipairs(out) do taken[id] = true end
    for _, h in ipairs(heads) do
      while h.at <= #h.buf and taken[h.buf[h.at]] do h.at = h.at + 1 end
    end
    return out
  end
end

-- row(id, score) adds a row to the page; rows(out) reads them once the
-- page is known, each row's last change for all in one ZMSCORE.
local page_ids, page_scores = {}, {}
local function row(id, score)
  page_ids[#page_ids + 1] = id
  page_scores[#page_scores + 1] = score
end
local function rows(out)
  if #page_ids == 0 then return end
  local changed = redis.call('ZMSCORE', KEYS[4], unpack(page_ids))
  for i, id in ipairs(page_ids) do
    out[#out + 1] = id
    out[#out + 1] = page_scores[i]
    out[#out + 1] = redis.call('HGETALL', KEYS[2] .. id)
    out[#out + 1] = runFieldsOf(KEYS[3] .. id)
    out[#out + 1] = changed[i] or ''
  end
end

-- The total, from the filters of the listing (whatever its order).
local total, estimate = 0, '0'
do
  local fs = filters(fstatus)
  local d, others = smallest(fs)
  if #others == 0 then
    total = d.size
  elseif d.size <= math.max(exact_max, 512) then -- (a sample would be all of it)
    local next = walker(d, '', false)
    while true do
      local ids = next(256)
      if #ids == 0 then break end
      for _, ok in ipairs(keep(others, ids)) do if ok then total = total + 1 end end
    end
  else
    -- 32 blocks of 16 consecutive members, evenly spaced: 32 calls, not
    -- 512.
    local ids, blocks, len = {}, 32, 16
    for i = 0, blocks - 1 do
      local at = math.floor(i * d.size / blocks)
      for _, r in ipairs(d.ranges) do
        local c = r.hi - r.lo
        if at < c then
          for _, m in ipairs(redis.call('ZRANGE', r.key, r.lo + at, r.lo + math.min(at + len, c) - 1)) do
            ids[#ids + 1] = string.sub(m, #r.pre + 1)
          end
          break
        end
        at = at - c
      end
    end
    local hit = 0
    for _, ok in ipairs(keep(others, ids)) do if ok then hit = hit + 1 end end
    total, estimate = math.floor(hit * d.size / #ids + 0.5), '1'
  end
end
local out = {0, total, estimate, ''}
if total == 0 then return out end
local found, scanned = 0, 0
-- The last Candidate examined, as its score and id (joined only for the
-- cursor of a page cut short: not once per Candidate examined).
local last_score, last_id

-- idWalk fills the page from filters fs in id order after id after, each
-- row scored score. Returns whether the walk ended by the budget.
local function idWalk(fs, after, score)
  local d, others = smallest(fs)
  local next = walker(d, after, desc)
  while found < n do
    if scanned >= budget then return true end
    local want = 256
    if #others == 0 then want = n - found end
    local ids = next(math.min(want, budget - scanned))
    if #ids == 0 then return false end
    local ok = keep(others, ids)
    for i, id in ipairs(ids) do
      scanned = scanned + 1
      last_score, last_id = score, id
      if ok[i] then
        row(id, score)
        found = found + 1
        if found == n then return false end
      end
    end
  end
  return false
end

-- before(src, score, id, incl): how many members of the scored set src
-- come before (score, id), or before or at it when incl.
local function before(src, score, id, incl)
  local a = redis.call('ZCOUNT', src, '-inf', '(' .. score)
  local b = redis.call('ZCOUNT', src, '-inf', score)
  while a < b do
    local mid = math.floor((a + b) / 2)
    local c = cmp(redis.call('ZRANGE', src, mid, mid)[1], id)
    if c < 0 or (incl and c == 0) then a = mid + 1 else b = mid end
  end
  return a
end

-- scoredWalk fills the page from the scored set src, in its order after
-- (score, id) (id "" from the start), keeping the members every filter of
-- fs holds and that have the id prefix. Returns whether the walk ended by
-- the budget.
local function scoredWalk(src, fs, after_score, after_id)
  local others = fs
  if #fs > 0 then
    local d, rest = smallest(fs)
    local card = redis.call('ZCARD', src)
    if d.size == 0 then return false end
    if n * card / d.size > budget then
      -- Sparse: gather the matches, scored, and page through them.
      local next = walker(d, '', false)
      -- Gathered here, written after the walk: a walk of several ranges
      -- merges them through the same scratch set.
      local gathered = {}
      while true do
        local ids = next(256)
        if #ids == 0 then break end
        local ok = keep(rest, ids)
        local sc = redis.call('ZMSCORE', src, unpack(ids))
        for i, id in ipairs(ids) do
          if ok[i] and sc[i] then
            gathered[#gathered + 1] = sc[i]
            gathered[#gathered + 1] = id
          end
        end
      end
      for i = 1, #gathered, 1000 do
        redis.call('ZADD', KEYS[9], unpack(gathered, i, math.min(i + 999, #gathered)))
      end
      redis.call('PEXPIRE', KEYS[9], 60000)
      src, others = KEYS[9], {}
    end
  end
  local card = redis.call('ZCARD', src)
  local pos
  if not desc then
    pos = 0
    if after_id ~= '' then pos = before(src, after_score, after_id, true) end
  else
    pos = card - 1
    if after_id ~= '' then pos = before(src, after_score, after_id, false) - 1 end
  end
  -- The walk reads ids alone: Redis formats a score as text for every
  -- member of a WITHSCORES reply, which cost more than everything else a
  -- walk did per Candidate examined (0.5 µs of its 2.4 at 100,000); the
  -- scores are read for the page's rows, and for the last Candidate
  -- examined when the budget cuts the page short.
  local cut = false
  local page = {}
  while found + #page < n do
    if scanned >= budget then cut = true break end
    local take = math.min(256, budget - scanned)
    local ids
    if not desc then
      if pos >= card then break end
      ids = redis.call('ZRANGE', src, pos, pos + take - 1)
      pos = pos + #ids
    else
      if pos < 0 then break end
      local from = math.max(0, pos - take + 1)
      local fwd = redis.call('ZRANGE', src, from, pos)
      ids = {}
      for i = #fwd, 1, -1 do ids[#ids + 1] = fwd[i] end
      pos = from - 1
    end
    if #ids == 0 then break end
    local ok = keep(others, ids)
    for i, id in ipairs(ids) do
      scanned = scanned + 1
      last_id = id
      if ok[i] and (prefix == '' or string.sub(id, 1, #prefix) == prefix) then
        page[#page + 1] = id
        if found + #page == n then break end
      end
    end
  end
  if #page > 0 then
    local sc = redis.call('ZMSCORE', src, unpack(page))
    for i, id in ipairs(page) do row(id, sc[i]) end
    found = found + #page
  end
  if cut and found < n and last_id then last_score = redis.call('ZSCORE', src, last_id) end
  if src == KEYS[9] then redis.call('DEL', KEYS[9]) end
  return cut
end

local cut = false
if order == 'id' then
  cut = idWalk(filters(fstatus), cur_id, '0')
elseif order == 'status' then
  local band = tonumber(cur_score) or 0
  local from, to, step = 1, 3, 1
  if desc then from, to, step = 3, 1, -1 end
  for b = from, to, step do
    local st = STATUSES[b]
    local started = cur_id == '' or (not desc and b > band) or (desc and b < band)
    if (cur_id == '' or b == band or started) and (fstatus == '' or fstatus == st) and not cut and found < n then
      local after = ''
      if not started then after = cur_id end
      cut = idWalk(filters(st), after, tostring(b))
    end
  end
elseif order == 'step' then
  -- Band -1: the not_started Candidates; then the step order's set.
  local in_first = cur_id ~= '' and tonumber(cur_score) < 0
  local function first(after)
    if fstatus == '' or fstatus == 'not_started' then return idWalk(filters('not_started'), after, '-1') end
    return false
  end
  local function second(s, id)
    if fstatus ~= 'not_started' then return scoredWalk(KEYS[5], filters(fstatus), s, id) end
    return false
  end
  if not desc then
    if cur_id == '' or in_first then
      local after = ''
      if in_first then after = cur_id end
      cut = first(after)
      if not cut and found < n then cut = second('', '') end
    else
      cut = second(cur_score, cur_id)
    end
  else
    if not in_first then
      cut = second(cur_score, cur_id)
      if not cut and found < n then cut = first('') end
    else
      cut = first(cur_id)
    end
  end
else
  cut = scoredWalk(KEYS[4], filters(fstatus), cur_score, cur_id)
end
-- Cut short by the budget: the page's cursor is the last Candidate
-- examined.
if cut and found < n and last_id then out[4] = last_score .. ' ' .. last_id end
rows(out)
return out
`)

// ListCandidates returns one page of m's Candidates matching f, in f's
// order, with each one's progress and the number of Candidates matching f,
// read in one script (one round trip, one consistent view; see
// listCandidatesScript for what each filter and order costs). page.Limit ≤ 0
// means migration.DefaultCandidatePageSize; page.After is the Next of the
// previous page, made with the same filter.
func (s *Store) ListCandidates(ctx context.Context, m string, f migration.CandidateFilter, page migration.PageRequest) (migration.CandidatePage, error) {
	if f.Status != "" && !f.Status.Valid() {
		return migration.CandidatePage{}, migration.InvalidArgument("status", migration.ReasonInvalidStatus, "unknown candidate status %q", f.Status)
	}
	if f.CurrentStepStatus != "" && !slices.Contains(migration.StepStatuses, f.CurrentStepStatus) {
		return migration.CandidatePage{}, migration.InvalidArgument("current_step_status", migration.ReasonInvalidStatus, "unknown step status %q", f.CurrentStepStatus)
	}
	afterScore, afterID, err := parseCandidateCursor(page.After)
	if err != nil {
		return migration.CandidatePage{}, err
	}
	limit := page.Limit
	if limit <= 0 {
		limit = migration.DefaultCandidatePageSize
	}
	order := "id"
	switch f.Order {
	case "", migration.OrderByID:
	case migration.OrderByStatus:
		order = "status"
	case migration.OrderByCurrentStep:
		order = "step"
	case migration.OrderByLastChange:
		order = "change"
	default:
		return migration.CandidatePage{}, migration.InvalidArgument("order_by", migration.ReasonInvalidOrder, "unknown candidate order %q", f.Order)
	}
	keys := []string{migrationKey(m), candidateKeyPrefix(m), runKeyPrefix(m), changeIndexKey(m), stepOrderKey(m),
		kindsKey(m), statusKindIndexPrefix(m), metadataIndexKey(m), listTempKey(m)}
	if f.CurrentStep != "" {
		keys = append(keys, currentStepIndexKey(m, f.CurrentStep))
	}
	if f.CurrentStepStatus != "" {
		keys = append(keys, runStepIndexKey(m, string(f.CurrentStepStatus)))
	}
	desc := "0"
	if f.Descending {
		desc = "1"
	}
	args := []any{order, f.IDPrefix, desc, afterScore, afterID, limit + 1, string(f.Status), f.Kind, s.walkBudget, s.exactCountMax, s.smallRangeMax}
	for _, k := range slices.Sorted(maps.Keys(f.Metadata)) {
		args = append(args, metadataRangePrefix(metadataPair(k, f.Metadata[k])))
	}
	what := fmt.Sprintf("list candidates of %s", m)
	res, err := listCandidatesScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return migration.CandidatePage{}, fmt.Errorf("%s: %w", what, err)
	}
	code, err := replyCode(res)
	if err != nil {
		return migration.CandidatePage{}, fmt.Errorf("%s: %w", what, err)
	}
	if code == replyMigrationNotFound {
		return migration.CandidatePage{}, migration.MigrationNotFound(m)
	}
	const width = 5 // id, score, hash, run fields, last change
	if code != replyOK || len(res) < 4 || (len(res)-4)%width != 0 {
		return migration.CandidatePage{}, fmt.Errorf("%s: unexpected reply of %d elements", what, len(res))
	}
	var out migration.CandidatePage
	estimate, err1 := replyString(res[2])
	// A walk cut short says where to go on from.
	next, err2 := replyString(res[3])
	total, err3 := replyInt(res[1])
	if err := errors.Join(err1, err2, err3); err != nil {
		return migration.CandidatePage{}, fmt.Errorf("%s: %w", what, err)
	}
	out.Total, out.TotalIsEstimate, out.Next = total, estimate == "1", next
	rows := res[4:]
	more := len(rows)/width > limit
	if more {
		rows = rows[:width*limit]
	}
	out.Candidates = make([]migration.Candidate, 0, len(rows)/width)
	for i := 0; i < len(rows); i += width {
		id, err1 := replyString(rows[i])
		score, err2 := replyString(rows[i+1])
		h, err3 := replyFields(rows[i+2])
		if err := errors.Join(err1, err2, err3); err != nil {
			return migration.CandidatePage{}, fmt.Errorf("%s: %w", what, err)
		}
		if more && i == len(rows)-width {
			out.Next = id // in id order, the id is the place
			if order != "id" {
				out.Next = score + " " + id
			}
		}
		if len(h) == 0 {
			continue // cannot happen: indexes and hashes change together
		}
		c, err := decodeCandidateRow(m, id, h, rows[i+3], rows[i+4])
		if err != nil {
			return migration.CandidatePage{}, fmt.Errorf("%s: %w", what, err)
		}
		out.Candidates = append(out.Candidates, c)
	}
	return out, nil
}

// defaultWalkBudget is the most Candidates one page's walk examines (see
// listCandidatesScript): a few milliseconds of Redis.
const defaultWalkBudget = 20_000

// defaultExactCountMax is the most Candidates a listing with several
// filters counts one by one for its total (a few milliseconds); above it the
// total is estimated (see listCandidatesScript).
const defaultExactCountMax = 2_000

// defaultSmallRangeMax is the largest range of a filter a listing reads
// whole to check ids against (see keep in listCandidatesScript).
const defaultSmallRangeMax = 512

// parseCandidateCursor reads a CandidatePage.Next: "<score> <id>", the
// place of the last row in the listing's order. A bare id (the cursor of
// listings in id order before orders existed) has score 0.
func parseCandidateCursor(after string) (score, id string, err error) {
	if after == "" {
		return "", "", nil
	}
	score, id, ok := strings.Cut(after, " ")
	if !ok {
		return "0", after, nil
	}
	if f, perr := strconv.ParseFloat(score, 64); perr != nil || math.IsNaN(f) || math.IsInf(f, 0) || id == "" {
		return "", "", migration.InvalidArgument("page_token", migration.ReasonInvalidPageToken, "malformed candidate cursor")
	}
	return score, id, nil
}
