package store

import (
	"slices"
	"strconv"

	"github.com/loomhq/loom/server/internal/migration"
)

// keys.go owns the names of Redis keys and channels: the layout below and
// one function per key.

// Every Redis key Loom uses is built by a function in this file (but the
// keys of an earlier layout, which layout.go upgrades).
//
// Layout (m = Migration id, c = Candidate id, s = Candidate status, k = kind):
//
//	loom:migrations                  ZSET  global index of Migration ids
//	loom:deleting                    ZSET  Migrations whose keys are being swept away
//	loom:layout                      STRING the layout every Migration has been upgraded to (layout.go)
//	loom:{m}:migration               HASH  the Migration: definition, times, counters
//	loom:{m}:deleting                HASH  the Migration, renamed, while its keys are swept away
//	loom:{m}:c:<c>                   HASH  one Candidate
//	loom:{m}:cands:sk:<s>:<k>        ZSET  Candidate ids of m in status s and of kind k (each Candidate in one)
//	loom:{m}:kinds                   HASH  kind -> number of Candidates of m of that kind
//	loom:{m}:cands:by:step           ZSET  running and completed Candidate ids of m, scored by their Run's step position
//	loom:{m}:cands:by:change         ZSET  every Candidate id of m, scored by its last change (ms)
//	loom:{m}:cands:step:<name>       ZSET  Candidate ids of m whose running Run's current step is <name>
//	loom:{m}:snames                  HASH  step name -> number of Candidates in its cands:step index
//	loom:{m}:cands:meta              ZSET  "<len><pair><id>" per metadata pair of each Candidate (see metadataIndexKey)
//	loom:{m}:cands:tmp               ZSET  scratch of one ListCandidates script, deleted by it
//	loom:{m}:run:<c>                 HASH  the run view of Candidate c's Run
//	loom:{m}:runs                    ZSET  every Candidate id of m with a run view
//	loom:{m}:runs:status:<r>         ZSET  ... whose Run is in status r
//	loom:{m}:runs:step:<t>           ZSET  ... whose current step is in status t
//	loom:{m}:runs:rt:<r>:<t>         ZSET  ... both
//	loom:{m}:events                  STREAM the Migration's lifecycle events
//	loom:{m}:events:days             HASH  events per UTC day
//	loom:{m}:events:c:<c>            STREAM the events of Candidate c, from its first after its discovery
//	loom:{m}:metrics                 HASH  incremental figures (current steps, duration histograms)
//	loom:{m}:burndown                HASH  Runs started and completed per hour
//	loom:{m}:failures                LIST  the latest step failures, newest first
//	loom:{m}:activity                ZSET  running Candidates by time of their last event
//	loom:session:<h>                 STRING a browser's session (sessions.go); h = auth.SessionKey of its id
//
// and one Pub/Sub channel per Run, loom:{m}:run:<c>:changes, on which every
// stored change of the run view is announced (the message is its version).
//
// Every key of one Migration carries the hash tag {m}, so all of them live in
// one Redis Cluster slot and one Lua script may touch them all. The global
// index is the only key outside a Migration's slot; it is therefore updated
// by a separate command after the Migration's own script (see Store).
//
// The sorted sets give every member the score 0: members are ordered
// lexicographically (byte order), which is the order of every listing by id,
// and pages are read with ZRANGE ... BYLEX from an exclusive lower bound.
// The exceptions are the two cands:by:* orders of ListCandidates (scored,
// ties in id order) and activityKey; cands:meta's members are prefixed by
// their pair, so its ranges are in id order too.
//
// Lua scripts cannot call Go, so for keys whose name depends on data the
// script reads (a Candidate's key, the index of its current kind) the caller
// passes the key prefix in KEYS and the script appends the variable part.
// Each prefix function below says which key function it is the prefix of;
// keys_test.go checks that prefix+suffix equals the key function's result.
// Because a prefix contains the hash tag, every key built from it is in the
// same slot as the keys declared in KEYS.
//
// Identifiers never need escaping: Migration ids are [a-z0-9-], Candidate ids
// [A-Za-z0-9._/-], kinds [A-Za-z0-9._-], step names [a-z0-9-] and statuses
// [a-z_], none of which is a brace, and no status or kind contains ':', so
// "sk:<s>:<k>" is unambiguous. Metadata keys and values may hold any
// character: they are in members of cands:meta, never in a key name, and
// metadataRangePrefix makes a pair's members a range of their own.
// Candidate keys ("c:<id>") cannot collide with the other keys of the
// Migration ("cands...", "migration", "kinds", "snames"): none of those has
// ':' as its second byte after the tag. Under "cands" the next segment (sk,
// by, step, meta, tmp) tells the indexes apart.
//
// Run views live under the same tag, so the scripts that change a Run and
// its Candidate together, and DeleteMigration's, stay in one slot. "run:<c>"
// and "runs..." cannot collide: their fourth byte after the tag differs.

