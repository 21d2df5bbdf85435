package devenv_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/internal/devenv"
	"github.com/loomhq/loom/migratorsdk"
)

// dev is one `loom dev` started by a test.
type dev struct {
	env       devenv.Env
	stop      func()
	discovery loomv1connect.DiscoveryServiceClient
	runs      loomv1connect.RunServiceClient
	history   loomv1connect.HistoryServiceClient
	metrics   loomv1connect.MetricsServiceClient
}

func startDev(t *testing.T, dir string, mutate ...func(*devenv.Config)) *dev {
	t.Helper()
	cfg := devenv.Config{
		DataDir: dir, Addr: "127.0.0.1:0", ExampleAddr: "127.0.0.1:0",
		Example: true, FleetSize: 3,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan devenv.Env, 1)
	done := make(chan error, 1)
	go func() { done <- devenv.Run(ctx, cfg, func(e devenv.Env) { ready <- e }) }()
	var env devenv.Env
	select {
	case env = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("loom dev did not start: %v", err)
	case <-time.After(2 * time.Minute):
		cancel()
		t.Fatal("loom dev did not start within 2 minutes")
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("loom dev stopped with %v", err)
		}
	}
	t.Cleanup(stop)
	operator := migratorsdk.WithToken(env.OperatorToken)
	return &dev{
		env:       env,
		stop:      stop,
		discovery: loomv1connect.NewDiscoveryServiceClient(http.DefaultClient, env.APIURL, operator),
		runs:      loomv1connect.NewRunServiceClient(http.DefaultClient, env.APIURL, operator),
		history:   loomv1connect.NewHistoryServiceClient(http.DefaultClient, env.APIURL, operator),
		metrics:   loomv1connect.NewMetricsServiceClient(http.DefaultClient, env.APIURL, operator),
	}
}

const migrationID = "go-directive"

var inputs = map[string]string{"go_version": "1.23", "toolchain": "1.23.4"}

