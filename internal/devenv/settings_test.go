package devenv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/internal/devenv"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/server/auth"
)

// logBuffer keeps what loom dev logs, for a test to read while it runs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// eventually retries check every 100 ms for up to 15 s (the tokens file is
// looked at every 2 s), and fails with its last error.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after 15s", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A token added to loom dev's tokens.json (as `loom tokens create -add-to`
// adds it) works within seconds, without a restart; a broken tokens.json
// keeps the tokens in effect and says why in the log.
func TestATokenAddedToTheTokensFileWorksWithoutARestart(t *testing.T) {
	ctx := context.Background()
	var logs logBuffer
	d := startDev(t, t.TempDir(), func(c *devenv.Config) {
		c.Example = false
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	listAs := func(token string) error {
		c := loomv1connect.NewRegistryServiceClient(http.DefaultClient, d.env.APIURL, migratorsdk.WithToken(token))
		_, err := c.ListMigrations(ctx, connect.NewRequest(&loomv1.ListMigrationsRequest{}))
		return err
	}
	token, hash, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := listAs(token); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("a token not in the file yet: %v", err)
	}
	var f auth.TokensFile
	b, err := os.ReadFile(d.env.TokensFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	f.Tokens = append(f.Tokens, auth.StaticToken{Subject: "ada", Role: auth.RoleViewer, SHA256: hash})
	replace := func(content []byte) {
		t.Helper()
		if err := os.WriteFile(d.env.TokensFile+".tmp", content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(d.env.TokensFile+".tmp", d.env.TokensFile); err != nil {
			t.Fatal(err)
		}
	}
	added, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	replace(added)
	eventually(t, "the token added to tokens.json", func() error { return listAs(token) })

	replace([]byte(`{"tokens": [{"subject": "half-`))
	eventually(t, "the broken tokens.json logged", func() error {
		if !strings.Contains(logs.String(), "the tokens file cannot be used") {
			return errors.New("not in the log")
		}
		return nil
	})
	for who, tok := range map[string]string{"the added token": token, "the operator": d.env.OperatorToken} {
		if err := listAs(tok); err != nil {
			t.Errorf("%s after tokens.json broke: %v", who, err)
		}
	}
}

// loom dev takes loom serve's CORS origins and dispatch window: a browser
// client on another origin may call it, and a Migrator that cannot be
// reached fails its step once the window is spent.
func TestLoomDevTakesCORSOriginsAndTheDispatchWindow(t *testing.T) {
	ctx := context.Background()
	d := startDev(t, t.TempDir(), func(c *devenv.Config) {
		c.Example = false
		c.CORSOrigins = []string{"http://localhost:5173"}
		c.DispatchWindow = 3 * time.Second
	})
	for origin, allowed := range map[string]bool{"http://localhost:5173": true, "https://elsewhere.example": false} {
		req, err := http.NewRequest(http.MethodOptions, d.env.APIURL+"/"+loomv1connect.RunServiceName+"/GetRun", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,connect-protocol-version,content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("Access-Control-Allow-Origin"); allowed && got != origin || !allowed && got != "" {
			t.Errorf("preflight from %s: Access-Control-Allow-Origin %q", origin, got)
		}
	}

	// A Migrator nobody serves: a port opened, then closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + l.Addr().String()
	l.Close()
	asMigrator := migratorsdk.WithToken(d.env.MigratorToken)
	registry := loomv1connect.NewRegistryServiceClient(http.DefaultClient, d.env.APIURL, asMigrator)
	discovery := loomv1connect.NewDiscoveryServiceClient(http.DefaultClient, d.env.APIURL, asMigrator)
	if _, err := registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: &loomv1.Migration{
		Id: "unreachable", Name: "Unreachable", Steps: []*loomv1.StepDefinition{{Name: "bump", Type: "pr"}}, MigratorUrl: gone,
	}})); err != nil {
		t.Fatal(err)
	}
	if _, err := discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
		MigrationId: "unreachable", Candidates: []*loomv1.Candidate{{Id: "svc", Kind: "service"}},
	})); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if _, err := d.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "unreachable", CandidateId: "svc"})); err != nil {
		t.Fatal(err)
	}
	// With the default window (an hour) the step would stay in progress,
	// retrying, for the whole test: failing within waitStep's 30 s is the
	// window at work (a retry is not tried when it would end past it).
	run := d.waitStep(t, "unreachable__svc", "bump", loomv1.StepStatus_STEP_STATUS_FAILED)
	if msg := run.StepResults[0].Message; !strings.HasPrefix(msg, "dispatch failed: ") || !strings.Contains(msg, "connection refused") {
		t.Fatalf("failed after %v with %q, want the dispatch's last error", time.Since(started), msg)
	}
}
