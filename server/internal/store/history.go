package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// history.go owns the lifecycle history: retention, the history KEYS and
// ARGV, historyLua (the fragment every script that records events starts
// with), appending events and reading the Migration's and a Candidate's
// streams.

var _ migration.HistoryStore = (*Store)(nil)

// Retention bounds the lifecycle history kept per Migration.
type Retention struct {
	// MaxEvents per Migration and MaxCandidateEvents per Candidate (both
	// approximate: Redis trims whole stream nodes).
	MaxEvents          int64
	MaxCandidateEvents int64
	// MaxAge drops older events; a deleted Migration's history expires
	// after it.
	MaxAge time.Duration
}

// DefaultRetention keeps 100,000 events per Migration, 2,000 per Candidate,
// for 90 days.
var DefaultRetention = Retention{MaxEvents: 100_000, MaxCandidateEvents: 2_000, MaxAge: 90 * 24 * time.Hour}

// SetRetention changes the retention of the events written from now on.
func (s *Store) SetRetention(r Retention) {
	if r.MaxEvents <= 0 {
		r.MaxEvents = DefaultRetention.MaxEvents
	}
	if r.MaxCandidateEvents <= 0 {
		r.MaxCandidateEvents = DefaultRetention.MaxCandidateEvents
	}
	if r.MaxAge <= 0 {
		r.MaxAge = DefaultRetention.MaxAge
	}
	s.retention = r
}

// historyKeys are the history KEYS: newHistoryScript ends the KEYS of every
// script that records events with them, and historyLua uses them.
var historyKeys = scriptKeys{
	ofMigration("k_change", changeIndexKey),
	ofMigration("k_event_days", eventDaysKey),
	ofMigration("k_events", eventsKey),
	ofEachCandidate("k_candidate_events", candidateEventsKey), // the stream of each Candidate the script records events of
}

// historyArg is one of the history ARGV: the Lua local historyLua binds it
// to, and its value.
type historyArg struct {
	name  string
	value any
}

// historyArgv is the history ARGV, in order: every script that records
// events ends its own ARGV with them (withHistoryArgs, historyArgsAs), and
// historyLua binds them, counting from the end of ARGV (a script's own ARGV
// may be of any length; keyedScript.run appends the ids of the Candidates
// of the history KEYS' block after them), to the locals named here
// (historyArgvLua).
func (s *Store) historyArgv(actor string, now time.Time) []historyArg {
	return []historyArg{
		{"h_actor", actor},                                         // the actor of events that name none
		{"h_max_events", s.retention.MaxEvents},                    // most events kept per Migration
		{"h_max_candidate_events", s.retention.MaxCandidateEvents}, // and per Candidate
		{"h_min_id", millis(now.Add(-s.retention.MaxAge))},         // the oldest event id kept (unix ms)
	}
}

// historyArgvLua binds the history ARGV to their locals (historyArgv), and
// own_argc to the number of ARGV before them: the script's own. argv_n is
// the number of ARGV before the Candidate ids (scriptKeys.lua).
var historyArgvLua = func() string {
	argv := new(Store).historyArgv("", time.Time{}) // for the names only
	var b strings.Builder
	for i, a := range argv {
		fmt.Fprintf(&b, "local %s = ARGV[argv_n - %d]\n", a.name, len(argv)-1-i)
	}
	fmt.Fprintf(&b, "local own_argc = argv_n - %d\n", len(argv))
	return b.String()
}()

