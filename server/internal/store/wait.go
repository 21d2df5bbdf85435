package store

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// wait.go owns waiting for replicas: every write Loom answers for is
// followed, on the same connection, by WAIT, so that a Redis master that
// crashes right after acknowledging it cannot take it along (Redis
// replicates asynchronously; its replica, promoted, would not have it).
//
// WAIT n timeout blocks until n replicas acknowledged the replication
// offset of the connection's own last write, or the timeout passed, and
// answers how many did. It must follow the write on the same connection:
// on another it waits for that connection's writes, not this one's. So the
// hook below does not run WAIT as a command of its own (the pool may hand
// it any connection) but sends the write and WAIT as one pipeline, which
// go-redis writes and reads on one connection:
//
//   - a write command alone is sent as the pipeline [write, WAIT];
//   - a pipeline with a write in it gets WAIT appended;
//   - a transaction (MULTI … EXEC) is sent as it is: go-redis reads its
//     replies by position, and a reply after EXEC would be read by the next
//     command of that connection. Loom's one transactional write
//     (CreateRollout's snapshot of Candidate ids) is followed by a script
//     on the same node (same hash tag), whose WAIT covers it: replication
//     is one ordered stream, and WAIT waits for an offset, so the script's
//     WAIT returns only once the transaction's writes reached the replica
//     too;
//   - reads, Pub/Sub and connection commands are sent as they are (WAIT
//     after a read costs nothing when the replica is in step, but a full
//     timeout when no replica is connected: reads must not pay it).
//
// On Redis Cluster the hook is installed on each node's client (see Open),
// below the cluster's routing: a MOVED or ASK redirect sends the command to
// another node, whose hook adds that node's WAIT.
//
// When fewer replicas than asked acknowledge within the timeout (a replica
// down, or slow), the write stands and is answered as done: WAIT cannot
// undo it, and refusing it (unavailable) would turn one lost replica into
// an outage of every write to its master, the very availability the
// replica is there for, while the caller's retry would find the write
// already made. It is counted (ReplicaShortfalls) and reported to the
// callback set with OnReplicaShortfall (the server logs a warning and
// exports loom_redis_replica_shortfalls_total): such a write is as safe as
// without WAIT, no more. The same holds when WAIT itself is refused by
// Redis. A connection that breaks before WAIT's answer is different: the
// master may have died with the write unreplicated, so the write is
// answered with the connection's error (unavailable, to be tried again;
// Loom's writes are safe to repeat, as go-redis's own retries already
// assume).

// DefaultWaitTimeout is how long a write waits for its replicas by
// default: far above a replica's usual acknowledgement (well under a
// millisecond on a LAN), far below the 5 s a store call may take.
const DefaultWaitTimeout = time.Second

// replicaWait is the WAIT hook of one Redis connection (a node of a
// cluster, or a single server) and the shortfall accounting shared by all.
type replicaWait struct {
	client  *redis.Client // the node the hook is installed on
	replies *waitReplies
	// alone is, in unix nanoseconds, until when the node is known to have
	// fewer replicas connected than a write waits for (0: not known to).
	// WAIT cannot be met then, and would hold every write for its whole
	// timeout: writes go without it, each a shortfall, until a look at the
	// node's replication (INFO, at most once per replicaRecheck) finds
	// enough replicas again.
	alone    atomic.Int64
	checking atomic.Bool
}

// replicaRecheck is how long a node found without enough replicas is
// written to without WAIT before its replication is looked at again.
const replicaRecheck = time.Second

// skipWait reports whether writes to the node go without WAIT: it had too
// few replicas at the last look, and either that look is recent or another
// caller is looking again. The caller whose turn it is looks (INFO
// replication, a read) and waits as usual if enough replicas are back.
func (h *replicaWait) skipWait(ctx context.Context) bool {
	until := h.alone.Load()
	if until == 0 {
		return false
	}
	if time.Now().UnixNano() < until || !h.checking.CompareAndSwap(false, true) {
		return true
	}
	defer h.checking.Store(false)
	return h.tooFewReplicas(ctx)
}

// tooFewReplicas looks at the node's replication: with fewer replicas
// connected than a write waits for, it marks the node alone for
// replicaRecheck and reports true; else it clears the mark. A look that
// fails (the node unreachable: its writes fail anyway) keeps the mark.
func (h *replicaWait) tooFewReplicas(ctx context.Context) bool {
	info, err := h.client.Info(ctx, "replication").Result()
	if err != nil {
		if h.alone.Load() != 0 {
			h.alone.Store(time.Now().Add(replicaRecheck).UnixNano())
			return true
		}
		return false
	}
	connected := int64(-1)
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				connected = n
			}
		}
	}
	if connected >= 0 && connected < h.replies.replicas {
		h.alone.Store(time.Now().Add(replicaRecheck).UnixNano())
		return true
	}
	h.alone.Store(0)
	return false
}

