package api

import (
	"strings"

	"connectrpc.com/connect"
)

// caller names who made a request, for the record of operator actions:
// the client's name from its User-Agent and its address. Authenticated
// subjects replace this once callers authenticate.
func caller(req connect.AnyRequest) string {
	agent := req.Header().Get("User-Agent")
	if name, _, ok := strings.Cut(agent, " "); ok {
		agent = name
	}
	if agent == "" {
		agent = "unknown-client"
	}
	return agent + "@" + req.Peer().Addr
}
