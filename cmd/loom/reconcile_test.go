package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
)

type reconciler struct {
	loomv1connect.UnimplementedRunServiceHandler
	auth, migration string
}

func (r *reconciler) ReconcileRuns(_ context.Context, req *connect.Request[loomv1.ReconcileRunsRequest]) (*connect.Response[loomv1.ReconcileRunsResponse], error) {
	r.auth, r.migration = req.Header().Get("Authorization"), req.Msg.GetMigrationId()
	return connect.NewResponse(&loomv1.ReconcileRunsResponse{Checked: 7, Fixed: []*loomv1.RunFix{
		{RunId: "m__a", Status: loomv1.RunStatus_RUN_STATUS_CANCELLED, Reason: "its workflow ended with an error (terminated); start it again"},
	}}), nil
}

func TestLoomReconcileCallsReconcileRunsAndSaysWhatItFixed(t *testing.T) {
	r := &reconciler{}
	_, h := loomv1connect.NewRunServiceHandler(r)
	srv := httptest.NewServer(h)
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var errs bytes.Buffer
	if err := run([]string{"reconcile", "-url", srv.URL, "-token-file", tokenFile, "-migration", "m"}, &errs); err != nil {
		t.Fatal(err)
	}
	if r.auth != "Bearer s3cret" || r.migration != "m" {
		t.Fatalf("the call carried %q for %q", r.auth, r.migration)
	}
	if !strings.Contains(errs.String(), "checked 7 running Runs against the engine; fixed 1") {
		t.Fatalf("stderr: %s", errs.String())
	}
}
