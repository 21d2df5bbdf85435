package api

import (
	"context"
	"strings"

	"connectrpc.com/connect"

	"github.com/loomhq/loom/server/auth"
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