// historyLua starts every script that records events (newHistoryScript),
// right after the lines that bind its KEYS: it binds the history ARGV
// (historyArgvLua) and uses the history KEYS (historyKeys) by name.
//
// addEvent appends an event to the Migration's stream (and, for a
// Candidate's event, to the Candidate's, under the same id), trims both by
// count and age, counts it in its day, and announces it for watchers: on
// the Migration's channel, and with the Migration's id on the fleet's
// (fleetChannel). A Candidate's event also moves the Candidate's last
// change forward (ZADD XX GT: never backwards, and never for a Candidate
// that is not in the index, such as one of a deleted Migration). The
// Candidate's stream is k_candidate_events[id], a key of the block the
// caller passes: the caller lists every Candidate the script may record an
// event of, and an event of another Candidate fails the script (before it
// writes anything of that event). addEvent builds no key; the two names it
// publishes on are channels.
//
// touch moves a Candidate's last change to now: the scripts call it where
// they set its utime, events or not. The Candidate must exist.
//
// STATUS_ORDER is statusOrder (keys.go) of each Candidate status.
var historyLua = historyArgvLua + kindCodesLua + `
local STATUS_ORDER = {not_started = 1, running = 2, completed = 3}
local h_migration = string.sub(k_events, ` + tagStart + `, -` + eventsSuffix + `)
local function touch(id, now) redis.call('ZADD', k_change, 'GT', now, id) end
local function addEvent(e)
  local c = e.c or ''
  -- See eventFields (history.go): every entry has the same fields, in the
  -- same order, empty when unset; a Run id that its Migration and
  -- Candidate make is '.'; the kind is its number.
  local run = e.r or ''
  if run ~= '' and c ~= '' and run == h_migration .. '__' .. c then run = '.' end
  local x, a = '', ''
  if e.x and tonumber(e.x) ~= 0 then x = tostring(e.x) end
  if e.a and tonumber(e.a) ~= 0 then a = tostring(e.a) end
  local d = ''
  if e.d and next(e.d) ~= nil then d = cjson.encode(e.d) end
  local head = {'k', KIND_CODE[e.k] or e.k, 't', tostring(e.t), 'by', e.by or h_actor}
  local tail = {'r', run, 'x', x, 's', e.s or '', 'a', a, 'd', d}
  local stream
  if c ~= '' then
    stream = k_candidate_events[c]
    if not stream then error('no declared event stream for candidate ' .. c) end
  end
  local id = '*'
  if not e.conly then
    local f = {unpack(head)}
    f[#f + 1] = 'c'; f[#f + 1] = c
    for _, v in ipairs(tail) do f[#f + 1] = v end
    id = redis.call('XADD', k_events, 'MAXLEN', '~', h_max_events, '*', unpack(f))
    redis.call('XTRIM', k_events, 'MINID', '~', h_min_id)
    redis.call('PUBLISH', k_events .. ':changes', id)
    redis.call('PUBLISH', '` + fleetChannel + `', h_migration)
    redis.call('HINCRBY', k_event_days, tostring(math.floor(tonumber(e.t) / 86400000)), 1)
  end
  if c ~= '' then
    local f = {unpack(head)}
    for _, v in ipairs(tail) do f[#f + 1] = v end
    redis.call('XADD', stream, 'MAXLEN', '~', h_max_candidate_events, id, unpack(f))
    redis.call('XTRIM', stream, 'MINID', '~', h_min_id)
    redis.call('ZADD', k_change, 'XX', 'GT', tostring(e.t), c)
  end
  return id
end
`

// Stream entries. Each event is one entry of the Migration's stream and,
// when it is about a Candidate, one of the Candidate's, under the same id.
// Entries are small because a Run leaves about eight of them in each
// stream, and a stream's node (stream-node-max-bytes) is allocated whole:
// a Candidate whose events overflow one node pays for a second. So since
// the compact entries:
//
//   - every entry has the same fields in the same order (eventFields, less
//     c in a Candidate's stream), an unset one empty: Redis then stores a
//     node's field names once (its first entry's) rather than in every
//     entry;
//   - a Candidate's stream has no c: its key names the Candidate;
//   - r is '.' when the Run id is RunID of the Migration and the entry's
//     Candidate (always, for Loom's Runs), else the id itself;
//   - k is the kind's number in eventKindCodes when it has one.
//
// Entries written before (every field only when set, c in both streams,
// r and k spelled out) are read as they are: eventFromEntry takes both.
var eventFields = []string{"k", "t", "by", "c", "r", "x", "s", "a", "d"}

// runIDSame is the r of an entry whose Run id is RunID(m, its Candidate).
const runIDSame = "."

