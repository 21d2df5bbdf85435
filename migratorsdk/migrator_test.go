package migratorsdk_test

import (
	"context"
	"errors"
	"fmt"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	migratorv1 "github.com/loomhq/loom/gen/loom/migrator/v1"
	"github.com/loomhq/loom/gen/loom/migrator/v1/migratorv1connect"
	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/migratorsdk/migratortest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func spec(handlers map[string]migratorsdk.StepHandler) migratorsdk.Spec {
	var steps []migratorsdk.Step
	for _, t := range []string{"open-pr", "plain", "failing", "panicking", "slow"} {
		if handlers[t] != nil {
			steps = append(steps, migratorsdk.Step{Name: "step-" + t, Type: t})
		}
	}
	return migratorsdk.Spec{
		Migration: migratorsdk.Migration{ID: "test-migration", Name: "Test", Steps: steps},
		Handlers:  handlers,
		Discover: func(context.Context) ([]migratorsdk.Candidate, error) {
			return []migratorsdk.Candidate{{ID: "acme/payments", Kind: "service"}}, nil
		},
	}
}

// start runs a Migrator against loomURL until the test ends; the returned
// stop stops it early and waits.
func start(t *testing.T, s migratorsdk.Spec, o migratorsdk.Options) (url string, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.ListenAddr = l.Addr().String()
	if o.Logger == nil {
		o.Logger = quiet()
	}
	m, err := migratorsdk.New(s, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, l) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return "http://" + l.Addr().String(), stop
}

// eventually polls ok until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
	}
}

// logs records a Migrator's log messages (Options.Logger), for a test to
// wait for what the Migrator did.
type logs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logs) logger() *slog.Logger                     { return slog.New(l) }
func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logs) WithGroup(string) slog.Handler            { return l }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

// count counts the messages containing s.
func (l *logs) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// wait waits until n messages contain s.
func (l *logs) wait(t *testing.T, s string, n int) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("%d log messages containing %q", n, s), func() bool { return l.count(s) >= n })
}

// loomCalls counts a Migrator's calls to Loom that have returned, by method
// (Options.ClientOptions).
type loomCalls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *loomCalls) option() connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			res, err := next(ctx, req)
			p := req.Spec().Procedure
			c.mu.Lock()
			if c.n == nil {
				c.n = map[string]int{}
			}
			c.n[p[strings.LastIndex(p, "/")+1:]]++
			c.mu.Unlock()
			return res, err
		}
	}))
}

func (c *loomCalls) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

func TestAnnounceWaitsForLoom(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: Loom is down

	s := spec(map[string]migratorsdk.StepHandler{"plain": func(context.Context, *migratorsdk.Dispatch) error { return nil }})
	var log logs
	url, _ := start(t, s, migratorsdk.Options{LoomURL: "http://" + addr, Logger: log.logger()})
	// It tried, and tried again, while Loom was down.
	log.wait(t, "Loom does not answer the announce yet; retrying", 2)

	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	loom := migratortest.Serve(t, l)
	loom.WaitAnnounced(t, "test-migration")
	if _, migratorURL, _ := loom.Migration("test-migration"); migratorURL != url {
		t.Fatalf("announced migrator URL %s, want %s", migratorURL, url)
	}
	loom.WaitCandidates(t, "test-migration", 1)
}

func TestDiscoveryIsSubmittedInBatchesOfOnePass(t *testing.T) {
	loom := migratortest.New(t)
	s := spec(map[string]migratorsdk.StepHandler{"plain": func(context.Context, *migratorsdk.Dispatch) error { return nil }})
	s.Discover = func(context.Context) ([]migratorsdk.Candidate, error) {
		var cs []migratorsdk.Candidate
		for i := range 2500 {
			cs = append(cs, migratorsdk.Candidate{ID: fmt.Sprintf("svc-%04d", i), Kind: "service"})
		}
		return cs, nil
	}
	start(t, s, migratorsdk.Options{LoomURL: loom.URL()})
	loom.WaitCandidates(t, "test-migration", 2500)
	subs := loom.Submissions()
	if len(subs) != 3 {
		t.Fatalf("%d submissions, want 3", len(subs))
	}
	for i, sub := range subs {
		if sub.Round == "" || sub.Round != subs[0].Round {
			t.Errorf("submission %d has round %q, want the pass's %q", i, sub.Round, subs[0].Round)
		}
		if sub.Complete != (i == 2) {
			t.Errorf("submission %d complete=%v", i, sub.Complete)
		}
	}
	if n := len(subs[2].Candidates); n != 500 {
		t.Errorf("last batch has %d candidates", n)
	}
}

