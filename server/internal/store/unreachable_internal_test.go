package store

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// redisAnswer is an error answer of Redis, as go-redis returns them (a
// type with a RedisError method).
type redisAnswer string

func (e redisAnswer) Error() string { return string(e) }
func (redisAnswer) RedisError()     {}

func TestUnreachableIsRedisUnableToServeNow(t *testing.T) {
	for err, want := range map[error]bool{
		io.EOF:                                         true,
		fmt.Errorf("get candidate: %w", io.EOF):        true,
		redisAnswer("LOADING Redis is loading"):        true,
		redisAnswer("CLUSTERDOWN The cluster is down"): true,
		redisAnswer("TRYAGAIN Multiple keys request during rehashing of slot"): true,
		redisAnswer("READONLY You can't write against a read only replica."):   true,
		// Redirects left over once go-redis gave up following them: a
		// Redis Cluster settling after a failover.
		fmt.Errorf("get candidate go-directive/svc-34: %w", redisAnswer("MOVED 877 127.0.0.1:38081")): true,
		redisAnswer("ASK 877 127.0.0.1:38081"):                                                        true,
		// Redis's own answers and the absence of a key are not.
		redisAnswer("ERR Error running script"):          false,
		redisAnswer("WRONGTYPE Operation against a key"): false,
		redis.Nil: false,
		nil:       false,
	} {
		got := unreachable(err)
		if (got != nil) != want {
			t.Errorf("unreachable(%v) = %v, want unavailable: %v", err, got, want)
		}
		if got != nil && !errors.Is(got, migration.ErrUnavailable) {
			t.Errorf("unreachable(%v) = %v, not ErrUnavailable", err, got)
		}
	}
}