const keyPrefix = "loom:"

// migrationsKey is the global index of Migrations.
// ZSET, every member has score 0; member = Migration id.
func migrationsKey() string { return keyPrefix + "migrations" }

// sessionKey holds one browser session, under the hash of its id (never the
// id itself, which is the cookie): STRING, the record package auth encodes
// (JSON of auth.Session), expiring after the session's idle timeout. Outside every
// Migration's slot: one key, read and written alone.
func sessionKey(hash string) string { return keyPrefix + "session:" + hash }

// migrationTag is the common start of every key of Migration m: "loom:{m}:".
func migrationTag(m string) string { return keyPrefix + "{" + m + "}:" }

// migrationKey holds one Migration.
// HASH with fields:
//
//	def             JSON migrationRecord (see encode.go): the definition, no times
//	ctime, utime    creation and last definition change, unix milliseconds
//	n:not_started   number of Candidates in that status (also n:running,
//	n:running       n:completed); kept by the same scripts that move
//	n:completed     Candidates between statuses
//	layout          the layout of its keys (see layout.go); absent: 1
//	reborn          "1" when announced again after a delete, its history's
//	                streams (set to expire) found: submitScript then keeps
//	                an added Candidate's stream
func migrationKey(m string) string { return migrationTag(m) + "migration" }

// tombstoneKey is the hash of Migration m while its keys are being swept
// away (see deleteMigrationScript): its migrationKey renamed, plus
//
//	dtime   when it was deleted, unix milliseconds
//	ttl     how long its history is kept from then, milliseconds
//
// It exists from the delete until the last sweep; meanwhile the Migration is
// not found and may not be announced again.
func tombstoneKey(m string) string { return migrationTag(m) + "deleting" }

// deletingKey lists the Migrations being swept away, so that a sweep cut
// short (a crash, Redis gone) is resumed: ZSET, score = delete time (ms),
// member = Migration id. Like migrationsKey, it is outside every
// Migration's slot.
func deletingKey() string { return keyPrefix + "deleting" }

// candidateKey holds one Candidate.
// HASH with fields:
//
//	def      JSON candidateRecord (see encode.go): what discovery reported
//	kind     the Candidate's kind (copy of def's, for the scripts' indexes)
//	status   not_started | running | completed
//	inputs   JSON object of the operator's inputs, string -> string ("{}" at first)
//	exec     latest Run execution number, 0 before the first start
//	ctime    creation time, unix milliseconds
//	utime    last change, unix milliseconds
//	gone     "1" when the last complete discovery did not report it; absent otherwise
//	round    the discovery round that last reported it (internal; never returned)
func candidateKey(m, c string) string { return candidateKeyPrefix(m) + c }

// candidateKeyPrefix is the prefix of candidateKey: candidateKey(m, c) ==
// candidateKeyPrefix(m) + c.
func candidateKeyPrefix(m string) string { return migrationTag(m) + "c:" }

// statusKindIndexKey indexes the Candidates of m in status s and of kind k:
// every Candidate is in exactly one of these sets, and they are the only
// sets that hold every Candidate. A listing by status is the union of the
// status's sets over the kinds of kindsKey, one by kind the union over the
// three statuses, the whole Migration the union of them all (merged in id
// order by listCandidatesScript). One membership per Candidate instead of
// one per status, kind, status×kind, id and status order saves ~130 bytes
// of Redis per Candidate each (a sorted set's member costs about that).
// ZSET, score 0, member = Candidate id.
func statusKindIndexKey(m, s, k string) string { return statusKindIndexPrefix(m) + s + ":" + k }

// statusKindIndexPrefix is the prefix of statusKindIndexKey:
// statusKindIndexKey(m, s, k) == statusKindIndexPrefix(m) + s + ":" + k.
func statusKindIndexPrefix(m string) string { return migrationTag(m) + "cands:sk:" }

// kindsKey counts the Candidates of m per kind: it is how the scripts know
// which statusKindIndexKey sets exist (a listing's unions, a delete).
// HASH, field = kind, value = number of Candidates of that kind (a field is
// removed when its count reaches 0).
func kindsKey(m string) string { return migrationTag(m) + "kinds" }

