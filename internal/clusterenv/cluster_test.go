package clusterenv_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/internal/clusterenv"
	"github.com/loomhq/loom/migratorsdk"
)

// The example Migrator's Migration, and what its Runs need.
const migration = "go-directive"

var inputs = map[string]string{"go_version": "1.23", "toolchain": "1.23.4"}

// fleet gives 12 Candidates: every fifth repository is already on go 1.23.
const fleet, candidates = 15, 12

// TestRunsAcrossReplicas runs the production topology (package clusterenv:
// PostgreSQL, a Temporal server on it, a Redis Cluster of 3 masters and 3
// replicas, 3 loom serve replicas on one task queue, the example Migrator)
// and drives Runs through it as a team would, each call to a replica of
// its own: Runs are started and driven (merges, reviews) through replica
// A, the Migrator reports through B, and everything is watched through C
// (WatchRun, WatchEvents of the Migration and the fleet feed), so that C
// sees changes only other replicas made. Every Run must complete, each
// watcher see every change once, and each Run's history hold each event
// once.
func TestRunsAcrossReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	env := start(ctx, t)
	a, b, c := env.Replicas[0], env.Replicas[1], env.Replicas[2]
	// The Migrator was started announcing to replica 1 (B).
	op := newClient(a.URL, env.Tokens["operator"])
	watcher := newClient(c.URL, env.Tokens["viewer"])
	ids := waitCandidates(ctx, t, watcher)

	feeds := watchFeeds(ctx, t, watcher, op, ids[0])
	began := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	seen := make([][]int64, len(ids))
	for i, id := range ids {
		wg.Go(func() { seen[i], errs[i] = drive(ctx, op, watcher, id) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Runs that did not complete:\n%v", err)
	}
	t.Logf("%d Runs of 3 steps completed in %v (started and driven through %s, reported through %s, watched through %s)",
		len(ids), time.Since(began).Round(100*time.Millisecond), a.Name(), b.Name(), c.Name())

	checkRuns(ctx, t, env, ids)
	checkHistories(ctx, t, watcher, ids)
	feeds.check(ctx, t)
	t.Logf("steps dispatched by each replica's worker: %s", dispatchesByReplica(t, env))
}

// bin holds loom, example-migrator and temporalserver, built once for
// every test of the package.
var bin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "loom-clusterenv-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		began := time.Now()
		if err := clusterenv.Build(context.Background(), dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "built loom, example-migrator and temporalserver in %v\n", time.Since(began).Round(100*time.Millisecond))
		bin = dir
		return m.Run()
	}())
}

// start starts the environment for the test; its logs are printed when
// the test fails.
func start(ctx context.Context, t *testing.T) *clusterenv.Env {
	t.Helper()
	dir := t.TempDir()
	began := time.Now()
	env, err := clusterenv.Start(ctx, clusterenv.Options{Dir: dir, BinDir: bin, Fleet: fleet, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatalf("start the cluster: %v", err)
	}
	t.Logf("the cluster is up after %v", time.Since(began).Round(100*time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range env.Replicas {
				t.Logf("the end of %s:\n%s", r.Name(), tailOf(filepath.Join(dir, r.Name()+".log"), 4000))
			}
			t.Logf("the end of the Migrator's log:\n%s", tailOf(filepath.Join(dir, "migrator.log"), 2000))
			t.Logf("the end of Temporal's log:\n%s", tailOf(filepath.Join(dir, "temporal.log"), 2000))
		}
		env.Stop()
	})
	return env
}

// caller is one caller of one replica.
type caller struct {
	runs    loomv1connect.RunServiceClient
	history loomv1connect.HistoryServiceClient
	disc    loomv1connect.DiscoveryServiceClient
}

func newClient(url, token string) *caller {
	hc := migratorsdk.DefaultHTTPClient()
	// Watch streams outlive any request timeout.
	hc.Timeout = 0
	opts := []connect.ClientOption{migratorsdk.WithToken(token)}
	return &caller{
		runs:    loomv1connect.NewRunServiceClient(hc, url, opts...),
		history: loomv1connect.NewHistoryServiceClient(hc, url, opts...),
		disc:    loomv1connect.NewDiscoveryServiceClient(hc, url, opts...),
	}
}

