package migratorsdk

import (
	"context"
	"errors"
	"testing"

	"connectrpc.com/connect"
)

func TestOnlyWhatARetryCanHelpIsRetried(t *testing.T) {
	for _, tc := range []struct {
		code  connect.Code
		calls int
	}{
		{connect.CodeUnavailable, 3}, {connect.CodeDeadlineExceeded, 3}, {connect.CodeResourceExhausted, 3},
		{connect.CodeAborted, 3}, {connect.CodeUnknown, 3}, {connect.CodeCanceled, 3},
		{connect.CodeInternal, 1}, {connect.CodeFailedPrecondition, 1}, {connect.CodeInvalidArgument, 1},
		{connect.CodeUnauthenticated, 1}, {connect.CodePermissionDenied, 1}, {connect.CodeUnimplemented, 1},
	} {
		calls := 0
		err := retry(context.Background(), func() error {
			calls++
			if calls == 3 {
				return nil
			}
			return connect.NewError(tc.code, errors.New("no"))
		}, nil)
		if calls != tc.calls || (tc.calls == 1) != (err != nil) {
			t.Errorf("%v: %d calls, err %v; want %d calls", tc.code, calls, err, tc.calls)
		}
	}
}