// waitReplies is what every node's hook shares: what to ask, and what
// came short.
type waitReplies struct {
	replicas  int64
	timeoutMs int64
	// readOnly holds the SHA1 of the scripts that only read (see
	// readOnlyScript): EVALSHA and EVAL of them are reads.
	readOnly   map[string]bool
	shortfalls atomic.Int64
	onShort    atomic.Pointer[func(ReplicaShortfall)]
}

// ReplicaShortfall is one write fewer replicas acknowledged than asked.
type ReplicaShortfall struct {
	// Addr is the Redis master that took the write.
	Addr string
	// Acked is how many replicas acknowledged it; Want, how many were asked.
	Acked, Want int64
	// Err is WAIT's own error when Redis refused it; nil for a timeout.
	Err error
	// NoReplica is true when the write did not wait at all: its master had
	// fewer replicas connected than asked (see replicaWait.alone).
	NoReplica bool
}

func newWaitReplies(replicas int, timeout time.Duration) *waitReplies {
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}
	w := &waitReplies{replicas: int64(replicas), timeoutMs: max(timeout.Milliseconds(), 1), readOnly: map[string]bool{}}
	for _, src := range append(slices.Clip(readOnlySources), unreplicatedSources...) {
		w.readOnly[redis.NewScript(src).Hash()] = true
	}
	return w
}

// hook is the WAIT hook of client.
func (w *waitReplies) hook(client *redis.Client) *replicaWait {
	return &replicaWait{client: client, replies: w}
}

func (h *replicaWait) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook sends a write as the one-command pipeline [write, WAIT] (see
// ProcessPipelineHook), everything else as it is.
func (h *replicaWait) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !h.replies.isWrite(cmd) {
			return next(ctx, cmd)
		}
		if h.skipWait(ctx) {
			err := next(ctx, cmd)
			if cmd.Err() == nil {
				h.replies.short(ReplicaShortfall{Addr: h.client.Options().Addr, Want: h.replies.replicas, NoReplica: true})
			}
			return err
		}
		pipe := h.client.Pipeline()
		_ = pipe.Process(ctx, cmd)
		_, _ = pipe.Exec(ctx)
		return cmd.Err()
	}
}

// ProcessPipelineHook appends WAIT to a pipeline that writes, and checks
// its answer once the pipeline ran.
func (h *replicaWait) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		wait, all := h.replies.withWait(ctx, cmds)
		if wait == nil {
			return next(ctx, cmds)
		}
		if len(all) > len(cmds) && h.skipWait(ctx) {
			// (A pipeline sent again with its WAIT keeps it.)
			err := next(ctx, cmds)
			if h.anyWritten(cmds) {
				h.replies.short(ReplicaShortfall{Addr: h.client.Options().Addr, Want: h.replies.replicas, NoReplica: true})
			}
			return err
		}
		err := next(ctx, all)
		werr := wait.Err()
		var rerr redis.Error
		switch {
		case werr == nil:
			if acked := wait.Val(); acked < h.replies.replicas && h.anyWritten(cmds) {
				h.replies.short(ReplicaShortfall{Addr: h.client.Options().Addr, Acked: acked, Want: h.replies.replicas})
				// Too few replicas connected: the next writes need not
				// wait for them (see alone).
				h.tooFewReplicas(ctx)
			}
		case errors.As(werr, &rerr):
			// Redis answered WAIT with an error (a node that turned
			// replica meanwhile): the writes stand, unconfirmed.
			if h.anyWritten(cmds) {
				h.replies.short(ReplicaShortfall{Addr: h.client.Options().Addr, Want: h.replies.replicas, Err: werr})
			}
			if errors.Is(err, werr) {
				err = firstErr(cmds)
			}
		default:
			// The connection broke before WAIT's answer: a write that
			// succeeded may not have reached a replica, and its master
			// may be gone. Say so rather than answer for it.
			for _, c := range cmds {
				if c.Err() == nil && h.replies.isWrite(c) {
					c.SetErr(werr)
				}
			}
			if err == nil {
				err = werr
			}
		}
		return err
	}
}

// anyWritten reports whether one of cmds is a write Redis carried out (an
// error reply wrote nothing, except a script's after its first write, which
// Loom's scripts never do: they check, then write).
func (h *replicaWait) anyWritten(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if c.Err() == nil && h.replies.isWrite(c) {
			return true
		}
	}
	return false
}

func firstErr(cmds []redis.Cmder) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return err
		}
	}
	return nil
}

func (w *waitReplies) short(s ReplicaShortfall) {
	w.shortfalls.Add(1)
	if fn := w.onShort.Load(); fn != nil {
		(*fn)(s)
	}
}