// waitCandidates waits until the Migrator has discovered its Candidates.
func waitCandidates(ctx context.Context, t *testing.T, c *caller) []string {
	t.Helper()
	for {
		res, err := c.disc.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: migration, PageSize: 100}))
		if err == nil && len(res.Msg.GetCandidates()) == candidates {
			var ids []string
			for _, c := range res.Msg.GetCandidates() {
				ids = append(ids, c.GetId())
			}
			return ids
		}
		if ctx.Err() != nil {
			t.Fatalf("the Migrator's %d Candidates did not arrive: %v (last: %v)", candidates, ctx.Err(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// drive starts the Run of candidate through op and, from what watcher's
// WatchRun shows, merges its two pull requests and finishes its review
// through op, until watcher shows it completed. It returns the versions
// the watch delivered, which must only ever grow.
func drive(ctx context.Context, op, watcher *caller, candidate string) ([]int64, error) {
	runID := migration + "__" + candidate
	if _, err := op.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: migration, CandidateId: candidate, Inputs: inputs})); err != nil {
		return nil, fmt.Errorf("%s: start: %w", runID, err)
	}
	var versions []int64
	acted := map[string]bool{}
	stream, err := watcher.runs.WatchRun(ctx, connect.NewRequest(&loomv1.WatchRunRequest{RunId: runID}))
	if err != nil {
		return nil, fmt.Errorf("%s: watch: %w", runID, err)
	}
	defer stream.Close()
	for stream.Receive() {
		run := stream.Msg().GetRun()
		if run == nil {
			continue // a heartbeat
		}
		if n := len(versions); n > 0 && run.GetVersion() <= versions[n-1] {
			return versions, fmt.Errorf("%s: the watch sent version %d after %d", runID, run.GetVersion(), versions[n-1])
		}
		versions = append(versions, run.GetVersion())
		if run.GetStatus() == loomv1.RunStatus_RUN_STATUS_COMPLETED {
			return versions, nil
		}
		if run.GetStatus() != loomv1.RunStatus_RUN_STATUS_RUNNING {
			return versions, fmt.Errorf("%s: %v", runID, run.GetStatus())
		}
		for _, s := range run.GetStepResults() {
			key := fmt.Sprintf("%s/%d/%v", s.GetStepName(), s.GetAttempt(), s.GetStatus())
			if acted[key] {
				continue
			}
			var err error
			switch s.GetStatus() {
			case loomv1.StepStatus_STEP_STATUS_OPEN:
				_, err = op.runs.MarkStepMerged(ctx, connect.NewRequest(&loomv1.MarkStepMergedRequest{RunId: runID, StepName: s.GetStepName(), Attempt: s.GetAttempt(), Note: "merged by the cluster test"}))
			case loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW:
				_, err = op.runs.FinishReview(ctx, connect.NewRequest(&loomv1.FinishReviewRequest{RunId: runID, StepName: s.GetStepName(), Attempt: s.GetAttempt(), Outcome: loomv1.StepStatus_STEP_STATUS_COMPLETED}))
			case loomv1.StepStatus_STEP_STATUS_FAILED:
				return versions, fmt.Errorf("%s: step %s failed: %s", runID, s.GetStepName(), s.GetMessage())
			default:
				continue
			}
			if err != nil {
				return versions, fmt.Errorf("%s: step %s %v: %w", runID, s.GetStepName(), s.GetStatus(), err)
			}
			acted[key] = true
		}
	}
	return versions, fmt.Errorf("%s: the watch ended before the Run completed (versions %v): %v", runID, versions, stream.Err())
}