// eventKindCodes numbers the kinds stored as numbers: kind i is stored as
// i+1. It is stored: only ever append to it. A kind not listed is stored by
// name.
var eventKindCodes = []migration.EventKind{
	migration.EventMigrationAnnounced, migration.EventMigrationUpdated, migration.EventMigrationDeleted,
	migration.EventCandidatesDiscovered, migration.EventCandidateDiscovered, migration.EventCandidateInputsUpdated,
	migration.EventRunStarted, migration.EventStepDispatched, migration.EventDispatchFailed,
	migration.EventStepReported, migration.EventStepFailed, migration.EventStepRetried,
	migration.EventReviewFinished, migration.EventStepMarkedMerged, migration.EventRunCancelled,
	migration.EventRunCompleted, migration.EventStepSkipped, migration.EventPRAdopted,
	migration.EventRolloutStarted, migration.EventRolloutPaused, migration.EventRolloutResumed,
	migration.EventRolloutUpdated, migration.EventRolloutAwaitingApproval, migration.EventRolloutCancelled,
	migration.EventRolloutCompleted,
}

// kindCodesLua is eventKindCodes as the Lua table KIND_CODE: kind -> number.
var kindCodesLua = func() string {
	var b strings.Builder
	b.WriteString("local KIND_CODE = {")
	for i, k := range eventKindCodes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s = %d", k, i+1)
	}
	b.WriteString("}\n")
	return b.String()
}()

// kindOf reads a stored kind: a number of eventKindCodes, or a name.
func kindOf(v string) migration.EventKind {
	if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= len(eventKindCodes) {
		return eventKindCodes[n-1]
	}
	return migration.EventKind(v)
}

// newHistoryScript is a script that records events: its KEYS are keys then
// historyKeys, its text historyLua then src; its caller ends its ARGV with
// the history ARGV (withHistoryArgs or historyArgsAs) and passes to run the
// Candidates it may record events of.
func newHistoryScript(keys scriptKeys, src string) *keyedScript {
	return newKeyedScript(slices.Concat(keys, historyKeys), historyLua+src)
}

// withHistoryArgs appends the history ARGV (historyArgv), with the actor of
// ctx.
func (s *Store) withHistoryArgs(ctx context.Context, now time.Time, args ...any) []any {
	return s.historyArgsAs(migration.ActorFrom(ctx), now, args...)
}

// historyArgsAs appends the history ARGV (historyArgv), with actor.
func (s *Store) historyArgsAs(actor string, now time.Time, args ...any) []any {
	for _, a := range s.historyArgv(actor, now) {
		args = append(args, a.value)
	}
	return args
}

// eventRecord is an event as the scripts take it (JSON in ARGV).
type eventRecord struct {
	K  string            `json:"k"`
	T  string            `json:"t"`
	C  string            `json:"c,omitempty"`
	R  string            `json:"r,omitempty"`
	X  int64             `json:"x,omitempty"`
	S  string            `json:"s,omitempty"`
	A  int               `json:"a,omitempty"`
	By string            `json:"by,omitempty"`
	D  map[string]string `json:"d,omitempty"`
	// Q is the Run's Seq after the change of the event (migration.Event's
	// Seq), 0 when none; not kept in the stream (see saveRunScript).
	Q int64 `json:"q,omitempty"`
}

// eventCandidates are the Candidates events are about, each once.
func eventCandidates(events []migration.Event, also ...string) []string {
	ids := slices.Clone(also)
	for _, e := range events {
		ids = append(ids, e.CandidateID)
	}
	return candidateList(ids...)
}

func encodeEvents(events []migration.Event) (string, error) {
	recs := make([]eventRecord, len(events))
	for i, e := range events {
		recs[i] = eventRecord{K: string(e.Kind), T: strconv.FormatInt(millis(e.Time), 10), C: e.CandidateID, R: e.RunID,
			X: e.Execution, S: e.Step, A: e.Attempt, By: e.Actor, D: e.Details, Q: e.Seq}
	}
	b, err := json.Marshal(recs)
	return string(b), err
}

