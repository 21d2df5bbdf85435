package api

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/migration"
)

// authInterceptor authenticates every call, checks the caller's role and,
// for Migrators, that the Migration is theirs, before the request is
// validated or handled: a refused call changes nothing.
type authInterceptor struct {
	authn *auth.Authenticator
	limit *callerLimits
}

func (i *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		p, owned, err := i.admit(ctx, req.Spec().Procedure, req.Header().Get("Authorization"))
		if err != nil {
			return nil, err
		}
		if owned {
			if err := checkOwnership(p, req.Any()); err != nil {
				return nil, err
			}
		}
		return next(auth.WithPrincipal(ctx, p), req)
	}
}

func (i *authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		p, owned, err := i.admit(ctx, conn.Spec().Procedure, conn.RequestHeader().Get("Authorization"))
		if err != nil {
			return err
		}
		if owned {
			conn = &ownedStream{StreamingHandlerConn: conn, p: p}
		}
		return next(auth.WithPrincipal(ctx, p), conn)
	}
}

// admit authenticates the caller and checks its role and rate.
func (i *authInterceptor) admit(ctx context.Context, procedure, header string) (p auth.Principal, ownedOnly bool, err error) {
	p, err = i.authn.Authenticate(ctx, header)
	if err != nil {
		if errors.Is(err, auth.ErrNoRole) {
			return p, false, connect.NewError(connect.CodePermissionDenied, err)
		}
		if !errors.Is(err, auth.ErrNoToken) {
			err = errors.New("invalid or unknown bearer token")
		}
		return p, false, connect.NewError(connect.CodeUnauthenticated, err)
	}
	ok, owned := auth.Allowed(procedure, p)
	if !ok {
		return p, false, connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("%s (role %s) may not call %s", p.Subject, p.Role, procedure))
	}
	if i.limit != nil && !i.limit.allow(p.Subject) {
		return p, false, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("%s is over its rate limit; retry later", p.Subject))
	}
	return p, owned, nil
}

// checkOwnership refuses a Migrator's call about a Migration it does not own.
func checkOwnership(p auth.Principal, msg any) error {
	id, ok := migrationOf(msg)
	if !ok || id == "" {
		return nil // a listing: the handler keeps only what the caller owns
	}
	if !p.Scope.Owns(id) {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s does not own migration %q", p.Subject, id))
	}
	return nil
}

// migrationOf names the Migration a request is about.
func migrationOf(msg any) (string, bool) {
	switch m := msg.(type) {
	case *loomv1.AnnounceRequest:
		return m.GetMigration().GetId(), true
	case interface{ GetMigrationId() string }:
		return m.GetMigrationId(), true
	case interface{ GetRunId() string }:
		id, _, ok := migration.ParseRunID(m.GetRunId())
		if !ok {
			return "\x00", true // no Migration: owned by nobody
		}
		return id, true
	}
	return "", false
}

// ownedStream checks ownership on the request of a server stream.
type ownedStream struct {
	connect.StreamingHandlerConn
	p auth.Principal
}

func (s *ownedStream) Receive(msg any) error {
	if err := s.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	return checkOwnership(s.p, msg)
}

// callerLimits is a token bucket per caller.
type callerLimits struct {
	rps   rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

func newCallerLimits(rps float64, burst int) *callerLimits {
	if rps <= 0 {
		return nil
	}
	return &callerLimits{rps: rate.Limit(rps), burst: max(burst, 1), buckets: map[string]*bucket{}}
}

func (c *callerLimits) allow(subject string) bool {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.buckets[subject]
	if !ok {
		if len(c.buckets) > 10000 {
			for k, v := range c.buckets {
				if now.Sub(v.seen) > 10*time.Minute {
					delete(c.buckets, k)
				}
			}
		}
		b = &bucket{l: rate.NewLimiter(c.rps, c.burst)}
		c.buckets[subject] = b
	}
	b.seen = now
	return b.l.AllowN(now, 1)
}

// healthAuth requires a valid token (any role) for health and reflection,
// when they are not left open.
type healthAuth struct{ i *authInterceptor }

func (h healthAuth) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if _, err := h.i.authn.Authenticate(ctx, req.Header().Get("Authorization")); err != nil {
			return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("invalid or missing bearer token"))
		}
		return next(ctx, req)
	}
}

func (h healthAuth) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (h healthAuth) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if _, err := h.i.authn.Authenticate(ctx, conn.RequestHeader().Get("Authorization")); err != nil {
			return connect.NewError(connect.CodeUnauthenticated, errors.New("invalid or missing bearer token"))
		}
		return next(ctx, conn)
	}
}