// statusOrder is the position of status s in the status order of
// ListCandidates: its position in migration.CandidateStatuses, from 1 (the
// score of a cursor in that order). The scripts use the same numbers.
func statusOrder(s migration.CandidateStatus) int {
	return slices.Index(migration.CandidateStatuses, s) + 1
}

// stepOrderKey orders the running and completed Candidates of m by how far
// their Run has gone: ZSET, member = Candidate id, score = stepPosition of
// its run view. A not_started Candidate is not in it (it comes first in that
// order, from the statusKindIndexKey sets): most Candidates of a large
// Migration wait long before their first Run. Kept by the run view scripts.
func stepOrderKey(m string) string { return migrationTag(m) + "cands:by:step" }

// changeIndexKey orders every Candidate of m by its last change: ZSET,
// member = Candidate id, score = unix ms of its latest lifecycle event or
// change (never decreases: ZADD GT). The history helper (historyLua's
// addEvent) keeps it for every event of a Candidate, and the scripts that
// set a Candidate's utime without an event keep it too.
func changeIndexKey(m string) string { return migrationTag(m) + "cands:by:change" }

// currentStepIndexKey indexes the Candidates of m whose Run is running with
// its current step named name. ZSET, score 0, member = Candidate id.
func currentStepIndexKey(m, name string) string { return currentStepIndexPrefix(m) + name }

// currentStepIndexPrefix is the prefix of currentStepIndexKey.
func currentStepIndexPrefix(m string) string { return migrationTag(m) + "cands:step:" }

// stepNamesKey counts the members of each currentStepIndexKey of m, so that
// DeleteMigration finds those indexes without scanning. HASH, field = step
// name, value = count (removed at 0).
func stepNamesKey(m string) string { return migrationTag(m) + "snames" }

// metadataIndexKey indexes the Candidates of m by their metadata: one
// member per pair of each Candidate, metadataMember(pair, id), score 0. The
// Candidates with one pair are a lexicographic range of it, in id order
// (metadataRange), counted by ZLEXCOUNT. One sorted set for every pair
// rather than a set per pair: a key costs ~150 bytes and a counter ~90 more,
// which metadata of unique values (a repository URL) paid per Candidate.
// Every metadata key is indexed.
func metadataIndexKey(m string) string { return migrationTag(m) + "cands:meta" }

// metadataPair names one metadata pair: "<len(key)>:<key>=<value>". The
// length (in bytes) makes it unambiguous whatever the key and value hold,
// '=' and ':' included.
func metadataPair(key, value string) string {
	return strconv.Itoa(len(key)) + ":" + key + "=" + value
}

// metadataRangePrefix is what every metadataIndexKey member of pair starts
// with: "<len(pair)>:<pair>", then the Candidate id. The length makes a
// pair's members a range of their own: no member of another pair starts
// with the same bytes (a longer pair with this one as its start has another
// length), whatever bytes the value holds.
func metadataRangePrefix(pair string) string { return strconv.Itoa(len(pair)) + ":" + pair }

// metadataMember is the member of metadataIndexKey for Candidate id's pair.
func metadataMember(pair, id string) string { return metadataRangePrefix(pair) + id }

// listTempKey is the scratch set of one ListCandidates script (the
// matches of sparse filters in a scored order). ZSET; the script deletes it
// before it returns (it also expires, should a script fail half-way), so it
// never outlives a request.
func listTempKey(m string) string { return migrationTag(m) + "cands:tmp" }

// runKey holds the run view of Candidate c's Run: the read side of the Run,
// written by its workflow.
// HASH with fields:
//
//	view     JSON runRecord (see encode.go)
//	ver      version: +1 at every stored change, across executions
//	exec     the execution the view belongs to
//	seq      the Run's change counter within that execution
//	status   running | completed | cancelled (copy of view's, for indexes)
//	step     status of the current step, "" when none (copy, for indexes)
//	cstep    name of the current step, "" when none (copy, for indexes)
func runKey(m, c string) string { return runKeyPrefix(m) + c }

// runKeyPrefix is the prefix of runKey: runKey(m, c) == runKeyPrefix(m) + c.
func runKeyPrefix(m string) string { return migrationTag(m) + "run:" }

// runChannel is the Pub/Sub channel announcing changes of runKey(m, c).
func runChannel(m, c string) string { return runKey(m, c) + ":changes" }

// runsKey indexed every Candidate of m that has a run view. ZSET, score 0,
// member = Candidate id. No longer written: every run view is in the
// runStatusIndexKey of its status, one only, so their union lists them
// (ListRuns merges them), and a member of it cost about 130 bytes a Run.
// A Migration's from before is left as it is, read only by the delete's
// sweep.
func runsKey(m string) string { return migrationTag(m) + "runs" }