func TestHandlerOutcomes(t *testing.T) {
	var merged atomic.Bool
	var checks atomic.Int32
	loom := migratortest.New(t)
	s := spec(map[string]migratorsdk.StepHandler{
		"open-pr": func(ctx context.Context, d *migratorsdk.Dispatch) error {
			return d.Opened(ctx, "https://git.example/pr/1", migratorsdk.WithMetadata(map[string]string{"branch": "loom/x"}))
		},
		"plain":     func(context.Context, *migratorsdk.Dispatch) error { return nil },
		"failing":   func(context.Context, *migratorsdk.Dispatch) error { return errors.New("tests failed: 3 of 120") },
		"panicking": func(context.Context, *migratorsdk.Dispatch) error { panic("nil map") },
	})
	s.CheckMerged = func(_ context.Context, o migratorsdk.OpenStep) (bool, error) {
		if o.Metadata["branch"] != "loom/x" || o.PRURL != "https://git.example/pr/1" {
			return false, fmt.Errorf("open step %+v", o)
		}
		defer checks.Add(1)
		return merged.Load(), nil
	}
	start(t, s, migratorsdk.Options{LoomURL: loom.URL(), MergeCheckEvery: 50 * time.Millisecond})
	loom.WaitCandidates(t, "test-migration", 1)

	pr := loom.MustDispatch(t, "test-migration", "step-open-pr", "acme/payments", nil)
	pr.MustWait(t, migratorsdk.StatusOpen)
	// Merge checks run one after another: the second has begun once the
	// first's answer (not merged) was acted on.
	eventually(t, 10*time.Second, "two merge checks", func() bool { return checks.Load() >= 2 })
	if s := pr.Status(); s != migratorsdk.StatusOpen {
		t.Fatalf("an open step became %s before its merge", s)
	}
	merged.Store(true)
	pr.MustWait(t, migratorsdk.StatusMerged)

	plain := loom.MustDispatch(t, "test-migration", "step-plain", "acme/payments", nil)
	plain.MustWait(t, migratorsdk.StatusCompleted)

	failing := loom.MustDispatch(t, "test-migration", "step-failing", "acme/payments", nil)
	if rep := failing.MustWait(t, migratorsdk.StatusFailed); rep.Message != "tests failed: 3 of 120" {
		t.Fatalf("failure reported as %q", rep.Message)
	}

	panicking := loom.MustDispatch(t, "test-migration", "step-panicking", "acme/payments", nil)
	if rep := panicking.MustWait(t, migratorsdk.StatusFailed); !strings.Contains(rep.Message, "panicked: nil map") {
		t.Fatalf("panic reported as %q", rep.Message)
	}
}

func TestADuplicateDispatchRunsTheHandlerOnceAndSendsItsLastReportAgain(t *testing.T) {
	var calls atomic.Int32
	loom := migratortest.New(t)
	s := spec(map[string]migratorsdk.StepHandler{"plain": func(context.Context, *migratorsdk.Dispatch) error {
		calls.Add(1)
		return nil
	}})
	url, _ := start(t, s, migratorsdk.Options{LoomURL: loom.URL()})
	loom.WaitCandidates(t, "test-migration", 1)
	run := loom.MustDispatch(t, "test-migration", "step-plain", "acme/payments", nil)
	run.MustWait(t, migratorsdk.StatusCompleted)

	// Loom retries a dispatch whose answer it lost: same run, execution, step, attempt.
	c := migratorv1connect.NewMigratorServiceClient(http.DefaultClient, url)
	req := &migratorv1.ExecuteStepRequest{RunId: run.ID, Execution: 1, MigrationId: "test-migration", Attempt: 1,
		Step: &loomv1.StepDefinition{Name: "step-plain", Type: "plain"}, Candidate: &loomv1.Candidate{Id: "acme/payments", Kind: "service"}}
	if _, err := c.ExecuteStep(context.Background(), connect.NewRequest(req)); err != nil {
		t.Fatal(err)
	}
	// The handler finished: its last report is sent again (Loom may not have
	// got it), the handler does not run again.
	for began := time.Now(); run.Received() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Since(began) > 5*time.Second {
			t.Fatalf("the last report was not sent again: %d received", run.Received())
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times", n)
	}

	// An unknown step type is refused at once, for Loom to fail the step.
	req.Step.Type = "no-such-type"
	_, err := c.ExecuteStep(context.Background(), connect.NewRequest(req))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "no-such-type") {
		t.Fatalf("unknown step type: %v", err)
	}
	// No preview configured.
	_, err = c.PreviewRun(context.Background(), connect.NewRequest(&migratorv1.PreviewRunRequest{Candidate: req.Candidate}))
	if connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Fatalf("preview without PreviewFunc: %v", err)
	}
}