// appendEventsScript records events that come with no change of state.
//
//	KEYS k_migration, k_activity, then the history KEYS (the block: the
//	     Candidates of the events)
//	ARGV[1] events: JSON array of {k, t, c, r, x, s, a, by, d}; then the
//	history ARGV, then the Candidate ids of the block
//
// A running Candidate's activity moves to the event's time. Returns
// {replyMigrationNotFound} or {replyOK}.
var appendEventsScript = newHistoryScript(scriptKeys{
	ofMigration("k_migration", migrationKey),
	ofMigration("k_activity", activityKey),
}, `
if redis.call('EXISTS', k_migration) == 0 then return {1} end
for _, e in ipairs(cjson.decode(ARGV[1])) do
  addEvent(e)
  if e.c and e.c ~= '' then redis.call('ZADD', k_activity, 'XX', e.t, e.c) end
end
return {0}
`)

// AppendEvents records events that come with no change of state.
func (s *Store) AppendEvents(ctx context.Context, m string, events []migration.Event) error {
	if len(events) == 0 {
		return nil
	}
	enc, err := encodeEvents(events)
	if err != nil {
		return err
	}
	res, err := appendEventsScript.run(ctx, s.rdb, m, "", eventCandidates(events), s.withHistoryArgs(ctx, events[0].Time, enc)...).Slice()
	if err != nil {
		return fmt.Errorf("append events to %s: %w", m, err)
	}
	if code, _ := replyCode(res); code == replyMigrationNotFound {
		return migration.MigrationNotFound(m)
	}
	return nil
}

// eventFromEntry decodes one stream entry of m's stream, or of Candidate
// candidate's ("" for the Migration's). It reads the compact entries and
// those written before them (see eventFields).
func eventFromEntry(m, candidate string, x redis.XMessage) (migration.Event, error) {
	str := func(k string) string { v, _ := x.Values[k].(string); return v }
	e := migration.Event{ID: x.ID, Kind: kindOf(str("k")), MigrationID: m, CandidateID: str("c"),
		RunID: str("r"), Step: str("s"), Actor: str("by")}
	if e.CandidateID == "" {
		e.CandidateID = candidate
	}
	if e.RunID == runIDSame {
		e.RunID = migration.RunID(m, e.CandidateID)
	}
	ms, err := strconv.ParseInt(str("t"), 10, 64)
	if err != nil {
		return e, fmt.Errorf("event %s of %s: time %q", x.ID, m, str("t"))
	}
	e.Time = time.UnixMilli(ms).UTC()
	if v := str("x"); v != "" {
		e.Execution, _ = strconv.ParseInt(v, 10, 64)
	}
	if v := str("a"); v != "" {
		e.Attempt, _ = strconv.Atoi(v)
	}
	if v := str("d"); v != "" {
		if err := json.Unmarshal([]byte(v), &e.Details); err != nil {
			return e, fmt.Errorf("event %s of %s: details: %w", x.ID, m, err)
		}
	}
	return e, nil
}

// streamOf is the stream holding the events a filter asks for.
func streamOf(m, candidate string) string {
	if candidate != "" {
		return candidateEventsKey(m, candidate)
	}
	return eventsKey(m)
}

