package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
)

// reconcile is `loom reconcile`: RunService.ReconcileRuns on demand, with
// what it fixed printed one line per Run.
func reconcile(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("loom reconcile")
	fs.SetOutput(stderr)
	url := fs.String("url", envOr("LOOM_URL", "http://127.0.0.1:8080"), "the Loom API (LOOM_URL)")
	tokenFile := fs.String("token-file", os.Getenv("LOOM_TOKEN_FILE"), "a file holding an admin token (LOOM_TOKEN_FILE; or LOOM_TOKEN)")
	migration := fs.String("migration", "", "only this Migration's Runs (default: every Migration)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	token := os.Getenv("LOOM_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(b))
	}
	var opts []connect.ClientOption
	if token != "" {
		opts = append(opts, connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("Authorization", "Bearer "+token)
				return next(ctx, req)
			}
		})))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c := loomv1connect.NewRunServiceClient(http.DefaultClient, strings.TrimRight(*url, "/"), opts...)
	res, err := c.ReconcileRuns(ctx, connect.NewRequest(&loomv1.ReconcileRunsRequest{MigrationId: *migration}))
	if err != nil {
		if connect.CodeOf(err) == connect.CodePermissionDenied || connect.CodeOf(err) == connect.CodeUnauthenticated {
			return errors.Join(err, errors.New("reconcile needs an admin token: -token-file or LOOM_TOKEN"))
		}
		return err
	}
	for _, f := range res.Msg.GetFixed() {
		fmt.Fprintf(stdout, "%s\tnow %s\t%s\n", f.GetRunId(), strings.ToLower(strings.TrimPrefix(f.GetStatus().String(), "RUN_STATUS_")), f.GetReason())
	}
	fmt.Fprintf(stderr, "checked %d running Runs against the engine; fixed %d\n", res.Msg.GetChecked(), len(res.Msg.GetFixed()))
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
