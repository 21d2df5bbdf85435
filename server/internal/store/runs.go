package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// runs.go owns the run views: begin, save, get, list and watch the view a
// Run's workflow writes, and the run and current-step indexes they move
// between.

var _ migration.RunStore = (*Store)(nil)

// Run views. A run view is written only by the Run's own workflow (and by a
// cancel of a Run whose workflow is gone), so the scripts below guard against
// writes from another execution and against writes arriving out of order
// (the Seq of a view only grows within an execution). Each accepted write
// bumps the view's version, moves the Run between the run indexes, and
// PUBLISHes the version on runChannel, for watchers on any replica.

// runViewLua is shared by beginRunScript and saveRunScript (same KEYS, see
// runKeys): storeView writes a run view, keeps the run indexes, the
// Candidate's current step index and step order (spos: stepPosition), and
// the count of running Runs per current step and status, and announces the
// new version on channel; moveCandidate moves the Candidate between statuses
// with its indexes, order and counters.
const runViewLua = `
local function storeView(id, view, exec, seq, status, step, channel, cstep, spos)
  local runKey = k_run
  local old = redis.call('HMGET', runKey, 'status', 'step', 'cstep')
  if old[3] and old[3] ~= '' then
    redis.call('ZREM', k_current_step_prefix .. old[3], id)
    if redis.call('HINCRBY', k_step_names, old[3], -1) <= 0 then redis.call('HDEL', k_step_names, old[3]) end
  end
  if cstep ~= '' then
    redis.call('ZADD', k_current_step_prefix .. cstep, 0, id)
    redis.call('HINCRBY', k_step_names, cstep, 1)
  end
  -- Only running and completed Candidates are in the step order: a
  -- cancel's view is stored before its Candidate moves back (moveCandidate
  -- takes it out).
  if redis.call('HGET', k_candidate, 'status') ~= 'not_started' then
    redis.call('ZADD', k_step_order, spos, id)
  end
  if old[1] then
    redis.call('ZREM', k_run_status_prefix .. old[1], id)
    if old[2] and old[2] ~= '' then
      redis.call('ZREM', k_run_step_prefix .. old[2], id)
      redis.call('ZREM', k_run_status_step_prefix .. old[1] .. ':' .. old[2], id)
      if old[1] == 'running' and old[3] then
        redis.call('HINCRBY', k_metrics, 'cur:' .. old[3] .. ':' .. old[2], -1)
      end
    end
  end
  local ver = redis.call('HINCRBY', runKey, 'ver', 1)
  redis.call('HSET', runKey, 'view', view, 'exec', exec, 'seq', seq, 'status', status, 'step', step, 'cstep', cstep)
  redis.call('ZADD', k_run_status_prefix .. status, 0, id)
  if step ~= '' then
    redis.call('ZADD', k_run_step_prefix .. step, 0, id)
    redis.call('ZADD', k_run_status_step_prefix .. status .. ':' .. step, 0, id)
    if status == 'running' then
      redis.call('HINCRBY', k_metrics, 'cur:' .. cstep .. ':' .. step, 1)
    end
  end
  redis.call('PUBLISH', channel, ver)
end

local function moveCandidate(id, kind, from, to, now)
  if from == to then return end
  if from == 'not_started' then
    -- The round count (see submitScript) loses a marked Candidate.
    local r = redis.call('HGET', k_candidate, 'round')
    if r and r == redis.call('HGET', k_migration, 'rnd') then redis.call('HINCRBY', k_migration, 'rnd:n', -1) end
  end
  redis.call('HSET', k_candidate, 'status', to, 'utime', now)
  redis.call('ZREM', k_status_kind_prefix .. from .. ':' .. kind, id)
  redis.call('ZADD', k_status_kind_prefix .. to .. ':' .. kind, 0, id)
  if to == 'not_started' then redis.call('ZREM', k_step_order, id) end
  touch(id, now)
  redis.call('HINCRBY', k_migration, 'n:' .. from, -1)
  redis.call('HINCRBY', k_migration, 'n:' .. to, 1)
end

local function hour(ms) return tostring(math.floor(tonumber(ms) / 3600000)) end

-- dropDispatchFailure drops the dispatch failures of the run view (see
-- store/dispatch.go) unless they are about step keep of execution exec:
-- the view moved past the attempt they were about.
local function dropDispatchFailure(id, exec, keep)
  local d = redis.call('HGET', k_run, 'dfail')
  if not d then return end
  local f = cjson.decode(d)
  if keep ~= '' and f.x == exec and f.s == keep then return end
  redis.call('HDEL', k_run, 'dfail')
  redis.call('ZREM', k_dispatch_failing, id)
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

// runKeys are the KEYS of beginRunScript and saveRunScript, then (added by
// newHistoryScript) the history KEYS, whose block has c (and, for a save,
// any other Candidate its events are about). runViewLua uses them too. The
// script appends to each _prefix key a status or step name it knows or
// reads (see script.go: the keys so built are in the Migration's slot).
// Those are not declared: each index the Run and its Candidate leave is
// named by what the stored view and hash say (status, step status, current
// step, kind), read inside the script; declaring only the indexes they
// enter would still leave every prefix.
var runKeys = scriptKeys{
	ofMigration("k_migration", migrationKey),
	ofCandidate("k_candidate", candidateKey),
	ofCandidate("k_run", runKey),
	ofMigration("k_status_kind_prefix", statusKindIndexPrefix),        // + a Candidate status ':' its kind
	ofMigration("k_run_status_prefix", runStatusIndexPrefix),          // + a Run status
	ofMigration("k_run_step_prefix", runStepIndexPrefix),              // + a step status
	ofMigration("k_run_status_step_prefix", runStatusStepIndexPrefix), // + a Run status ':' a step status
	ofMigration("k_metrics", metricsKey),
	ofMigration("k_burndown", burndownKey),
	ofMigration("k_failures", failuresKey),
	ofMigration("k_activity", activityKey),
	ofMigration("k_step_order", stepOrderKey),
	ofMigration("k_current_step_prefix", currentStepIndexPrefix), // + a step name
	ofMigration("k_step_names", stepNamesKey),
	ofMigration("k_dispatch_failing", runDispatchFailingKey),
}

// stepPositionDone is the stepPosition of a completed Run: after every step
// (a Run has at most 100).
const stepPositionDone = 1000

// stepPosition is r's score in stepOrderKey: 0 without a current step
// (cancelled, or not dispatched yet), i+1 while running on step i of its
// steps, stepPositionDone once completed.
func stepPosition(r migration.Run) int {
	switch {
	case r.Status == migration.RunCompleted:
		return stepPositionDone
	case r.Status == migration.RunRunning:
		return len(r.Results)
	}
	return 0
}

// beginRunScript records the start of execution N of a Candidate's Run: the
// Candidate becomes running with exec N and the Run's inputs, the run view
// is created, and run_started is recorded (with the Candidate's activity,
// and, on the Candidate's first execution only, the burndown: it counts
// Candidates started, so one started again after a cancel counts once).
// KEYS: runKeys, then the history KEYS.
//
//	ARGV[1] candidate id
//	ARGV[2] N, the execution
//	ARGV[3] inputs, JSON object
//	ARGV[4] view, JSON runRecord
//	ARGV[5] seq of the view
//	ARGV[6] now, unix milliseconds
//	ARGV[7] runChannel(m, c)
//	ARGV[8] the Run id
//	ARGV[9] the starter's note, "" for none; then the history ARGV (the
//	        actor: who started it)
//
// Allowed when the Candidate is not_started with exec < N, or running with
// exec < N (a start whose workflow never ran: the ExecutionEngine admits one
// running execution per Run, so that one is gone). Running with exec = N is
// a repeat: nothing is written.
//
// Returns {replyMigrationNotFound}, {replyCandidateNotFound},
// {replyCompleted}, {replyStaleExecution, current exec} or
// {replyOK, HGETALL of the run view}.
var beginRunScript = newHistoryScript(runKeys, runViewLua+`
local c = redis.call('HMGET', k_candidate, 'status', 'kind', 'exec')
if not c[1] then
  if redis.call('EXISTS', k_migration) == 0 then return {1} end
  return {2}
