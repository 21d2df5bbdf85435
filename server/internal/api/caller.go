package api

import (
	"context"
	"strings"

	"connectrpc.com/connect"

	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/migration"
)

// caller names who made a request, for the record of operator actions: the
// authenticated subject, or, when callers are not authenticated, the
// client's name from its User-Agent and its address.
func caller(ctx context.Context, req connect.AnyRequest) string {
	if p, ok := auth.PrincipalFrom(ctx); ok {
		return p.Subject
	}
	agent := req.Header().Get("User-Agent")
	if name, _, ok := strings.Cut(agent, " "); ok {
		agent = name
	}
	if agent == "" {
		agent = "unknown-client"
	}
	return agent + "@" + req.Peer().Addr
}

// actorInterceptor names who acts for the events a call causes: recorded by
// the store in the same atomic step as the change.
type actorInterceptor struct{}

func (actorInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		return next(migration.WithActor(ctx, caller(ctx, req)), req)
	}
}

func (actorInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (actorInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