// checkRuns checks that every replica reads every Run completed at the same
// version, and that Temporal says each Run's workflow completed.
func checkRuns(ctx context.Context, t *testing.T, env *clusterenv.Env, ids []string) {
	t.Helper()
	tc, err := client.Dial(client.Options{HostPort: env.TemporalAddr, Namespace: env.Namespace, Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatalf("dial Temporal: %v", err)
	}
	defer tc.Close()
	for _, id := range ids {
		runID := migration + "__" + id
		var versions []int64
		for _, r := range env.Replicas {
			res, err := newClient(r.URL, env.Tokens["viewer"]).runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: runID}))
			if err != nil {
				t.Errorf("%s: GetRun through %s: %v", runID, r.Name(), err)
				continue
			}
			if s := res.Msg.GetRun().GetStatus(); s != loomv1.RunStatus_RUN_STATUS_COMPLETED {
				t.Errorf("%s: %s reads it %v", runID, r.Name(), s)
			}
			versions = append(versions, res.Msg.GetRun().GetVersion())
		}
		if len(slices.Compact(slices.Clone(versions))) != 1 {
			t.Errorf("%s: the replicas read versions %v", runID, versions)
		}
		desc, err := tc.DescribeWorkflowExecution(ctx, runID, "")
		if err != nil {
			t.Errorf("%s: describe its workflow: %v", runID, err)
		} else if s := desc.GetWorkflowExecutionInfo().GetStatus(); s != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
			t.Errorf("%s: its workflow is %v", runID, s)
		}
	}
}

// listEvents is every event of the Migration (or of one Candidate), oldest
// first.
func listEvents(ctx context.Context, c *caller, candidate string) ([]*loomv1.Event, error) {
	var out []*loomv1.Event
	token := ""
	for {
		res, err := c.history.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: migration, CandidateId: candidate, PageSize: 500, PageToken: token}))
		if err != nil {
			return nil, err
		}
		out = append(out, res.Msg.GetEvents()...)
		if token = res.Msg.GetNextPageToken(); token == "" {
			break
		}
	}
	slices.Reverse(out)
	return out, nil
}

// kindOf names an event for counting: its kind, its step, and a report's
// status.
func kindOf(e *loomv1.Event) string {
	k := strings.ToLower(strings.TrimPrefix(e.GetKind().String(), "EVENT_KIND_"))
	if e.GetStep() != "" {
		k += " " + e.GetStep()
	}
	if s := e.GetDetails()["status"]; s != "" {
		k += " " + s
	}
	if r := e.GetDetails()["reason"]; r != "" {
		k += " (again: " + r + ")"
	}
	return k
}

// checkHistories checks that each Candidate's history tells its Run once:
// every step dispatched once, reported once per status, merged or
// reviewed once.
func checkHistories(ctx context.Context, t *testing.T, c *caller, ids []string) {
	t.Helper()
	for _, id := range ids {
		events, err := listEvents(ctx, c, id)
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		var got []string
		for _, e := range events {
			if e.GetRunId() != "" {
				got = append(got, kindOf(e))
			}
		}
		sort.Strings(got)
		if !slices.Equal(got, runHistory) {
			t.Errorf("the history of %s:\n  %s\nwant:\n  %s", id, strings.Join(got, "; "), strings.Join(runHistory, "; "))
		}
	}
}

// runHistory is the history of one Run of the example Migrator, each
// event once (sorted): each step dispatched once, its pull request opened
// once and merged once (the operator marks it), the review awaited once and
// finished once.
var runHistory = []string{
	"review_finished review completed",
	"run_completed",
	"run_started",
	"step_dispatched bump-go",
	"step_dispatched pin-toolchain",
	"step_dispatched review",
	"step_marked_merged bump-go",
	"step_marked_merged pin-toolchain",
	"step_reported bump-go open",
	"step_reported pin-toolchain open",
	"step_reported review awaiting_review",
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// feeds are the event streams watched through one replica: the
// Migration's WatchEvents, from just before the test's first change, and
// the fleet feed (every Migration's new events), from its first event on.
type feeds struct {
	watcher        *caller
	cursor         string
	mu             sync.Mutex
	migration, all []*loomv1.Event
	errs           []error
}

func watchFeeds(ctx context.Context, t *testing.T, watcher, op *caller, probe string) *feeds {
	t.Helper()
	f := &feeds{watcher: watcher}
	events, err := listEvents(ctx, watcher, "")
	if err != nil || len(events) == 0 {
		t.Fatalf("the Migration's events before the test: %v %v", len(events), err)
	}
	f.cursor = events[len(events)-1].GetId()
	follow := func(req *loomv1.WatchEventsRequest, into *[]*loomv1.Event) {
		stream, err := watcher.history.WatchEvents(ctx, connect.NewRequest(req))
		if err != nil {
			f.fail(err)
			return
		}
		defer stream.Close()
		for stream.Receive() {
			if e := stream.Msg().GetEvent(); e != nil {
				f.mu.Lock()
				*into = append(*into, e)
				f.mu.Unlock()
			}
		}
		if ctx.Err() == nil {
			f.fail(fmt.Errorf("WatchEvents %+v ended: %v", req, stream.Err()))
		}
	}
	go follow(&loomv1.WatchEventsRequest{MigrationId: migration, AfterId: f.cursor}, &f.migration)
	go follow(&loomv1.WatchEventsRequest{}, &f.all)
	// The fleet feed starts when its subscription does, which the client
	// cannot see: change a Candidate's inputs through another replica
	// until the feed shows a change. From then on it must miss nothing.
	for i := 0; ; i++ {
		_, err := op.disc.UpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.UpdateCandidateInputsRequest{
			MigrationId: migration, CandidateId: probe, Inputs: map[string]string{"toolchain": fmt.Sprintf("1.23.%d", i)}}))
		if err != nil {
			t.Fatalf("update %s's inputs: %v", probe, err)
		}
		for range 20 {
			f.mu.Lock()
			n := len(f.all)
			f.mu.Unlock()
			if n > 0 {
				return f
			}
			time.Sleep(50 * time.Millisecond)
		}
		if ctx.Err() != nil {
			t.Fatalf("the fleet feed shows no change: %v", ctx.Err())
		}
	}
}