// waitStep waits until the Run's current step is step at status.
func (d *dev) waitStep(t *testing.T, runID, step string, status loomv1.StepStatus) *loomv1.Run {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last *loomv1.Run
	for time.Now().Before(deadline) {
		res, err := d.runs.GetRun(context.Background(), connect.NewRequest(&loomv1.GetRunRequest{RunId: runID}))
		if err == nil {
			last = res.Msg.Run
			if last.CurrentStep == step && last.CurrentStepStatus == status {
				return last
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("run %s never reached %s %s; last %v", runID, step, status, last)
	return nil
}

// waitRun waits until the Run is in status.
func (d *dev) waitRun(t *testing.T, runID string, status loomv1.RunStatus) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last *loomv1.Run
	for time.Now().Before(deadline) {
		res, err := d.runs.GetRun(context.Background(), connect.NewRequest(&loomv1.GetRunRequest{RunId: runID}))
		if err == nil {
			if last = res.Msg.Run; last.Status == status {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("run %s never became %s; last %v", runID, status, last)
}

func merge(t *testing.T, repo, branch string) {
	t.Helper()
	cmd := exec.Command("git", "-C", repo, "merge", "-q", branch)
	cmd.Env = append(cmd.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t", "GIT_CONFIG_GLOBAL=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git merge %s: %v: %s", branch, err, out)
	}
}

// TestAFullMigrationAcrossRestarts drives the example Migrator's sample
// fleet through the public API as a newcomer would after `loom dev`: discover,
// preview real diffs, start, merge each branch, finish the review, with
// `loom dev` stopped and started again mid-Run.
func TestAFullMigrationAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := startDev(t, dir)
	if !d.env.Persistent {
		t.Fatal("with redis-server installed, loom dev must persist")
	}
	// Callers need a token; the operator's is in the data directory.
	anonymous := loomv1connect.NewDiscoveryServiceClient(http.DefaultClient, d.env.APIURL)
	if _, err := anonymous.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: migrationID})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("a call without a token: %v", err)
	}
	operatorToken := d.env.OperatorToken
	// The admin token is accepted, as an admin.
	asAdmin := loomv1connect.NewRegistryServiceClient(http.DefaultClient, d.env.APIURL, migratorsdk.WithToken(d.env.AdminToken))
	if who, err := asAdmin.GetCaller(ctx, connect.NewRequest(&loomv1.GetCallerRequest{})); err != nil || who.Msg.Role != "admin" {
		t.Fatalf("the admin token: %v %v", who, err)
	}

	list, err := d.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: migrationID}))
	if err != nil {
		t.Fatal(err)
	}
	if list.Msg.TotalSize != 3 {
		t.Fatalf("discovered %d candidates, want 3", list.Msg.TotalSize)
	}

	prev, err := d.runs.PreviewRun(ctx, connect.NewRequest(&loomv1.PreviewRunRequest{MigrationId: migrationID, CandidateId: "svc-01", Inputs: inputs}))
	if err != nil {
		t.Fatal(err)
	}
	if diffs := prev.Msg.Steps[0].Diffs; len(diffs) != 1 || !strings.Contains(diffs[0].Before, "go 1.19") || !strings.Contains(diffs[0].After, "go 1.23") {
		t.Fatalf("preview %v", prev.Msg)
	}

	if _, err := d.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: migrationID, CandidateId: "svc-01", Inputs: inputs})); err != nil {
		t.Fatal(err)
	}
	const runID = migrationID + "__svc-01"
	run := d.waitStep(t, runID, "bump-go", loomv1.StepStatus_STEP_STATUS_OPEN)
	if !strings.HasPrefix(run.StepResults[0].PrUrl, "file://") {
		t.Fatalf("pull request %q", run.StepResults[0].PrUrl)
	}
	repo := filepath.Join(d.env.FleetDir, "svc-01")
	merge(t, repo, "loom/bump-go")
	d.waitStep(t, runID, "pin-toolchain", loomv1.StepStatus_STEP_STATUS_OPEN)

	// Stop and start again: the Run, its Candidate and the Migration are
	// there, and the tokens too.
	d.stop()
	d = startDev(t, dir)
	if d.env.OperatorToken != operatorToken {
		t.Fatal("loom dev made a new operator token at its restart")
	}
	d.waitStep(t, runID, "pin-toolchain", loomv1.StepStatus_STEP_STATUS_OPEN)
	merge(t, repo, "loom/pin-toolchain")
	d.waitStep(t, runID, "review", loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW)
	if _, err := d.runs.FinishReview(ctx, connect.NewRequest(&loomv1.FinishReviewRequest{
		RunId: runID, StepName: "review", Attempt: 1, Outcome: loomv1.StepStatus_STEP_STATUS_COMPLETED, Note: "builds",
	})); err != nil {
		t.Fatal(err)
	}
	d.stop()

	// Re-discovery (at the next start) leaves the completed Candidate alone.
	d = startDev(t, dir)
	c, err := d.discovery.GetCandidate(ctx, connect.NewRequest(&loomv1.GetCandidateRequest{MigrationId: migrationID, CandidateId: "svc-01"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Msg.Candidate.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_COMPLETED {
		t.Fatalf("svc-01 is %v after re-discovery", c.Msg.Candidate.Status)
	}
	r, err := d.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: runID}))
	if err != nil || r.Msg.Run.Status != loomv1.RunStatus_RUN_STATUS_COMPLETED {
		t.Fatalf("run after the restarts: %v %v", r, err)
	}

	// The Candidate's history tells the whole story, in order, with who did what.
	page, err := d.history.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: migrationID, CandidateId: "svc-01", PageSize: 100}))
	if err != nil {
		t.Fatal(err)
	}
	var story []string
	for i := len(page.Msg.Events) - 1; i >= 0; i-- {
		e := page.Msg.Events[i]
		line := strings.TrimPrefix(e.Kind.String(), "EVENT_KIND_") + " " + e.Step + " " + e.Details["status"] + " by " + e.Actor
		story = append(story, strings.Join(strings.Fields(line), " "))
	}
	want := []string{
		"CANDIDATE_DISCOVERED by dev-migrator",
		"RUN_STARTED by dev-operator",
		"STEP_DISPATCHED bump-go by loom",
		"STEP_REPORTED bump-go open by dev-migrator",
		"STEP_REPORTED bump-go merged by dev-migrator",
		"STEP_DISPATCHED pin-toolchain by loom",
		"STEP_REPORTED pin-toolchain open by dev-migrator",
		"STEP_REPORTED pin-toolchain merged by dev-migrator",
		"STEP_DISPATCHED review by loom",
		"STEP_REPORTED review awaiting_review by dev-migrator",
		"REVIEW_FINISHED review completed by dev-operator",
		"RUN_COMPLETED by loom",
	}
	if strings.Join(story, "\n") != strings.Join(want, "\n") {
		t.Fatalf("history of svc-01:\n%s\nwant:\n%s", strings.Join(story, "\n"), strings.Join(want, "\n"))
	}
	for _, e := range page.Msg.Events {
		if e.Kind == loomv1.EventKind_EVENT_KIND_RUN_STARTED && e.Details["inputs.go_version"] != "1.23" {
			t.Errorf("run started without its inputs: %v", e.Details)
		}
	}

	// The figures are what the events imply.
	mres, err := d.metrics.GetMigrationMetrics(ctx, connect.NewRequest(&loomv1.GetMigrationMetricsRequest{MigrationId: migrationID}))
	if err != nil {
		t.Fatal(err)
	}
	m := mres.Msg.Metrics
	if m.Candidates.Completed != 1 || m.OpenPullRequests != 0 || m.Failed != 0 || len(m.CurrentSteps) != 0 || len(m.StepDurations) != 3 {
		t.Fatalf("metrics %v", m)
	}
	for _, sd := range m.StepDurations {
		merged := int64(1)
		if sd.Step == "review" {
			merged = 0
		}
		if sd.Count != 1 || sd.MergedCount != merged || sd.Max.AsDuration() <= 0 {
			t.Errorf("durations of %s: %v", sd.Step, sd)
		}
	}
	var started, completed int64
	for _, b := range m.Burndown {
		started, completed = started+b.Started, completed+b.Completed
	}
	if started != 1 || completed != 1 {
		t.Errorf("burndown: %d started, %d completed", started, completed)
	}
}

