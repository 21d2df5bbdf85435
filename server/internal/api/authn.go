package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/migration"
)

// authInterceptor authenticates every call, checks the caller's role and,
// for Migrators, that the Migration is theirs, or, for a role a rule lets
// call only where the Migration allows it, that the Migration allows it,
// before the request is validated or handled: a refused call changes
// nothing.
type authInterceptor struct {
	authn *auth.Authenticator
	// sessions, when set, also authenticates calls by the session cookie
	// (a bearer token, when sent, takes precedence).
	sessions *auth.Sessions
	limit    *callerLimits
	// registry reads the Migrations that may allow a call
	// (auth.Rule.IfMigrationAllows); nil allows none.
	registry *migration.Registry
}

// requestCheck is what the request of an admitted call must pass: that its
// Migration is the caller's, or that it allows the caller. nil: nothing.
type requestCheck func(ctx context.Context, msg any) error

func (i *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if sessionProcedures[req.Spec().Procedure] {
			return next(ctx, req)
		}
		p, check, err := i.admit(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		if check != nil {
			if err := check(ctx, req.Any()); err != nil {
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
		p, check, err := i.admit(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		if check != nil {
			conn = &checkedStream{StreamingHandlerConn: conn, ctx: ctx, check: check}
		}
		return next(auth.WithPrincipal(ctx, p), conn)
	}
}

// admit authenticates the caller and checks its role and rate; check is
// what the request must then pass.
func (i *authInterceptor) admit(ctx context.Context, procedure string, h http.Header) (p auth.Principal, check requestCheck, err error) {
	p, err = i.authenticate(ctx, h)
	if err != nil {
		var cerr *connect.Error
		if errors.As(err, &cerr) || errors.Is(err, migration.ErrUnavailable) {
			return p, nil, err // the session's own refusal, or Redis unreachable
		}
		if errors.Is(err, auth.ErrNoRole) {
			return p, nil, connect.NewError(connect.CodePermissionDenied, err)
		}
		if !errors.Is(err, auth.ErrNoToken) {
			err = errors.New("invalid or unknown bearer token")
		}
		return p, nil, connect.NewError(connect.CodeUnauthenticated, err)
	}
	ok, owned := auth.Allowed(procedure, p)
	switch {
	case ok && owned:
		check = func(_ context.Context, msg any) error { return checkOwnership(p, msg) }
	case !ok && auth.AllowedIfMigrationAllows(procedure, p):
		check = func(ctx context.Context, msg any) error { return i.checkMigrationAllows(ctx, p, procedure, msg) }
	case !ok:
		return p, nil, connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("%s (role %s) may not call %s", p.Subject, p.Role, procedure))
	}
	if i.limit != nil && !i.limit.allow(p.Subject) {
		return p, nil, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("%s is over its rate limit; retry later", p.Subject))
	}
	return p, check, nil
}

// authenticate finds the caller: by its bearer token when it sends one (API
// clients; a token always wins), else by the session cookie of a browser.
func (i *authInterceptor) authenticate(ctx context.Context, h http.Header) (auth.Principal, error) {
	header := h.Get("Authorization")
	if header != "" || i.sessions == nil {
		return i.authn.Authenticate(ctx, header)
	}
	id := sessionID(h, secureCookies(ctx))
	if id == "" {
		return auth.Principal{}, auth.ErrNoToken
	}
	sess, err := sessionOf(ctx, i.sessions, h, id)
	return sess.Principal, err
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

// checkMigrationAllows admits a call that p's role may make only about a
// Migration that allows it (auth.Rule.IfMigrationAllows), once the
// Migration the request names is read. Only PreviewRun has such a rule: a
// viewer may preview a Migration whose Migrator announced
// viewers_may_preview. Any other procedure is refused, so a rule added
// without its check here stays closed; so is a request naming no Migration,
// or one that does not exist.
func (i *authInterceptor) checkMigrationAllows(ctx context.Context, p auth.Principal, procedure string, msg any) error {
	id, _ := migrationOf(msg)
	// The request is not validated yet: only a well-formed id is looked up
	// (another could name keys of other slots).
	if procedure == loomv1connect.RunServicePreviewRunProcedure && migrationIDPattern.MatchString(id) && i.registry != nil {
		m, err := i.registry.Get(ctx, id)
		if err != nil && !errors.Is(err, migration.ErrNotFound) {
			return err // the store's trouble, mapped as every other call's
		}
		if err == nil && m.ViewersMayPreview {
			return nil
		}
	}
	return connect.NewError(connect.CodePermissionDenied, fmt.Errorf(
		"%s (role %s) may call %s only about a Migration whose Migrator lets viewers preview (viewers_may_preview); migration %q does not",
		p.Subject, p.Role, procedure, id))
}

// migrationIDPattern is Migration.id's rule in the .proto.
var migrationIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

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

// checkedStream checks the request of a server stream.
type checkedStream struct {
	connect.StreamingHandlerConn
	ctx   context.Context
	check requestCheck
}

func (s *checkedStream) Receive(msg any) error {
	if err := s.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	return s.check(s.ctx, msg)
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
