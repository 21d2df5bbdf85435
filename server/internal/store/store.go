// Package store keeps Migrations and their Candidates in Redis: it is the
// MigrationStore adapter, and the only package of Loom that imports go-redis.
//
// The code is grouped by feature; every multi-key change is a Lua script
// that sits beside the method that runs it:
//
//	registry.go         Migrations: put, get, list, delete (and the global index)
//	candidates.go       Candidates: submit a discovery and sweep what it did
//	                    not report, get, update inputs, set status
//	candidates_list.go  ListCandidates: filters, orders, cursors
//	runs.go             run views: begin, save, get, list, watch
//	dispatch.go         dispatch failures shown on a run view
//	history.go          the lifecycle history, and historyLua, the fragment
//	                    every script that records events starts with
//	metrics.go          figures: a Migration's dashboard, the fleet overview
//	script.go           how scripts are written: keys, reply codes, replies
//	layout.go           upgrading data written by an earlier layout of the keys
//	open.go             connecting to Redis; health
//	unreachable.go      a failure to reach Redis as migration.ErrUnavailable
//
// Keys are built in keys.go, storage records and their conversion to domain
// types are in encode.go. Every key of one Migration shares the hash tag
// {migrationID}, so the store works on a single Redis and on Redis Cluster
// alike (New takes a redis.UniversalClient). It needs Redis ≥ 6.2.
//
// # The global index
//
// loom:migrations lists every Migration id. It cannot share a slot with
// every Migration, so it is not written by the Migrations' scripts but by a
// separate command right after them: after its script, PutMigration and
// DeleteMigration both reindex the id, making its entry agree with whether
// the Migration exists, and check again (see reindex): a Put and a Delete of
// one id interleaving between their scripts and their index writes can then
// not leave a live Migration unlisted nor a deleted one listed. Put does it
// on every call, not only on create, so that an entry lost to a failure
// between the two commands is repaired by the Migrator's next announce.
// An index entry may thus briefly (or, after a crash between the two
// commands, until the next Put or Delete of that id) name a Migration whose
// hash is gone: ListMigrations skips such entries.
package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// Store is the Redis MigrationStore. It is safe for concurrent use, by any
// number of server replicas sharing one Redis.
type Store struct {
	rdb        redis.UniversalClient
	owned      bool         // Close closes rdb
	wait       *waitReplies // nil: writes wait for no replica (see wait.go)
	sweepBatch int
	// sweepLater, when set, is told of each deleted Migration whose sweep
	// DeleteMigration leaves to it (see SweepDeletesLater).
	sweepLater func(id string)
	retention  Retention
	// walkBudget, exactCountMax and smallRangeMax: see
	// listCandidatesScript (tests lower them).
	walkBudget, exactCountMax, smallRangeMax int
	upgradeChunk                             int // see UpgradeLayout
	// afterDeleteScript, when set (tests only), runs between
	// DeleteMigration's script and the rest (index update, sweep), to
	// replay a race.
	afterDeleteScript func(id string)
}

var _ migration.MigrationStore = (*Store)(nil)

// New returns a Store on client, a *redis.Client or a *redis.ClusterClient
// (or a failover client). The caller owns (and closes) the client; New adds
// a hook to it that reports Redis unreachable as migration.ErrUnavailable.
func New(client redis.UniversalClient) *Store {
	client.AddHook(unreachableHook{})
	return &Store{rdb: client, sweepBatch: defaultSweepBatch, retention: DefaultRetention, walkBudget: defaultWalkBudget, exactCountMax: defaultExactCountMax,
		smallRangeMax: defaultSmallRangeMax, upgradeChunk: defaultUpgradeChunk}
}

// MinHashListpackValue is the hash-max-listpack-value (hash-max-ziplist-value
// before Redis 7) Loom asks of Redis: a Candidate's hash has a field or two
// longer than Redis's default of 64 bytes (its discovered data as JSON),
// and one such field makes Redis keep the whole hash in its large encoding,
// about twice the memory (816 bytes instead of 456 for a Candidate with two
// metadata keys, measured).
const MinHashListpackValue = 1024

// MaxStreamNodeBytes is the stream-node-max-bytes Loom asks of Redis: Redis
// (7.0 and later) allocates a stream's first node at that size however few
// its entries, and every Candidate with an event after its discovery has a
// stream of its own. A completed 3-step Run leaves 8 entries of about 55
// bytes in it (see eventFields): in one node of 512 the stream takes 804
// bytes, 1,316 with 1024, 4,389 with Redis's default of 4096 (used_memory,
// 10,000 such streams). The Migration's own stream, whose nodes are full,
// pays for the smaller nodes with more of them: 769 bytes per such Run
// instead of 695 with 1024 (80,000 entries), less than the 512 a
// Candidate's stream saves. Below 512 those 8 entries take two nodes.
const MaxStreamNodeBytes = 512

// CheckSettings returns what is amiss in Redis's settings for Loom, as
// sentences for the log; none when all is well or when Redis does not let
// Loom read them (CONFIG may be refused to its user: that is no error).
func (s *Store) CheckSettings(ctx context.Context) []string {
	var out []string
	vals, err := s.rdb.ConfigGet(ctx, "hash-max-*-value").Result()
	if err != nil {
		return nil
	}
	for name, v := range vals {
		if n, err := strconv.Atoi(v); err == nil && n < MinHashListpackValue {
			out = append(out, fmt.Sprintf("Redis has %s %d: Candidates take about twice the memory they need; set it to %d (docs/production.md)",
				name, n, MinHashListpackValue))
			break
		}
	}
	if vals, err = s.rdb.ConfigGet(ctx, "stream-node-max-bytes").Result(); err == nil {
		if n, err := strconv.Atoi(vals["stream-node-max-bytes"]); err == nil && (n == 0 || n > MaxStreamNodeBytes) {
			out = append(out, fmt.Sprintf("Redis has stream-node-max-bytes %d: each Candidate's history takes up to %d bytes more than it needs; set it to %d (docs/production.md)",
				n, 4389-804, MaxStreamNodeBytes))
		}
	}
	// Loom's keys are data, not a cache: an evicted one is a Candidate,
	// a Run's view or history lost.
	if vals, err = s.rdb.ConfigGet(ctx, "maxmemory-policy").Result(); err == nil {
		if p := vals["maxmemory-policy"]; p != "" && p != "noeviction" {
			out = append(out, fmt.Sprintf("Redis has maxmemory-policy %s: when its memory is full it drops keys, and Loom's keys are data, not cache; set it to noeviction (docs/production.md)", p))
		}
	}
	return out
}