// ListEvents pages through a Migration's (or a Candidate's) events, newest
// first. Kind, Candidate id prefix and reported-status filters are applied
// while reading (a prefix on the Migration's stream, whose entries name
// their Candidate in c): a page reads at most ten pages' worth of entries,
// so a rare kind or prefix may come back in short pages, each with the
// cursor to go on.
func (s *Store) ListEvents(ctx context.Context, m string, f migration.EventFilter, page migration.PageRequest) (migration.EventPage, error) {
	limit := page.Limit
	if limit <= 0 {
		limit = 100
	}
	// Times filter on the events' own times (the server's clock), not on
	// stream ids (Redis's clock): reading newest first, the walk stops at
	// the first event older than Since.
	key := streamOf(m, f.CandidateID)
	end, start := "+", "-"
	if page.After != "" {
		end = "(" + page.After
	}
	// A Candidate's discovery, kept in its hash, is read in its place.
	discovered, err := s.discoveredEvent(ctx, m, f.CandidateID)
	if err != nil {
		return migration.EventPage{}, err
	}
	if discovered != nil && page.After != "" && !streamIDLess(discovered.ID, page.After) {
		discovered = nil // on an earlier page
	}
	var out migration.EventPage
	// take adds e to the page, newest first; done when the page is full
	// or the walk went past Since.
	take := func(e migration.Event) (done bool) {
		if !f.Since.IsZero() && e.Time.Before(f.Since) {
			return true
		}
		if !f.Matches(e) {
			end = "(" + e.ID
			return false
		}
		if len(out.Events) == limit {
			out.Next = out.Events[limit-1].ID
			return true
		}
		out.Events = append(out.Events, e)
		end = "(" + e.ID
		return false
	}
	takeDiscovered := func() bool {
		e := *discovered
		discovered = nil
		return take(e)
	}
	for scanned := 0; scanned < 10*limit; {
		batch, err := s.rdb.XRevRangeN(ctx, key, end, start, int64(limit+1)).Result()
		if err != nil {
			return migration.EventPage{}, fmt.Errorf("list events of %s: %w", m, err)
		}
		for _, x := range batch {
			scanned++
			if discovered != nil && streamIDLess(x.ID, discovered.ID) && takeDiscovered() {
				return out, nil
			}
			e, err := eventFromEntry(m, f.CandidateID, x)
			if err != nil {
				return migration.EventPage{}, err
			}
			if take(e) {
				return out, nil
			}
		}
		if len(batch) <= limit {
			// The stream is exhausted.
			if discovered != nil {
				takeDiscovered()
			}
			return out, nil
		}
	}
	// Scanned the most a page may: hand back a cursor to go on from.
	out.Next = strings.TrimPrefix(end, "(")
	return out, nil
}

