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

	"github.com/redis/go-redis/v9"

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
//	ARGV[7] walk when every filter set has more members than this (below)
//	ARGV[8] the most members a walk examines for one page
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
// The walk. Where the rows would be an intersection (two filter sets, or
// one with an order other than id) of sets that are all large (more than
// ARGV[7] members) and no id prefix, the script does not build it: it walks
// a driver in the listing's order (the smallest filter set for id order,
// else the order's set) from the cursor, keeping the members every other
// filter set holds (ZMSCORE, up to 256 at a time), until the page is full or
// ARGV[8] members were examined; then the page is short and its cursor is
// the last member examined. Where the matches are so sparse that a page
// would examine more than 4 × ARGV[8] members (the page size × the driver's
// size ÷ the total), the script intersects instead. The total is ZINTERCARD of the filter sets
// (Redis ≥ 7.0; on 6.2 the script takes the intersection instead). A page
// then costs what it examines, O(page ÷ the share of matches), not the size
// of the sets: with 100,000 Candidates, status and a team of 5 % were a
// 7.7 ms intersection, and are ~2 ms walked.
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
// Returns {replyMigrationNotFound}, else {replyOK, total, the cursor of a
// short page ("" when the page is full or the last: see the walk), then per
// row: id, score in src, HGETALL of the Candidate, its run fields and last
// change (candidateRowLua)}.
var listCandidatesScript = redis.NewScript(candidateRowLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
local lex, prefix, desc = ARGV[1] == '1', ARGV[2], ARGV[3] == '1'
local n = tonumber(ARGV[6])
local sets = {}
for i = 9, #KEYS do sets[#sets + 1] = KEYS[i] end
local src, scratch = KEYS[5], false
local walk_min, budget = tonumber(ARGV[7]), tonumber(ARGV[8])

local function row(out, id, score)
  local p = progressOf(KEYS[3] .. id, KEYS[4], id)
  out[#out + 1] = id
  out[#out + 1] = score
  out[#out + 1] = redis.call('HGETALL', KEYS[2] .. id)
  out[#out + 1] = p[1]
  out[#out + 1] = p[2]
end
-- The walk (see the doc): the driver and the sets it is checked against.
local driver, others, total = nil, {}, nil
if prefix == '' and (#sets > 1 or (#sets == 1 and not lex)) then
  local smallest, size = 1, redis.call('ZCARD', sets[1])
  for i = 2, #sets do
    local c = redis.call('ZCARD', sets[i])
    if c < size then smallest, size = i, c end
  end
  if size > walk_min then
    if #sets == 1 then
      total = size
    else
      total = redis.pcall('ZINTERCARD', #sets, unpack(sets))
      if type(total) == 'table' then total = nil end -- Redis 6.2: intersect instead
    end
    if total == 0 then return {0, 0, ''} end
    if total then
      if lex then
        driver = sets[smallest]
        for i, k in ipairs(sets) do if i ~= smallest then others[#others + 1] = k end end
      else
        driver, others = KEYS[5], sets
      end
      -- Sparse matches would make the walk examine more than the
      -- intersection costs: intersect then.
      if n * redis.call('ZCARD', driver) / total > 4 * budget then driver, others = nil, {} end
    end
  end
end
if not driver then
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
end

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

if driver then
  src = driver
  local card = redis.call('ZCARD', src)
  local out = {0, total, ''}
  local found, scanned = 0, 0
  local last_id, last_score
  local pos
  if not desc then
    pos = 0
    if ARGV[5] ~= '' then pos = before(ARGV[4], ARGV[5], true) end
  else
    pos = card - 1
    if ARGV[5] ~= '' then pos = before(ARGV[4], ARGV[5], false) - 1 end
  end
  while found < n and scanned < budget do
    local r
    local take = math.min(256, budget - scanned)
    if not desc then
      if pos >= card then break end
      r = redis.call('ZRANGE', src, pos, pos + take - 1, 'WITHSCORES')
      pos = pos + #r / 2
    else
      if pos < 0 then break end
      local from = math.max(0, pos - take + 1)
      local fwd = redis.call('ZRANGE', src, from, pos, 'WITHSCORES')
      r = {}
      for i = #fwd - 1, 1, -2 do
        r[#r + 1] = fwd[i]
        r[#r + 1] = fwd[i + 1]
      end
      pos = from - 1
    end
    if #r == 0 then break end
    local ids, keep = {}, {}
    for i = 1, #r, 2 do
      ids[#ids + 1] = r[i]
      keep[#keep + 1] = true
    end
    for _, k in ipairs(others) do
      local sc = redis.call('ZMSCORE', k, unpack(ids))
      for i = 1, #ids do
        if not sc[i] then keep[i] = false end
      end
    end
    for i = 1, #ids do
      scanned = scanned + 1
      last_id, last_score = ids[i], r[2 * i]
      if keep[i] then
        row(out, ids[i], r[2 * i])
        found = found + 1
        if found == n then break end
      end
    end
  end
  -- Cut short by the budget with members left: the page's cursor is the
  -- last member examined.
  if found < n and scanned >= budget and ((not desc and pos < card) or (desc and pos >= 0)) then
    out[3] = last_score .. ' ' .. last_id
  end
  return out
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

local out = {0, hi - lo, ''}
if first <= last then
  local r = redis.call('ZRANGE', src, first, last, 'WITHSCORES')
  local from, to, step = 1, #r - 1, 2
  if desc then from, to, step = #r - 1, 1, -2 end
  for i = from, to, step do row(out, r[i], r[i + 1]) end
end
if scratch then redis.call('DEL', KEYS[7]) end
if prefix ~= '' and not lex then redis.call('DEL', KEYS[8]) end
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
	order, lex := candidatesKey(m), "1"
	switch f.Order {
	case "", migration.OrderByID:
	case migration.OrderByStatus:
		order, lex = statusOrderKey(m), "0"
	case migration.OrderByCurrentStep:
		order, lex = stepOrderKey(m), "0"
	case migration.OrderByLastChange:
		order, lex = changeIndexKey(m), "0"
	default:
		return migration.CandidatePage{}, migration.InvalidArgument("order_by", migration.ReasonInvalidOrder, "unknown candidate order %q", f.Order)
	}
	keys := []string{migrationKey(m), candidateKeyPrefix(m), runKeyPrefix(m), changeIndexKey(m), order,
		candidatesKey(m), listTempKey(m), listPrefixTempKey(m)}
	switch {
	case f.Status != "" && f.Kind != "":
		keys = append(keys, statusKindIndexKey(m, string(f.Status), f.Kind))
	case f.Status != "":
		keys = append(keys, statusIndexKey(m, string(f.Status)))
	case f.Kind != "":
		keys = append(keys, kindIndexKey(m, f.Kind))
	}
	if f.CurrentStep != "" {
		keys = append(keys, currentStepIndexKey(m, f.CurrentStep))
	}
	if f.CurrentStepStatus != "" {
		keys = append(keys, runStepIndexKey(m, string(f.CurrentStepStatus)))
	}
	for _, k := range slices.Sorted(maps.Keys(f.Metadata)) {
		keys = append(keys, metadataIndexKey(m, k, f.Metadata[k]))
	}
	desc := "0"
	if f.Descending {
		desc = "1"
	}
	what := fmt.Sprintf("list candidates of %s", m)
	res, err := listCandidatesScript.Run(ctx, s.rdb, keys, lex, f.IDPrefix, desc, afterScore, afterID, limit+1,
		s.walkMin, s.walkBudget).Slice()
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
	if code != replyOK || len(res) < 3 || (len(res)-3)%width != 0 {
		return migration.CandidatePage{}, fmt.Errorf("%s: unexpected reply of %d elements", what, len(res))
	}
	var out migration.CandidatePage
	if out.Total, err = replyInt(res[1]); err != nil {
		return migration.CandidatePage{}, fmt.Errorf("%s: %w", what, err)
	}
	// A walk cut short says where to go on from.
	if out.Next, err = replyString(res[2]); err != nil {
		return migration.CandidatePage{}, fmt.Errorf("%s: %w", what, err)
	}
	rows := res[3:]
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
			if lex != "1" {
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

// defaultWalkMin is the size above which every filter set of a listing must
// be for its page to be walked rather than intersected: below it, the
// intersection costs no more than the walk.
const defaultWalkMin = 2_000

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
