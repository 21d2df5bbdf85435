package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// open.go owns connecting to Redis (Options, Open, Close) and health
// (Ping, Durability).

// Options say how to reach Redis.
type Options struct {
	// Addrs is one address, or several (seed nodes) for Redis Cluster.
	Addrs    []string
	Username string
	Password string
	// DB is the database number; not with Redis Cluster.
	DB int
	// WaitReplicas is how many replicas must acknowledge each write (WAIT)
	// before the store answers for it (see wait.go); 0 waits for none; < 0
	// is 1 on Redis Cluster (several Addrs), whose masters each have a
	// replica to fail over to, and 0 on a single server.
	WaitReplicas int
	// WaitTimeout bounds that wait; 0 is DefaultWaitTimeout.
	WaitTimeout time.Duration
}

func init() {
	// go-redis prints every failed dial of its pool to stderr, many a
	// second while Redis is down; Loom says what matters itself (a view
	// write retried, an API call answered unavailable).
	redis.SetLogger(quietLogger{})
}

type quietLogger struct{}

func (quietLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

// CallTimeout bounds dialing Redis, and each read and write of its
// connections: a call to a Redis that does not answer fails after it
// (unavailable). A write's wait for its replicas (WaitTimeout) must end
// before it.
const CallTimeout = 5 * time.Second

// Open connects to Redis and checks that it answers. The Store owns the
// connection: Close releases it.
func Open(ctx context.Context, o Options) (*Store, error) {
	uo := &redis.UniversalOptions{
		Addrs:        o.Addrs,
		Username:     o.Username,
		Password:     o.Password,
		DB:           o.DB,
		DialTimeout:  CallTimeout,
		ReadTimeout:  CallTimeout,
		WriteTimeout: CallTimeout,
	}
	replicas := o.WaitReplicas
	if replicas < 0 {
		replicas = 0
		if len(o.Addrs) > 1 {
			replicas = 1
		}
	}
	var wait *waitReplies
	if replicas > 0 {
		wait = newWaitReplies(replicas, o.WaitTimeout)
		if ms := wait.timeoutMs; time.Duration(ms)*time.Millisecond >= uo.ReadTimeout {
			return nil, fmt.Errorf("redis wait timeout %v: must be below the read timeout, %v", time.Duration(ms)*time.Millisecond, uo.ReadTimeout)
		}
	}
	var client redis.UniversalClient
	switch {
	case len(o.Addrs) > 1:
		co := uo.Cluster()
		if wait != nil {
			// The hook goes on each node's client, where a command has a
			// connection (see wait.go); set before any node exists.
			co.NewClient = func(opt *redis.Options) *redis.Client {
				c := redis.NewClient(opt)
				c.AddHook(wait.hook(c))
				return c
			}
		}
		client = redis.NewClusterClient(co)
	default:
		c := redis.NewClient(uo.Simple())
		if wait != nil {
			c.AddHook(wait.hook(c))
		}
		client = c
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis at %s does not answer: %w", strings.Join(o.Addrs, ","), err)
	}
	s := New(client)
	s.owned = true
	s.wait = wait
	return s, nil
}

// Close releases the connection when Open made it.
func (s *Store) Close() error {
	if s.owned {
		return s.rdb.Close()
	}
	return nil
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.rdb.Ping(ctx).Err()
}

// Durability is what Redis says of its persistence.
type Durability struct {
	// AOF is true when the append-only file is on.
	AOF bool
}

// Durability reads Redis's persistence settings (INFO persistence; on a
// cluster, of one node).
func (s *Store) Durability(ctx context.Context) (Durability, error) {
	info, err := s.rdb.Info(ctx, "persistence").Result()
	if err != nil {
		return Durability{}, fmt.Errorf("read redis persistence: %w", err)
	}
	var d Durability
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "aof_enabled:"); ok {
			d.AOF = v == "1"
		}
	}
	return d, nil
}