// withWait is cmds with the WAIT that follows their writes, and that
// WAIT; nil when cmds write nothing or are a transaction (see above). A
// pipeline that has its WAIT already (go-redis sends a pipeline again, WAIT
// included, after a redirect or a broken connection) keeps it.
func (w *waitReplies) withWait(ctx context.Context, cmds []redis.Cmder) (*redis.IntCmd, []redis.Cmder) {
	write := false
	for _, c := range cmds {
		switch c.Name() {
		case "multi", "exec":
			return nil, cmds
		case "wait":
			if wait, ok := c.(*redis.IntCmd); ok {
				return wait, cmds
			}
			return nil, cmds
		}
		write = write || w.isWrite(c)
	}
	if !write {
		return nil, cmds
	}
	wait := redis.NewIntCmd(ctx, "wait", w.replicas, w.timeoutMs)
	return wait, append(cmds[:len(cmds):len(cmds)], wait)
}

// isWrite reports whether cmd may write: any command but the reads and the
// commands that write nothing a replica receives (below), and any script
// but those known to read only. Unknown commands count as writes, so that a
// write added to the store later is waited for without a change here.
func (w *waitReplies) isWrite(cmd redis.Cmder) bool {
	name := cmd.Name()
	switch name {
	case "evalsha", "eval":
		args := cmd.Args()
		if len(args) < 2 {
			return true
		}
		body, _ := args[1].(string)
		if name == "eval" {
			sum := sha1.Sum([]byte(body))
			body = hex.EncodeToString(sum[:])
		}
		return !w.readOnly[strings.ToLower(body)]
	}
	return !noWait[name]
}

// noWait are the commands whose effects no replica needs to receive: Loom's
// reads, and the commands of connections, of the server and of Pub/Sub
// (PUBLISH is carried by the cluster's bus, not by replication; CONFIG SET
// applies to one node).
var noWait = setOf(
	// reads
	"get", "mget", "strlen", "exists", "type", "ttl", "pttl", "dbsize", "scan",
	"hget", "hmget", "hgetall", "hkeys", "hvals", "hlen", "hexists", "hscan",
	"lrange", "llen", "lindex",
	"smembers", "scard", "sismember", "sscan",
	"zrange", "zrangebyscore", "zrangebylex", "zrevrange", "zrevrangebyscore", "zrevrangebylex",
	"zrank", "zrevrank", "zscore", "zmscore", "zcard", "zcount", "zlexcount", "zscan",
	"xlen", "xrange", "xrevrange", "xread", "xinfo",
	"evalsha_ro", "eval_ro", "fcall_ro",
	// connection, server, cluster, Pub/Sub
	"ping", "echo", "hello", "auth", "select", "client", "readonly", "readwrite", "asking",
	"info", "config", "time", "role", "command", "cluster", "memory", "object", "slowlog", "latency",
	"script", "debug", "wait", "waitaof",
	"publish", "spublish", "subscribe", "ssubscribe", "psubscribe", "unsubscribe", "sunsubscribe", "punsubscribe", "pubsub",
)

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// readOnlySources are the sources of the scripts that only read, declared
// with readOnlyScript (wait_test.go checks that they call no command but
// reads): run, they wait for no replica. A script declared with
// redis.NewScript is waited for as a write: slower, never less safe.
var readOnlySources []string

// readOnlyScript is redis.NewScript(src) for a script that only reads.
func readOnlyScript(src string) *redis.Script {
	readOnlySources = append(readOnlySources, src)
	return redis.NewScript(src)
}

// unreplicatedSources are the sources of the scripts whose writes no
// replica receives (declared with unreplicatedScript; wait_test.go checks
// that they turn replication off before their first write): for WAIT they
// are reads, as nothing they do is replicated to wait for.
var unreplicatedSources []string

// unreplicatedScript is redis.NewScript(src) for a script that writes only
// after redis.set_repl(redis.REPL_NONE): scratch keys of its own, which
// exist on the node running it, while it runs. ListCandidates' scratch set
// is one: waited for as a write, each listing would wait for a replica
// that receives nothing, and a whole WAIT timeout while its master has
// none (just after a failover).
func unreplicatedScript(src string) *redis.Script {
	unreplicatedSources = append(unreplicatedSources, src)
	return redis.NewScript(src)
}

// ReplicaShortfalls is how many writes fewer replicas acknowledged than
// asked, since Open; 0 when the store waits for none.
func (s *Store) ReplicaShortfalls() int64 {
	if s.wait == nil {
		return 0
	}
	return s.wait.shortfalls.Load()
}

// WaitsForReplicas is how many replicas each write waits for; 0: none.
func (s *Store) WaitsForReplicas() int {
	if s.wait == nil {
		return 0
	}
	return int(s.wait.replicas)
}

// OnReplicaShortfall sets fn to be called, on the writer's goroutine, for
// every write fewer replicas acknowledged than asked. It must be quick.
func (s *Store) OnReplicaShortfall(fn func(ReplicaShortfall)) {
	if s.wait != nil {
		s.wait.onShort.Store(&fn)
	}
}