func TestStopWaitsForHandlersInFlight(t *testing.T) {
	release := make(chan struct{})
	var finished atomic.Bool
	loom := migratortest.New(t)
	s := spec(map[string]migratorsdk.StepHandler{"slow": func(ctx context.Context, d *migratorsdk.Dispatch) error {
		<-release
		finished.Store(true)
		return nil
	}})
	url, stop := start(t, s, migratorsdk.Options{LoomURL: loom.URL(), ShutdownTimeout: 10 * time.Second})
	loom.WaitCandidates(t, "test-migration", 1)
	run := loom.MustDispatch(t, "test-migration", "step-slow", "acme/payments", nil)

	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	// The Migrator is stopping once its listener refuses connections; only
	// the handlers in flight are left to wait for.
	eventually(t, 10*time.Second, "the Migrator stopped listening", func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case <-stopped:
		t.Fatal("stop returned while a handler was running")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-stopped
	if !finished.Load() {
		t.Fatal("handler did not finish")
	}
	run.MustWait(t, migratorsdk.StatusCompleted)
}

func TestReportsAreRetriedWhileLoomIsDown(t *testing.T) {
	proceed := make(chan struct{})
	loom := migratortest.New(t)
	s := spec(map[string]migratorsdk.StepHandler{"plain": func(ctx context.Context, d *migratorsdk.Dispatch) error {
		<-proceed
		return d.Progress(ctx, "halfway")
	}})
	var log logs
	start(t, s, migratorsdk.Options{LoomURL: loom.URL(), Logger: log.logger()})
	loom.WaitCandidates(t, "test-migration", 1)
	run := loom.MustDispatch(t, "test-migration", "step-plain", "acme/payments", nil)
	loom.SetUnavailable(true)
	close(proceed)
	// The report was refused, and sent again, while Loom was down.
	log.wait(t, "report to Loom failed; retrying", 2)
	loom.SetUnavailable(false)
	run.MustWait(t, migratorsdk.StatusCompleted)
	reps := run.Reports()
	if len(reps) != 2 || reps[0].Message != "halfway" {
		t.Fatalf("reports %+v", reps)
	}
}

func TestStackedPreviewKeepsGoingAfterAFailedStep(t *testing.T) {
	base := func(_ context.Context, repo, path string) (string, bool, error) {
		if path == "a.txt" {
			return "a\n", true, nil
		}
		return "", false, nil
	}
	apply := func(ctx context.Context, step migratorsdk.Step, files *migratorsdk.FileSet) (string, error) {
		switch step.Name {
		case "broken":
			files.Write("r", "a.txt", "half-done\n")
			return "", errors.New("cannot parse a.txt")
		case "noop":
			return "already done", nil
		case "add":
			files.Write("r", "b.txt", "new\n")
		case "edit":
			c, _, err := files.Read(ctx, "r", "a.txt")
			if err != nil {
				return "", err
			}
			files.Write("r", "a.txt", c+"more\n")
			files.Delete("r", "b.txt")
		}
		return "", nil
	}
	got := migratorsdk.StackedPreview(context.Background(), migratorsdk.PreviewRequest{Steps: []migratorsdk.Step{
		{Name: "broken"}, {Name: "noop"}, {Name: "add"}, {Name: "edit"},
	}}, base, apply)
	if got[0].Error != "cannot parse a.txt" || len(got[0].Diffs) != 0 {
		t.Errorf("broken: %+v", got[0])
	}
	if !got[1].Skipped || got[1].SkipReason != "already done" {
		t.Errorf("noop: %+v", got[1])
	}
	if len(got[2].Diffs) != 1 || got[2].Diffs[0].Status != migratorsdk.FileAdded || got[2].Diffs[0].After != "new\n" {
		t.Errorf("add: %+v", got[2])
	}
	// The failed step's half-done write did not leak into later steps.
	e := got[3].Diffs
	if len(e) != 2 || e[0].Path != "a.txt" || e[0].Before != "a\n" || e[0].After != "a\nmore\n" || e[1].Status != migratorsdk.FileDeleted || e[1].Before != "new\n" {
		t.Errorf("edit: %+v", got[3])
	}
}

func TestNewFailsFast(t *testing.T) {
	h := func(context.Context, *migratorsdk.Dispatch) error { return nil }
	for _, tc := range []struct {
		name string
		spec migratorsdk.Spec
		opts migratorsdk.Options
		want string
	}{
		{"no Loom", spec(map[string]migratorsdk.StepHandler{"plain": h}), migratorsdk.Options{}, "LoomURL"},
		{"unused handler", func() migratorsdk.Spec {
			s := spec(map[string]migratorsdk.StepHandler{"plain": h})
			s.Handlers["extra"] = h
			return s
		}(), migratorsdk.Options{LoomURL: "http://x"}, `"extra", which no step uses`},
		{"duplicate step", func() migratorsdk.Spec {
			s := spec(map[string]migratorsdk.StepHandler{"plain": h})
			s.Migration.Steps = append(s.Migration.Steps, s.Migration.Steps[0])
			return s
		}(), migratorsdk.Options{LoomURL: "http://x"}, "appears twice"},
		{"bad LoomURL", spec(map[string]migratorsdk.StepHandler{"plain": h}), migratorsdk.Options{LoomURL: "localhost:8080"}, "want an http(s) URL"},
		{"bad input", func() migratorsdk.Spec {
			s := spec(map[string]migratorsdk.StepHandler{"plain": h})
			s.Migration.Inputs = []migratorsdk.Input{{Name: "go version"}}
			return s
		}(), migratorsdk.Options{LoomURL: "http://x"}, `input name "go version"`},
		{"no name", func() migratorsdk.Spec {
			s := spec(map[string]migratorsdk.StepHandler{"plain": h})
			s.Migration.Name = ""
			return s
		}(), migratorsdk.Options{LoomURL: "http://x"}, "migration name: 1-200 characters"},
		{"bad id", func() migratorsdk.Spec {
			s := spec(map[string]migratorsdk.StepHandler{"plain": h})
			s.Migration.ID = "Bad_ID"
			return s
		}(), migratorsdk.Options{LoomURL: "http://x"}, `migration id "Bad_ID"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := migratorsdk.New(tc.spec, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %s", err, tc.want)
			}
		})
	}
}

func TestAMigratorObeysOnlyItsLoom(t *testing.T) {
	loom := migratortest.New(t)
	loom.EnableSigning()
	var calls atomic.Int32
	s := spec(map[string]migratorsdk.StepHandler{"plain": func(context.Context, *migratorsdk.Dispatch) error {
		calls.Add(1)
		return nil
	}})
	url, _ := start(t, s, migratorsdk.Options{LoomURL: loom.URL()})
	loom.WaitCandidates(t, "test-migration", 1)

	// Its Loom's signed dispatch is obeyed, and the report carries the
	// dispatch's callback token (the fake refuses a report without it).
	loom.MustDispatch(t, "test-migration", "step-plain", "acme/payments", nil).MustWait(t, migratorsdk.StatusCompleted)

	req := &migratorv1.ExecuteStepRequest{RunId: "test-migration__acme/payments", Execution: 1, MigrationId: "test-migration", Attempt: 7,
		Step: &loomv1.StepDefinition{Name: "step-plain", Type: "plain"}, Candidate: &loomv1.Candidate{Id: "acme/payments", Kind: "service"}}
	unsigned := migratorv1connect.NewMigratorServiceClient(http.DefaultClient, url)
	if _, err := unsigned.ExecuteStep(context.Background(), connect.NewRequest(req)); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("an unsigned dispatch: %v", err)
	}
	// Another Loom's signature is no better.
	impostor := migratortest.New(t)
	impostor.EnableSigning()
	impostor.Register(s.Migration, url, migratorsdk.Candidate{ID: "acme/payments", Kind: "service"})
	if _, err := impostor.Dispatch(context.Background(), "test-migration", "step-plain", "acme/payments", nil); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("a dispatch signed by another Loom: %v", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the handler ran %d times", n)
	}
}

func TestLongReasonsAndInterruptedHandlersStillReachLoom(t *testing.T) {
	loom := migratortest.New(t)
	slowStarted := make(chan struct{})
	s := spec(map[string]migratorsdk.StepHandler{
		"failing": func(context.Context, *migratorsdk.Dispatch) error { return errors.New(strings.Repeat("é", 5000)) },
		"slow": func(ctx context.Context, _ *migratorsdk.Dispatch) error {
			close(slowStarted)
			<-ctx.Done()
			return ctx.Err()
		},
	})
	_, stop := start(t, s, migratorsdk.Options{LoomURL: loom.URL(), ShutdownTimeout: 200 * time.Millisecond})
	loom.WaitCandidates(t, "test-migration", 1)
	failing := loom.MustDispatch(t, "test-migration", "step-failing", "acme/payments", nil)
	if rep := failing.MustWait(t, migratorsdk.StatusFailed); len(rep.Message) > 4000 || !strings.HasSuffix(rep.Message, "[…]") {
		t.Fatalf("a long reason was reported as %d bytes", len(rep.Message))
	}
	slow := loom.MustDispatch(t, "test-migration", "step-slow", "acme/payments", nil)
	<-slowStarted
	stop()
	if rep := slow.MustWait(t, migratorsdk.StatusFailed); !strings.HasPrefix(rep.Message, "interrupted") {
		t.Fatalf("an interrupted handler was reported as %q", rep.Message)
	}
}

// Loom can dispatch a step and restart before it records the end of the step
// before; it then refuses the step's reports (STEP_NOT_CURRENT) until it has
// caught up and dispatches the step again. The work done is not a failure.
func TestAReportRefusedAsNotCurrentIsSentWhenTheStepIsDispatchedAgain(t *testing.T) {
	for _, tc := range []struct {
		name     string
		progress bool  // the handler reports progress first, and stops when refused
		runs     int32 // at least; the Migrator's start may dispatch it once more

	}{
		{name: "completed", runs: 1},
		{name: "refused progress", progress: true, runs: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			proceed := make(chan struct{})
			finished := make(chan struct{}, 2)
			loom := migratortest.New(t)
			s := spec(map[string]migratorsdk.StepHandler{"plain": func(ctx context.Context, d *migratorsdk.Dispatch) error {
				defer func() { finished <- struct{}{} }()
				calls.Add(1)
				<-proceed
				if tc.progress {
					if err := d.Progress(ctx, "halfway"); err != nil {
						return err
					}
				}
				return d.Completed(ctx)
			}})
			var log logs
			start(t, s, migratorsdk.Options{LoomURL: loom.URL(), Logger: log.logger()})
			loom.WaitCandidates(t, "test-migration", 1)
			run := loom.MustDispatch(t, "test-migration", "step-plain", "acme/payments", nil)
			run.Behind()
			close(proceed)
			<-finished
			// The SDK has judged the handler's outcome (a wrong Failed
			// report would be sent before this, and again below).
			log.wait(t, "the step's report did not reach Loom: kept", 1)
			if err := run.DispatchAgain(context.Background()); err != nil {
				t.Fatal(err)
			}
			run.MustWait(t, migratorsdk.StatusCompleted)
			if n := calls.Load(); n < tc.runs || !tc.progress && n != tc.runs {
				t.Fatalf("handler ran %d times, want %d", n, tc.runs)
			}
			for _, rep := range run.Reports() {
				if rep.Status == migratorsdk.StatusFailed {
					t.Fatalf("step reported failed: %+v", run.Reports())
				}
			}
		})
	}
}

func TestRefusalReason(t *testing.T) {
	loom := migratortest.New(t)
	c := migratorsdk.NewClient(loom.URL(), nil)
	_, err := c.ReportStep(context.Background(), migratorsdk.Report{RunID: "nope", Step: "s", Status: migratorsdk.StatusCompleted})
	if connect.CodeOf(err) != connect.CodeNotFound || migratorsdk.RefusalReason(err) != loomv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		t.Fatalf("unknown run: %v, reason %q", err, migratorsdk.RefusalReason(err))
	}
	if migratorsdk.RefusalReason(errors.New("plain")) != loomv1.ErrorReason_ERROR_REASON_UNSPECIFIED || migratorsdk.RefusalReason(nil) != loomv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		t.Fatal("a reason from an error that has none")
	}
	withInfo := func(domain, reason string) error {
		err := connect.NewError(connect.CodeFailedPrecondition, errors.New("refused"))
		d, derr := connect.NewErrorDetail(&errdetails.ErrorInfo{Domain: domain, Reason: reason})
		if derr != nil {
			t.Fatal(derr)
		}
		err.AddDetail(d)
		return err
	}
	for _, c := range []struct {
		domain, reason string
		want           loomv1.ErrorReason
	}{
		{"loom.dev", "STALE_ATTEMPT", loomv1.ErrorReason_STALE_ATTEMPT},
		{"loom.dev", "A_REASON_FROM_A_NEWER_LOOM", loomv1.ErrorReason_ERROR_REASON_UNSPECIFIED},
		{"example.com", "STALE_ATTEMPT", loomv1.ErrorReason_ERROR_REASON_UNSPECIFIED},
	} {
		if got := migratorsdk.RefusalReason(withInfo(c.domain, c.reason)); got != c.want {
			t.Errorf("%s %s: got %v, want %v", c.domain, c.reason, got, c.want)
		}
	}
}

// Mistakes end the Migrator at once with the reason, rather than leaving it
// serving and silent.
func TestARefusedAnnounceEndsServeAtOnce(t *testing.T) {
	loom := migratortest.New(t)
	loom.RequireToken("the-right-token")
	s := spec(map[string]migratorsdk.StepHandler{"plain": func(context.Context, *migratorsdk.Dispatch) error { return nil }})
	for _, token := range []string{"", "a-wrong-token"} {
		m, err := migratorsdk.New(s, migratorsdk.Options{LoomURL: loom.URL(), ListenAddr: "127.0.0.1:0", Token: token, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- m.Run(context.Background()) }()
		select {
		case err := <-done:
			if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "announce test-migration") {
				t.Fatalf("token %q: Run ended with %v", token, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("token %q: Run still serving 5 s after Loom refused its announce", token)
		}
	}
	// The right token: it serves, and advertises the port it bound for ":0".
	url, _ := start(t, s, migratorsdk.Options{LoomURL: loom.URL(), Token: "the-right-token"})
	loom.WaitCandidates(t, "test-migration", 1)
	if _, migratorURL, _ := loom.Migration("test-migration"); migratorURL != url {
		t.Fatalf("announced %s, want %s", migratorURL, url)
	}
}

func TestRunAdvertisesThePortItBound(t *testing.T) {
	loom := migratortest.New(t)
	s := spec(map[string]migratorsdk.StepHandler{"plain": func(context.Context, *migratorsdk.Dispatch) error { return nil }})
	m, err := migratorsdk.New(s, migratorsdk.Options{LoomURL: loom.URL(), ListenAddr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	go m.Run(t.Context())
	loom.WaitCandidates(t, "test-migration", 1)
	run := loom.MustDispatch(t, "test-migration", "step-plain", "acme/payments", nil)
	run.MustWait(t, migratorsdk.StatusCompleted)
	if _, u, _ := loom.Migration("test-migration"); strings.HasSuffix(u, ":0") {
		t.Fatalf("advertised %s", u)
	}
}

func TestAClosedPullRequestFailsItsStepAndMergesAreCheckedAtStart(t *testing.T) {
	loom := migratortest.New(t)
	var closed atomic.Bool
	s := spec(map[string]migratorsdk.StepHandler{"open-pr": func(ctx context.Context, d *migratorsdk.Dispatch) error {
		return d.Opened(ctx, "https://git.example/pr/7")
	}})
	s.CheckMerged = func(_ context.Context, o migratorsdk.OpenStep) (bool, error) {
		if closed.Load() {
			return false, fmt.Errorf("%w: %s was closed by a reviewer", migratorsdk.ErrClosed, o.PRURL)
		}
		return false, nil
	}
	_, stop := start(t, s, migratorsdk.Options{LoomURL: loom.URL(), MergeCheckEvery: time.Hour})
	loom.WaitCandidates(t, "test-migration", 1)
	run := loom.MustDispatch(t, "test-migration", "step-open-pr", "acme/payments", nil)
	run.MustWait(t, migratorsdk.StatusOpen)
	stop()
	closed.Store(true)
	// A Migrator that starts checks at once, not one MergeCheckEvery later.
	start(t, s, migratorsdk.Options{LoomURL: loom.URL(), MergeCheckEvery: time.Hour})
	rep := run.MustWait(t, migratorsdk.StatusFailed)
	if !strings.Contains(rep.Message, "closed without merge: https://git.example/pr/7 was closed by a reviewer") {
		t.Fatalf("failed with %q", rep.Message)
	}
}

// A report that does not reach Loom (here Loom fails internally) does not
// turn the step failed: the report is kept and sent when Loom dispatches the
// step again.
func TestAReportThatDidNotLandIsSentOnTheNextDispatch(t *testing.T) {
	loom := migratortest.New(t)
	var calls atomic.Int32
	finished := make(chan struct{}, 1)
	s := spec(map[string]migratorsdk.StepHandler{"plain": func(ctx context.Context, d *migratorsdk.Dispatch) error {
		defer func() { finished <- struct{}{} }()
		calls.Add(1)
		return d.Completed(ctx)
	}})
	var log logs
	var toLoom loomCalls
	start(t, s, migratorsdk.Options{LoomURL: loom.URL(), Logger: log.logger(), ClientOptions: []connect.ClientOption{toLoom.option()}})
	loom.WaitCandidates(t, "test-migration", 1)
	eventually(t, 10*time.Second, "the Migrator's start asked for the steps in progress", func() bool { return toLoom.count("ResumeSteps") >= 1 })
	loom.FailWith(connect.CodeInternal)
	run, err := loom.Dispatch(context.Background(), "test-migration", "step-plain", "acme/payments", nil)
	if err != nil {
		t.Fatal(err)
	}
	<-finished
	// The SDK has judged the handler's outcome (a wrong Failed report would
	// be sent before this, and again below).
	log.wait(t, "the step's report did not reach Loom: kept", 1)
	loom.FailWith(0)
	if err := run.DispatchAgain(context.Background()); err != nil {
		t.Fatal(err)
	}
	run.MustWait(t, migratorsdk.StatusCompleted)
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times", n)
	}
	for _, rep := range run.Reports() {
		if rep.Status == migratorsdk.StatusFailed {
			t.Fatalf("step reported failed: %+v", run.Reports())
		}
	}
}

// The snippet of migratortest's package documentation, as is.
func TestMigratortestsDocSnippet(t *testing.T) {
	spec := migratorsdk.Spec{
		Migration: migratorsdk.Migration{ID: "my-migration", Name: "Mine", Steps: []migratorsdk.Step{{Name: "bump", Type: "open-pr"}}},
		Handlers: map[string]migratorsdk.StepHandler{"open-pr": func(ctx context.Context, d *migratorsdk.Dispatch) error {
			return d.Opened(ctx, "https://git.example/pull/1")
		}},
		Discover: func(context.Context) ([]migratorsdk.Candidate, error) {
			return []migratorsdk.Candidate{{ID: "acme/payments", Kind: "service"}}, nil
		},
	}
	loom := migratortest.New(t)
	m, err := migratorsdk.New(spec, migratorsdk.Options{LoomURL: loom.URL(), ListenAddr: "127.0.0.1:0",
		MergeCheckEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go m.Run(t.Context())
	loom.WaitCandidates(t, "my-migration", 1)
	run := loom.MustDispatch(t, "my-migration", "bump", "acme/payments", nil)
	run.MustWait(t, migratorsdk.StatusOpen)
}

// ViewersMayPreview reaches Loom with the announcement, and is off unless
// the Migrator sets it.
func TestAnnounceSaysWhetherViewersMayPreview(t *testing.T) {
	for _, allow := range []bool{false, true} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		loom := migratortest.Serve(t, l)
		s := spec(map[string]migratorsdk.StepHandler{"plain": func(context.Context, *migratorsdk.Dispatch) error { return nil }})
		s.Migration.ViewersMayPreview = allow
		_, stop := start(t, s, migratorsdk.Options{LoomURL: "http://" + l.Addr().String()})
		if got := loom.WaitAnnounced(t, "test-migration").ViewersMayPreview; got != allow {
			t.Errorf("set %v, Loom got %v", allow, got)
		}
		stop()
	}
}