// idAfter reports whether event id a is later than b: ids are Redis
// stream ids, <ms>-<seq>, compared as numbers.
func idAfter(a, b string) bool {
	var am, as, bm, bs uint64
	_, _ = fmt.Sscanf(a, "%d-%d", &am, &as)
	_, _ = fmt.Sscanf(b, "%d-%d", &bm, &bs)
	return am > bm || am == bm && as > bs
}

func (f *feeds) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

// check waits until both feeds have delivered what the Migration's
// history holds and compares: the same events, in the same order, none
// twice.
func (f *feeds) check(ctx context.Context, t *testing.T) {
	t.Helper()
	var history []*loomv1.Event
	deadline := time.Now().Add(30 * time.Second)
	for {
		events, err := listEvents(ctx, f.watcher, "")
		if err != nil {
			t.Fatalf("the Migration's history: %v", err)
		}
		history = history[:0]
		for _, e := range events {
			if idAfter(e.GetId(), f.cursor) {
				history = append(history, e)
			}
		}
		f.mu.Lock()
		caughtUp := len(f.migration) >= len(history)
		f.mu.Unlock()
		if caughtUp || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) > 0 {
		t.Errorf("the watches failed: %v", errors.Join(f.errs...))
	}
	ids := func(events []*loomv1.Event) []string {
		var out []string
		for _, e := range events {
			out = append(out, e.GetId())
		}
		return out
	}
	if got, want := ids(f.migration), ids(history); !slices.Equal(got, want) {
		t.Errorf("WatchEvents of the Migration delivered %d events, the history holds %d after %s:\n got %v\nwant %v", len(got), len(want), f.cursor, got, want)
	}
	first := slices.IndexFunc(history, func(e *loomv1.Event) bool { return e.GetId() == f.all[0].GetId() })
	if first < 0 {
		t.Errorf("the fleet feed's first event %s is not in the Migration's history", f.all[0].GetId())
		return
	}
	if got, want := ids(f.all), ids(history[first:]); !slices.Equal(got, want) {
		t.Errorf("the fleet feed delivered %d events, the history holds %d from its first:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	t.Logf("WatchEvents of the Migration delivered %d events, the fleet feed %d: each event of the history once, in order", len(f.migration), len(f.all))
}

// dispatchesByReplica counts the "dispatching step" lines of each
// replica's log: which workers of the shared task queue did the work.
func dispatchesByReplica(t *testing.T, env *clusterenv.Env) string {
	var out []string
	for _, r := range env.Replicas {
		b, _ := os.ReadFile(r.Process().Log)
		out = append(out, fmt.Sprintf("%s %d", r.Name(), strings.Count(string(b), `msg="dispatching step"`)))
	}
	return strings.Join(out, ", ")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func tailOf(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
