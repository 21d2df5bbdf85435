package api

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/loomhq/loom/server/internal/migration"
)

// ErrorDomain is the domain of every google.rpc.ErrorInfo Loom attaches.
const ErrorDomain = "loom.dev"

var kindCodes = []struct {
	kind error
	code connect.Code
}{
	{migration.ErrNotFound, connect.CodeNotFound},
	{migration.ErrAlreadyExists, connect.CodeAlreadyExists},
	{migration.ErrFailedPrecondition, connect.CodeFailedPrecondition},
	{migration.ErrInvalidArgument, connect.CodeInvalidArgument},
	{migration.ErrUnavailable, connect.CodeUnavailable},
	{context.Canceled, connect.CodeCanceled},
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded},
}

// toConnectError is the one place where domain errors become Connect
// errors. Refusals keep their message and carry an ErrorInfo (and, for
// invalid arguments, a BadRequest naming the field); anything unexpected
// becomes Internal with no detail, its cause being logged by the caller.
func toConnectError(err error) (cerr *connect.Error, unexpected bool) {
	if errors.As(err, &cerr) {
		return cerr, false
	}
	code := connect.CodeInternal
	for _, kc := range kindCodes {
		if errors.Is(err, kc.kind) {
			code = kc.code
			break
		}
	}
	if code == connect.CodeInternal {
		return connect.NewError(code, errors.New("internal error")), true
	}
	var ref *migration.Refusal
	if !errors.As(err, &ref) {
		return connect.NewError(code, err), false
	}
	msg := ref.Message
	if ref.Field != "" {
		msg = ref.Field + ": " + msg
	}
	cerr = connect.NewError(code, errors.New(msg))
	if ref.Reason != "" {
		if d, derr := connect.NewErrorDetail(&errdetails.ErrorInfo{
			Reason:   ref.Reason,
			Domain:   ErrorDomain,
			Metadata: ref.Metadata,
		}); derr == nil {
			cerr.AddDetail(d)
		}
	}
	if ref.Field != "" {
		if d, derr := connect.NewErrorDetail(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: ref.Field, Description: ref.Message}},
		}); derr == nil {
			cerr.AddDetail(d)
		}
	}
	return cerr, false
}

// errorInterceptor maps every handler error with toConnectError and logs each
// failed RPC once: unexpected failures at error level with their cause,
// refusals at debug level (they are the caller's to handle).
type errorInterceptor struct {
	log *slog.Logger
}

func (i errorInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if err != nil {
			return nil, i.convert(ctx, req.Spec().Procedure, err)
		}
		return res, nil
	}
}

func (i errorInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i errorInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := next(ctx, conn); err != nil {
			return i.convert(ctx, conn.Spec().Procedure, err)
		}
		return nil
	}
}

func (i errorInterceptor) convert(ctx context.Context, procedure string, err error) error {
	cerr, unexpected := toConnectError(err)
	if unexpected {
		i.log.ErrorContext(ctx, "rpc failed", "procedure", procedure, "error", err)
	} else {
		i.log.DebugContext(ctx, "rpc refused", "procedure", procedure, "code", cerr.Code().String(), "error", cerr.Message())
	}
	return cerr
}