// EventsAfter returns up to limit events after id, oldest first.
func (s *Store) EventsAfter(ctx context.Context, m, candidate, afterID string, limit int) ([]migration.Event, error) {
	start := "-"
	if afterID != "" {
		start = "(" + afterID
	}
	batch, err := s.rdb.XRangeN(ctx, streamOf(m, candidate), start, "+", int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("read events of %s: %w", m, err)
	}
	discovered, err := s.discoveredEvent(ctx, m, candidate)
	if err != nil {
		return nil, err
	}
	if discovered != nil && afterID != "" && !streamIDLess(afterID, discovered.ID) {
		discovered = nil // sent already
	}
	out := make([]migration.Event, 0, len(batch)+1)
	for _, x := range batch {
		if discovered != nil && streamIDLess(discovered.ID, x.ID) {
			out = append(out, *discovered)
			discovered = nil
		}
		e, err := eventFromEntry(m, candidate, x)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if discovered != nil {
		out = append(out, *discovered)
	}
	if len(out) > limit {
		out = out[:limit] // the next read goes on after the last one kept
	}
	return out, nil
}

// discoveredEvent is the candidate_discovered event of Candidate c of m
// kept in its hash (see submitScript), or nil: for no Candidate (c empty),
// for one whose discovery is in its stream (discovered before streams were
// made lazily, or updated since), for a Candidate gone with its Migration,
// and once the event is older than the retention.
func (s *Store) discoveredEvent(ctx context.Context, m, c string) (*migration.Event, error) {
	if c == "" {
		return nil, nil
	}
	vals, err := s.rdb.HMGet(ctx, candidateKey(m, c), "dev", "ctime", fieldKind).Result()
	if err != nil {
		return nil, fmt.Errorf("read the discovery of %s in %s: %w", c, m, err)
	}
	dev, _ := vals[0].(string)
	ctime, _ := vals[1].(string)
	if dev == "" {
		return nil, nil
	}
	ms, err := strconv.ParseInt(ctime, 10, 64)
	rec, err2 := parseDiscovered(dev, ms)
	if rec.Kind == nil {
		kind, _ := vals[2].(string)
		rec.Kind = &kind
	}
	if err := errors.Join(err, err2); err != nil {
		return nil, fmt.Errorf("the discovery of %s in %s: %q at %q: %v", c, m, dev, ctime, err)
	}
	// Retention goes by the id, Redis's clock, as the streams' trimming does.
	if idMs, _ := splitStreamID(rec.I); int64(idMs) < millis(time.Now().Add(-s.retention.MaxAge)) {
		return nil, nil
	}
	t := time.UnixMilli(ms).UTC()
	return &migration.Event{ID: rec.I, Kind: migration.EventCandidateDiscovered, MigrationID: m, CandidateID: c,
		Time: t, Actor: rec.By, Details: map[string]string{"outcome": "added", "kind": *rec.Kind}}, nil
}

// discoveredRecord is the dev field of a Candidate hash (see submitScript):
// the id, actor and kind of its candidate_discovered event. Kind is nil
// when dev leaves it to the hash's kind field.
type discoveredRecord struct {
	I    string  `json:"i"`
	By   string  `json:"by"`
	Kind *string `json:"kind"`
}

// parseDiscovered reads a dev field in either form: "<d> <actor>" (the id
// is "<ctime + d>-0", the kind is the hash's) or JSON {i, by, kind}.
func parseDiscovered(dev string, ctime int64) (discoveredRecord, error) {
	var rec discoveredRecord
	if strings.HasPrefix(dev, "{") {
		if err := json.Unmarshal([]byte(dev), &rec); err != nil {
			return rec, err
		}
		if rec.Kind == nil {
			rec.Kind = new(string) // JSON without kind: none was discovered
		}
	} else {
		d, by, ok := strings.Cut(dev, " ")
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil || !ok || ctime+n < 0 {
			return rec, errors.New(`not "<d> <actor>"`)
		}
		rec.I, rec.By = strconv.FormatInt(ctime+n, 10)+"-0", by
	}
	if rec.I == "" {
		return rec, errors.New("no event id")
	}
	return rec, nil
}

// streamIDLess orders stream ids ("<ms>-<seq>", or "<ms>") as Redis does.
func streamIDLess(a, b string) bool {
	am, as := splitStreamID(a)
	bm, bs := splitStreamID(b)
	return am < bm || am == bm && as < bs
}

func splitStreamID(id string) (ms, seq uint64) {
	a, b, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(a, 10, 64)
	seq, _ = strconv.ParseUint(b, 10, 64)
	return ms, seq
}

// LatestEventID is the id of the Migration's newest event.
func (s *Store) LatestEventID(ctx context.Context, m string) (string, error) {
	last, err := s.rdb.XRevRangeN(ctx, eventsKey(m), "+", "-", 1).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("read the last event of %s: %w", m, err)
	}
	if len(last) == 0 {
		return "", nil
	}
	return last[0].ID, nil
}

// WatchEvents notifies of every new event of a Migration (coalesced) until
// ctx ends.
func (s *Store) WatchEvents(ctx context.Context, m string) (<-chan struct{}, error) {
	return s.watch(ctx, eventsKey(m)+":changes")
}

// WatchFleet names, as they come, the Migrations whose history grew, until
// ctx ends (the channel then closes). Names are dropped rather than queued
// behind a slow reader: a reader must also look again now and then
// (migration.History.WatchFleet does, on every heartbeat).
func (s *Store) WatchFleet(ctx context.Context) (<-chan string, error) {
	return subscribe(ctx, s.rdb, fleetChannel, 256, func(m *redis.Message) string { return m.Payload })
}

// MigrationIDs lists the ids of every Migration.
func (s *Store) MigrationIDs(ctx context.Context) ([]string, error) {
	ids, err := s.rdb.ZRange(ctx, migrationsKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	return ids, nil
}

// EventIDNow is an event id no older than any event written after it
// returns (from Redis's clock, which stamps the ids), less a millisecond.
func (s *Store) EventIDNow(ctx context.Context) (string, error) {
	now, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return "", fmt.Errorf("read redis time: %w", err)
	}
	return fmt.Sprintf("%d-0", now.UnixMilli()-1), nil
}
