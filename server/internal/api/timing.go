package api

import (
	"context"
	"errors"
	"strconv"
	"time"

	"connectrpc.com/connect"
)

// timing.go owns the Server-Timing header of every unary answer.

// serverTimingHeader names the time the server spent on a call, as browsers'
// developer tools and loom-bench read it: "handler;dur=<ms>", from the first
// interceptor to the handler's return (authentication, validation, the use
// case and its store and engine calls), without the network and the
// encoding of the request and answer.
const serverTimingHeader = "Server-Timing"

type timingInterceptor struct{}

func (timingInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		res, err := next(ctx, req)
		v := "handler;dur=" + strconv.FormatFloat(float64(time.Since(start).Microseconds())/1000, 'f', 3, 64)
		var ce *connect.Error
		switch {
		case err == nil && res != nil:
			res.Header().Set(serverTimingHeader, v)
		case errors.As(err, &ce):
			ce.Meta().Set(serverTimingHeader, v)
		}
		return res, err
	}
}

func (timingInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// Streams last as long as the caller watches: no timing of theirs.
func (timingInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
