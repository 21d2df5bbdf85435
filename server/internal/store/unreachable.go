package store

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// unreachable.go owns the translation of a failure to reach Redis into
// migration.ErrUnavailable.

// unreachableHook turns every failure to reach Redis into a
// migration.ErrUnavailable refusal (reason STORE_UNAVAILABLE), at the one
// place every command passes: callers answer `unavailable` (retry later),
// never `internal`, and the Run's workflow retries rather than gives up.
// Redis's own answers (a script's error, a missing key) pass unchanged.
type unreachableHook struct{}

func (unreachableHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (unreachableHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if u := unreachable(err); u != nil {
			cmd.SetErr(u)
			return u
		}
		return err
	}
}

func (unreachableHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if u := unreachable(c.Err()); u != nil {
				c.SetErr(u)
			}
		}
		if u := unreachable(err); u != nil {
			return u
		}
		return err
	}
}

// busyPrefixes are Redis answers that say "not now": loading its data,
// a cluster or a replica not ready, a script running too long, and a
// Redis Cluster's slot still moving. go-redis follows MOVED and ASK
// itself, up to its redirect limit; one that reaches us is a cluster
// settling after a failover, its nodes not yet agreeing who serves the
// slot (the cluster test saw StartRun answer internal with "MOVED 877 …"
// while a killed master's replica was being promoted).
var busyPrefixes = []string{"LOADING ", "MASTERDOWN ", "CLUSTERDOWN ", "TRYAGAIN ", "BUSY ", "READONLY ", "MOVED ", "ASK "}

// unreachable is err as an unavailable refusal when it says Redis could
// not be reached or cannot serve now; nil otherwise.
func unreachable(err error) error {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, migration.ErrUnavailable) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	var netErr net.Error
	var rerr redis.Error
	switch {
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed):
	case errors.As(err, &rerr) && hasAnyPrefix(rerr.Error(), busyPrefixes):
	default:
		return nil
	}
	return migration.Unavailable(migration.ReasonStoreUnavailable, "the store (Redis) cannot be reached: %v", err)
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