// TestWithoutRedisServerNothingPersists runs the whole stack on the
// in-memory Redis-compatible fallback (and Temporal in memory).
func TestWithoutRedisServerNothingPersists(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := startDev(t, dir, func(c *devenv.Config) { c.RedisBinary = "none" })
	if d.env.Persistent {
		t.Fatal("the in-memory fallback claims to persist")
	}
	if _, err := d.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: migrationID, CandidateId: "svc-02", Inputs: inputs})); err != nil {
		t.Fatal(err)
	}
	const runID = migrationID + "__svc-02"
	watch, err := d.runs.WatchRun(ctx, connect.NewRequest(&loomv1.WatchRunRequest{RunId: runID}))
	if err != nil {
		t.Fatal(err)
	}
	for watch.Receive() {
		if r := watch.Msg().GetRun(); r.GetCurrentStepStatus() == loomv1.StepStatus_STEP_STATUS_OPEN {
			break
		}
	}
	if err := watch.Err(); err != nil {
		t.Fatal(err)
	}
	watch.Close()
	d.stop()

	d = startDev(t, dir, func(c *devenv.Config) { c.RedisBinary = "none" })
	_, err = d.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: runID}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("after a restart of the in-memory loom dev the run is still there: %v", err)
	}
}

func TestASecondLoomDevOnTheSameDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	startDev(t, dir, func(c *devenv.Config) { c.Example = false })
	err := devenv.Run(context.Background(), devenv.Config{DataDir: dir, Addr: "127.0.0.1:0"}, nil)
	if !errors.Is(err, devenv.ErrLocked) {
		t.Fatalf("second loom dev: %v", err)
	}
}

// loom dev -tls serves https with its own certificate, and a client that
// trusts it speaks HTTP/2 (ALPN h2) with Loom, as browsers do; the example
// Migrator reaches Loom over it too (it announced its Migration).
func TestLoomDevServesHTTP2OverTLS(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, dir, func(c *devenv.Config) { c.TLS = true; c.FleetSize = 1 })
	if !strings.HasPrefix(d.env.APIURL, "https://") || !strings.HasPrefix(d.env.ConsoleURL, "https://") ||
		d.env.CertFile != filepath.Join(dir, "tls", "cert.pem") {
		t.Fatalf("env %+v", d.env)
	}
	pem, err := os.ReadFile(d.env.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		u := strings.Replace(d.env.APIURL, "127.0.0.1", host, 1)
		req, _ := http.NewRequest(http.MethodPost, u+"/loom.v1.RegistryService/ListMigrations", strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+d.env.OperatorToken)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.ProtoMajor != 2 || res.TLS == nil || res.TLS.NegotiatedProtocol != "h2" {
			t.Fatalf("%s: %s over %s: %s", host, res.Status, res.Proto, body)
		}
		if !strings.Contains(string(body), migrationID) {
			t.Errorf("%s: the example's Migration is not listed: %s", host, body)
		}
	}
	// The certificate is kept for the next start.
	d.stop()
	again := startDev(t, dir, func(c *devenv.Config) { c.TLS = true; c.FleetSize = 1 })
	if pem2, _ := os.ReadFile(again.env.CertFile); string(pem2) != string(pem) {
		t.Error("a restart made a new certificate")
	}
}