end
local id, n, now = ARGV[1], tonumber(ARGV[2]), ARGV[6]
local status, kind, exec = c[1], c[2], tonumber(c[3] or '0')
if status == 'completed' then return {5} end
if exec == n and status == 'running' then return {0, redis.call('HGETALL', k_run)} end
if exec >= n then return {6, exec} end
moveCandidate(id, kind, status, 'running', now)
redis.call('HSET', k_candidate, 'exec', n, 'inputs', ARGV[3], 'utime', now)
eventsSeq(k_run, nil)
storeView(id, ARGV[4], n, ARGV[5], 'running', '', ARGV[7], '', 0)
redis.call('HSET', k_run, 'evseq', ARGV[5])
dropDispatchFailure(id, n, '')
local d = {}
for k, v in pairs(cjson.decode(ARGV[3])) do d['inputs.' .. k] = v end
if ARGV[9] ~= '' then d['note'] = ARGV[9] end
addEvent({k = 'run_started', t = now, c = id, r = ARGV[8], x = n, d = d})
-- exec is 0 until the Candidate's first execution is recorded here, and
-- only grows: a later execution (after a cancel, or replacing a start whose
-- workflow never ran) finds it above 0.
if exec == 0 then redis.call('HINCRBY', k_burndown, 's:' .. hour(now), 1) end
redis.call('ZADD', k_activity, now, id)
return {0, redis.call('HGETALL', k_run)}
`)

// BeginRun moves the Candidate to running for run.Execution, stores the
// Run's inputs on it and creates the run view (see beginRunScript).
func (s *Store) BeginRun(ctx context.Context, run migration.Run) (migration.Run, error) {
	view, err := encodeRun(run)
	if err != nil {
		return migration.Run{}, fmt.Errorf("encode run %s: %w", run.ID, err)
	}
	inputs := run.Inputs
	if inputs == nil {
		inputs = map[string]string{}
	}
	in, err := json.Marshal(inputs)
	if err != nil {
		return migration.Run{}, fmt.Errorf("encode inputs of run %s: %w", run.ID, err)
	}
	starter := run.StartedBy
	if starter == "" {
		starter = migration.ActorFrom(ctx)
	}
	res, err := beginRunScript.run(ctx, s.rdb, run.MigrationID, run.CandidateID, []string{run.CandidateID},
		s.historyArgsAs(starter, run.StartTime, run.CandidateID, run.Execution, string(in), view, run.Seq, millis(run.StartTime),
			runChannel(run.MigrationID, run.CandidateID), run.ID, run.StartNote)...).Slice()
	if err != nil {
		return migration.Run{}, fmt.Errorf("begin run %s: %w", run.ID, err)
	}
	return s.runReply(res, run, "begin run")
}

// observationRecord is a measured duration as saveRunScript takes it.
type observationRecord struct {
	S  string `json:"s"`
	M  bool   `json:"m,omitempty"`
	MS int64  `json:"ms"`
	B  int    `json:"b"`
	// Q is the seq of the change measured (see Observation.Seq).
	Q int64 `json:"q,omitempty"`
}

// saveRunScript stores a newer run view of the current execution, with the
// events and measures of the change. A view of a finished Run moves its
// Candidate too: completed → completed, cancelled → not_started. KEYS:
// runKeys, then the history KEYS.
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
// age), so never twice (a retried save after a lost answer). Each event
// of a change also carries the seq of its change (q): one at or below
// evseq is skipped. A workflow task that dies after its save leaves that
// save's events recorded though Temporal never recorded the change; when
// the change is made again in a later task, the save then carries it
// along with later ones, and only those are new. (Should the later task
// make another change at that seq, its events are the ones skipped: the
// history then shows the dead task's change in its place.) A Run's
// workflow writes one save at a time, in order, each carrying every change
// since the last write, so none is skipped. Failures (a step
// failed by Loom, reported failed, or a review finished as failed) are
// listed (at most 50) and counted per step, steps skipped by an operator
// counted per step, and a running Candidate's last
// activity is kept for stuck detection.
//
// A view whose seq is not above the stored one (same execution) is older
// than what is stored: ignored, not an error. A Candidate with no run view
// was never begun (exec 0): it has no current execution, so any save is
// refused as stale.
//
// Returns {replyMigrationNotFound}, {replyCandidateNotFound},
// {replyStaleExecution, current exec} or {replyOK, the view's version}.
var saveRunScript = newHistoryScript(runKeys, runViewLua+`
local c = redis.call('HMGET', k_candidate, 'status', 'kind', 'exec')
if not c[1] then
  if redis.call('EXISTS', k_migration) == 0 then return {1} end
  return {2}