// runDispatchFailingKey indexes the Runs of m whose current step Loom
// cannot hand to its Migrator now (see store/dispatch.go). ZSET, score 0,
// member = Candidate id. DeleteMigration derives it from runsKey.
func runDispatchFailingKey(m string) string { return runsKey(m) + ":dispatch-failing" }

// runStatusIndexKey indexes the Runs of m in status r.
// ZSET, score 0, member = Candidate id.
func runStatusIndexKey(m, r string) string { return runStatusIndexPrefix(m) + r }

// runStatusIndexPrefix is the prefix of runStatusIndexKey.
func runStatusIndexPrefix(m string) string { return migrationTag(m) + "runs:status:" }

// runStepIndexKey indexes the Runs of m whose current step is in status t.
// ZSET, score 0, member = Candidate id.
func runStepIndexKey(m, t string) string { return runStepIndexPrefix(m) + t }

// runStepIndexPrefix is the prefix of runStepIndexKey.
func runStepIndexPrefix(m string) string { return migrationTag(m) + "runs:step:" }

// runStatusStepIndexKey indexes the Runs of m in status r whose current
// step is in status t. ZSET, score 0, member = Candidate id.
func runStatusStepIndexKey(m, r, t string) string { return runStatusStepIndexPrefix(m) + r + ":" + t }

// runStatusStepIndexPrefix is the prefix of runStatusStepIndexKey.
func runStatusStepIndexPrefix(m string) string { return migrationTag(m) + "runs:rt:" }

// eventsKey is the lifecycle history of Migration m.
// STREAM; each entry has fields k (kind), t (unix ms), by (actor) and, when
// set, c (Candidate), r (Run id), x (execution), s (step), a (attempt),
// d (JSON object of details). Trimmed by count and age; it outlives the
// Migration (deleted Migrations' streams expire after the age limit).
// New entries are announced on the Pub/Sub channel eventsKey(m)+":changes".
func eventsKey(m string) string { return migrationTag(m) + "events" }

// fleetChannel is the Pub/Sub channel on which addEvent announces every
// Migration whose history grew, with the Migration's id as the message: one
// subscription follows the fleet. A channel is not a key, so publishing
// from a script about one Migration is allowed in Redis Cluster too.
const fleetChannel = keyPrefix + "fleet:changes"

// tagStart and eventsSuffix cut the Migration id out of eventsKey(m) in
// Lua: string.sub(key, tagStart, -eventsSuffix).
const (
	tagStart     = "7" // after "loom:{"
	eventsSuffix = "9" // before "}:events"
)

// eventDaysKey counts the events of Migration m per UTC day: HASH, field =
// day (unix ms / 86,400,000), value = events recorded that day. Kept by
// addEvent with the stream, and like the stream it outlives the Migration
// until the history's age limit.
func eventDaysKey(m string) string { return eventsKey(m) + ":days" }

// candidateEventsKey is the history of one Candidate: the same entries, with
// the same ids, as in eventsKey. STREAM, made by the Candidate's first event
// after its discovery (which its hash keeps: see submitScript).
func candidateEventsKey(m, c string) string { return candidateEventsPrefix(m) + c }

// candidateEventsPrefix is the prefix of candidateEventsKey.
func candidateEventsPrefix(m string) string { return migrationTag(m) + "events:c:" }

// metricsKey holds figures kept as events happen.
// HASH with fields:
//
//	cur:<step>:<status>      running Runs whose current step is <step> in <status>
//	n:<step>, hn:<step>:<b>  successful attempts of <step>, and per duration bucket b
//	max:<step>               longest dispatch → success, ms
//	mn:<step>, hm:<step>:<b>, mmax:<step>   the same for open → merged
//	f:<step>                 failed attempts of <step>
func metricsKey(m string) string { return migrationTag(m) + "metrics" }

// burndownKey counts Candidates per hour: fields s:<hour> (started for the
// first time) and c:<hour> (completed), <hour> = unix ms / 3,600,000. HASH.
func burndownKey(m string) string { return migrationTag(m) + "burndown" }

// failuresKey lists the latest step failures, newest first, each a JSON
// object {t, c, s, a, m}. LIST, at most 50.
func failuresKey(m string) string { return migrationTag(m) + "failures" }

// activityKey ranks running Candidates by the time of their last event
// (score, unix ms): the oldest are stuck. ZSET.
func activityKey(m string) string { return migrationTag(m) + "activity" }