end
local id, n, seq, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[7]
local status, kind, exec = c[1], c[2], tonumber(c[3] or '0')
if exec ~= n then return {6, exec} end
local r = redis.call('HMGET', k_run, 'exec', 'seq')
if not r[1] then return {6, exec} end
-- A save with nothing to apply (a repair copying the engine's Run) leaves
-- evseq alone: the writer's own save of that seq still brings its events.
local evs, obs = cjson.decode(ARGV[10]), cjson.decode(ARGV[11])
local applied = eventsSeq(k_run, r[2])
if (#evs > 0 or #obs > 0) and seq > applied then
  redis.call('HSET', k_run, 'evseq', seq)
  for _, e in ipairs(evs) do
    -- An event whose change's seq was applied already was recorded by the
    -- save of a workflow task that then died: not again.
    if not e.q or tonumber(e.q) > applied then
      addEvent(e)
      local d = e.d or {}
      if e.k == 'step_failed' or ((e.k == 'step_reported' or e.k == 'review_finished') and d.status == 'failed') then
        redis.call('LPUSH', k_failures, cjson.encode({t = e.t, c = e.c, s = e.s, a = e.a, m = d.message or d.reason or ''}))
        redis.call('LTRIM', k_failures, 0, 49)
        redis.call('HINCRBY', k_metrics, 'f:' .. e.s, 1)
      elseif e.k == 'step_skipped' then
        redis.call('HINCRBY', k_metrics, 'sk:' .. e.s, 1)
      end
    end
  end
  for _, o in ipairs(obs) do
    -- Counted once per change, as events are recorded.
    if not o.q or tonumber(o.q) > applied then
      local p, h, mx = 'n:', 'hn:', 'max:'
      if o.m then p, h, mx = 'mn:', 'hm:', 'mmax:' end
      redis.call('HINCRBY', k_metrics, p .. o.s, 1)
      redis.call('HINCRBY', k_metrics, h .. o.s .. ':' .. o.b, 1)
      if o.ms > tonumber(redis.call('HGET', k_metrics, mx .. o.s) or '0') then
        redis.call('HSET', k_metrics, mx .. o.s, o.ms)
      end
    end
  end
  if status == 'running' and ARGV[5] == 'running' then redis.call('ZADD', k_activity, now, id) end
end
if tonumber(r[1] or '0') == n and tonumber(r[2] or '-1') >= seq then
  return {0, tonumber(redis.call('HGET', k_run, 'ver'))}
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
    redis.call('HINCRBY', k_burndown, 'c:' .. hour(now), 1)
  elseif ARGV[5] == 'cancelled' then
    moveCandidate(id, kind, 'running', 'not_started', now)
  end
end
if ARGV[5] ~= 'running' then redis.call('ZREM', k_activity, id) end
return {0, tonumber(redis.call('HGET', k_run, 'ver'))}
`)

// SaveRun stores a newer view of the current execution, with the events and
// the durations of its change (see saveRunScript), and returns the stored
// view's version.
func (s *Store) SaveRun(ctx context.Context, run migration.Run, events []migration.Event, obs []migration.Observation) (int64, error) {
	view, err := encodeRun(run)
	if err != nil {
		return 0, fmt.Errorf("encode run %s: %w", run.ID, err)
	}
	evs, err := encodeEvents(events)
	if err != nil {
		return 0, err
	}
	recs := make([]observationRecord, len(obs))
	for i, o := range obs {
		recs[i] = observationRecord{S: o.Step, M: o.Merge, MS: o.Duration.Milliseconds(), B: migration.BucketOf(o.Duration), Q: o.Seq}
	}
	ob, _ := json.Marshal(recs)
	res, err := saveRunScript.run(ctx, s.rdb, run.MigrationID, run.CandidateID, eventCandidates(events, run.CandidateID),
		s.withHistoryArgs(ctx, run.UpdateTime, run.CandidateID, run.Execution, run.Seq, view, string(run.Status), string(run.CurrentStepStatus()),
			millis(run.UpdateTime), runChannel(run.MigrationID, run.CandidateID), run.CurrentStepName(), evs, string(ob), stepPosition(run))...).Slice()
	if err != nil {
		return 0, fmt.Errorf("save run %s: %w", run.ID, err)
	}
	if err := s.runRefusal(res, run, "save run"); err != nil {
		return 0, err
	}
	ver, err := replyIntAt(res, 1)
	if err != nil || len(res) != 2 {
		return 0, fmt.Errorf("save run %s: unexpected reply %v", run.ID, res)
	}
	return ver, nil
}

func (s *Store) runReply(res []any, run migration.Run, op string) (migration.Run, error) {
	m, c := run.MigrationID, run.CandidateID
	if err := s.runRefusal(res, run, op); err != nil {
		return migration.Run{}, err
	}
	if len(res) != 2 {
		return migration.Run{}, fmt.Errorf("%s %s: unexpected reply %v", op, run.ID, res)
	}
	h, err := replyFields(res[1])
	if err != nil {
		return migration.Run{}, fmt.Errorf("%s %s: %w", op, run.ID, err)
	}
	return decodeRun(m, c, h)
}

// runRefusal turns the refusals of beginRunScript and saveRunScript into
// errors; nil for replyOK.
func (s *Store) runRefusal(res []any, run migration.Run, op string) error {
	m, c := run.MigrationID, run.CandidateID
	code, err := replyCode(res)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, run.ID, err)
	}
	switch code {
	case replyOK:
		return nil
	case replyMigrationNotFound:
		return migration.MigrationNotFound(m)
	case replyCandidateNotFound:
		return migration.CandidateNotFound(m, c)
	case replyCompleted:
		return migration.FailedPrecondition(migration.ReasonCandidateCompleted,
			"candidate %q has completed this migration", c).With("run_id", run.ID)
	case replyStaleExecution:
		cur, _ := replyIntAt(res, 1)
		return migration.FailedPrecondition(migration.ReasonStaleExecution,
			"execution %d of run %s is not the current one (%d)", run.Execution, run.ID, cur).
			With("run_id", run.ID).With("execution", strconv.FormatInt(cur, 10))
	}
	return fmt.Errorf("%s %s: unexpected reply %v", op, run.ID, res)
}

// getRunScript reads one run view.
//
//	KEYS[1] runKey(m, c), KEYS[2] migrationKey(m)
//
// Returns {replyRunNotFound} (also when the Migration is gone: its run
// views are swept away after it disappears) or {replyOK, HGETALL of the
// run view}.
var getRunScript = readOnlyScript(`
if redis.call('EXISTS', KEYS[2]) == 0 then return {7} end
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {7} end
return {0, h}
`)

// GetRun returns the run view of Candidate c of m.
func (s *Store) GetRun(ctx context.Context, m, c string) (migration.Run, error) {
	res, err := getRunScript.Run(ctx, s.rdb, []string{runKey(m, c), migrationKey(m)}).Slice()
	if err != nil {
		return migration.Run{}, fmt.Errorf("get run %s__%s: %w", m, c, err)
	}
	code, err := replyCode(res)
	if err != nil {
		return migration.Run{}, fmt.Errorf("get run %s__%s: %w", m, c, err)
	}
	if code == replyRunNotFound {
		id := migration.RunID(m, c)
		return migration.Run{}, migration.NotFound(migration.ReasonRunNotFound, "run %s not found: the candidate was never started", id).With("run_id", id)
	}
	if code != replyOK || len(res) != 2 {
		return migration.Run{}, fmt.Errorf("get run %s__%s: unexpected reply %v", m, c, res)
	}
	h, err := replyFields(res[1])
	if err != nil {
		return migration.Run{}, fmt.Errorf("get run %s__%s: %w", m, c, err)
	}
	return decodeRun(m, c, h)
}

// ListRuns returns a page of the run views of m in Candidate id order.
func (s *Store) ListRuns(ctx context.Context, m string, f migration.RunFilter, page migration.PageRequest) (migration.RunPage, error) {
	limit := page.Limit
	if limit <= 0 {
		limit = migration.DefaultCandidatePageSize
	}
	var indexes []string
	switch {
	case f.DispatchFailing:
		indexes = []string{runDispatchFailingKey(m)}
	case f.Status != "" && f.CurrentStepStatus != "":
		indexes = []string{runStatusStepIndexKey(m, string(f.Status), string(f.CurrentStepStatus))}
	case f.Status != "":
		indexes = []string{runStatusIndexKey(m, string(f.Status))}
	case f.CurrentStepStatus != "":
		indexes = []string{runStepIndexKey(m, string(f.CurrentStepStatus))}
	default:
		// Every Run view is in the index of its status, one only: their
		// union is every Run (see runsKey).
		for _, st := range migration.RunStatuses {
			indexes = append(indexes, runStatusIndexKey(m, string(st)))
		}
	}
	total, next, rows, err := s.readPage(ctx, fmt.Sprintf("list runs of %s", m), m, indexes, runKeyPrefix(m), page.After, limit)
	if err != nil {
		return migration.RunPage{}, err
	}
	out := migration.RunPage{Total: total, Next: next, Runs: make([]migration.Run, 0, len(rows))}
	for _, row := range rows {
		r, err := decodeRun(m, row.id, row.fields)
		if err != nil {
			return migration.RunPage{}, fmt.Errorf("list runs of %s: %w", m, err)
		}
		out.Runs = append(out.Runs, r)
	}
	return out, nil
}

// listPageScript reads one page of the union of indexes of hashes,
// consistently: run views (the Candidates once used it too).
//
//	KEYS[1] migrationKey(m)
//	KEYS[2] the prefix of the hashes the indexes name: runKeyPrefix(m)
//	        (the script appends each id of the page it reads, so the caller
//	        cannot name those keys)
//	KEYS[3...] the indexes to page through, no id in two of them:
//	        runStatusIndexKey (each status: every Run), runStepIndexKey,
//	        runStatusStepIndexKey or runDispatchFailingKey
//	ARGV[1] after: ids strictly after this one; "" starts at the first
//	ARGV[2] most ids to return (the page size + 1, to learn if more exist)
//
// The ids of several indexes are merged in byte order, ZRANGE BYLEX's
// (Lua's < follows the locale's collation, which Redis sets from its
// environment: not used). Returns {replyMigrationNotFound} when the
// Migration does not exist, else {replyOK, the sum of the indexes' ZCARD,
// id1, HGETALL of id1, id2, ...}.
var listPageScript = readOnlyScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {1} end
local min = '-'
if ARGV[1] ~= '' then min = '(' .. ARGV[1] end
local n = tonumber(ARGV[2])
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local total, lists, at = 0, {}, {}
for i = 3, #KEYS do
  total = total + redis.call('ZCARD', KEYS[i])
  lists[#lists + 1] = redis.call('ZRANGE', KEYS[i], min, '+', 'BYLEX', 'LIMIT', 0, n)
  at[#at + 1] = 1
end
local out = {0, total}
for _ = 1, n do
  local best
  for j = 1, #lists do
    local id = lists[j][at[j]]
    if id and (not best or before(id, lists[best][at[best]])) then best = j end
  end
  if not best then break end
  local id = lists[best][at[best]]
  at[best] = at[best] + 1
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGETALL', KEYS[2] .. id)
end
return out
`)

// pageRow is one hash read by listPageScript: a run view.
type pageRow struct {
	id     string
	fields map[string]string
}

// readPage reads up to limit rows of the union of indexes after the id after, with the
// index's size and the cursor of the next page ("" on the last). what names
// the read in errors; an unknown Migration is reported as such, unwrapped.
func (s *Store) readPage(ctx context.Context, what, m string, indexes []string, prefix, after string, limit int) (total int64, next string, rows []pageRow, err error) {
	res, err := listPageScript.Run(ctx, s.rdb, append([]string{migrationKey(m), prefix}, indexes...), after, limit+1).Slice()
	if err != nil {
		return 0, "", nil, fmt.Errorf("%s: %w", what, err)
	}
	code, err := replyCode(res)
	if err != nil {
		return 0, "", nil, fmt.Errorf("%s: %w", what, err)
	}
	if code == replyMigrationNotFound {
		return 0, "", nil, migration.MigrationNotFound(m)
	}
	if code != replyOK || len(res) < 2 || len(res)%2 != 0 {
		return 0, "", nil, fmt.Errorf("%s: unexpected reply of %d elements", what, len(res))
	}
	if total, err = replyInt(res[1]); err != nil {
		return 0, "", nil, fmt.Errorf("%s: %w", what, err)
	}
	items := res[2:]
	if len(items)/2 > limit {
		items = items[:2*limit]
		if next, err = replyString(items[2*limit-2]); err != nil {
			return 0, "", nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	rows = make([]pageRow, 0, len(items)/2)
	for i := 0; i < len(items); i += 2 {
		id, err1 := replyString(items[i])
		h, err2 := replyFields(items[i+1])
		if err := errors.Join(err1, err2); err != nil {
			return 0, "", nil, fmt.Errorf("%s: %w", what, err)
		}
		if len(h) == 0 {
			continue // cannot happen: indexes and hashes change together
		}
		rows = append(rows, pageRow{id: id, fields: h})
	}
	return total, next, rows, nil
}

// WatchRun subscribes to the changes of one run view. The channel receives
// a value after every stored change (coalesced: a slow reader sees one value
// for several changes) and is closed when ctx ends or the subscription
// breaks for good.
func (s *Store) WatchRun(ctx context.Context, m, c string) (<-chan struct{}, error) {
	return s.watch(ctx, runChannel(m, c))
}

// watch subscribes to a Pub/Sub channel and forwards its messages as
// coalesced notices until ctx ends.
func (s *Store) watch(ctx context.Context, channel string) (<-chan struct{}, error) {
	return subscribe(ctx, s.rdb, channel, 1, func(*redis.Message) struct{} { return struct{}{} })
}

// subscribe forwards a Pub/Sub channel's messages, as conv makes them, into
// a buffer of size until ctx ends; a message that finds the buffer full is
// dropped (a reader must not hold the subscription up), so readers treat
// the messages as hints. The channel closes when ctx ends.
func subscribe[T any](ctx context.Context, rdb redis.UniversalClient, channel string, size int, conv func(*redis.Message) T) (<-chan T, error) {
	sub := rdb.Subscribe(ctx, channel)
	// Wait for the subscription to be confirmed, so that no change made after
	// subscribe returns can be missed.
	if _, err := sub.Receive(ctx); err != nil {
		_ = sub.Close()
		if u := unreachable(err); u != nil {
			err = u
		}
		return nil, fmt.Errorf("watch %s: %w", channel, err)
	}
	out := make(chan T, size)
	go func() {
		defer close(out)
		defer sub.Close()
		msgs := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case msg, ok := <-msgs:
				if !ok {
					return
				}
				select {
				case out <- conv(msg):
				default:
				}
			}
		}
	}()
	return out, nil
}
