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

// candidatesOf is how many Candidates a fleet of n repositories gives:
// every fifth repository is already on go 1.23.
func candidatesOf(n int) int { return n - n/5 }

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
	const fleet = 15
	env := start(ctx, t, fleet)
	a, b, c := env.Replicas[0], env.Replicas[1], env.Replicas[2]
	// The Migrator was started announcing to replica 1 (B).
	op := newClient(a.URL, env.Tokens["operator"])
	watcher := newClient(c.URL, env.Tokens["viewer"])
	ids := waitCandidates(ctx, t, watcher, candidatesOf(fleet))

	strict := &calls{strict: true}
	feeds := watchFeeds(ctx, t, strict, watcher, op, ids[0])
	began := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Go(func() { errs[i] = drive(ctx, strict, op, watcher, id, 0) })
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
	checkSessionsAcrossReplicas(t, env)
	checkRateLimitsPerReplica(ctx, t, env)
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
func start(ctx context.Context, t testing.TB, fleet int) *clusterenv.Env {
	t.Helper()
	// Not t.TempDir: a failed test keeps its logs and data to read.
	dir, err := os.MkdirTemp("", "loom-cluster-test-")
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	env, err := clusterenv.Start(ctx, clusterenv.Options{Dir: dir, BinDir: bin, Fleet: fleet, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatalf("start the cluster: %v (logs in %s)", err, dir)
	}
	t.Logf("the cluster is up after %v", time.Since(began).Round(100*time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range env.Replicas {
				t.Logf("the warnings and errors of %s:\n%s", r.Name(), warnings(filepath.Join(dir, r.Name()+".log"), 30))
			}
			t.Logf("the end of the Migrator's log:\n%s", tailOf(filepath.Join(dir, "migrator.log"), 2000))
			t.Logf("the end of Temporal's log:\n%s", tailOf(filepath.Join(dir, "temporal.log"), 2000))
		}
		env.Stop()
		if t.Failed() {
			t.Logf("the logs and data of every process are kept in %s", dir)
		} else {
			_ = os.RemoveAll(dir)
		}
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
func waitCandidates(ctx context.Context, t *testing.T, c *caller, candidates int) []string {
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

// calls are the test's calls of the surviving replicas. Strict, every
// call must succeed at once; else an unavailable answer (the most a
// caller may see while a replica or a Redis master fails) is counted and
// the call tried again, as a client would.
type calls struct {
	strict      bool
	mu          sync.Mutex
	unavailable map[string]int
}

func (c *calls) note(what string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unavailable == nil {
		c.unavailable = map[string]int{}
	}
	c.unavailable[what]++
}

// tolerated reports whether err may be tried again.
func (c *calls) tolerated(what string, err error) bool {
	if c.strict || connect.CodeOf(err) != connect.CodeUnavailable {
		return false
	}
	c.note(what, err)
	return true
}

// do calls f until it succeeds. Once an attempt was answered unavailable,
// an answer of code landed says that attempt did land (its answer was
// lost).
func (c *calls) do(ctx context.Context, what string, landed connect.Code, f func() error) error {
	retried, tries := false, 0
	for {
		err := f()
		if err == nil || retried && connect.CodeOf(err) == landed {
			return nil
		}
		if !c.tolerated(what, err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !sleep(ctx, tries) {
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
		}
		retried = true
		tries++
	}
}

// sleep waits before the next try, as a client backs off: 100 ms doubled
// each try up to 1 s (tries closer together would spend the caller's rate
// limit on a replica that cannot answer). It reports false if ctx ended.
func sleep(ctx context.Context, tries int) bool {
	d := min(100*time.Millisecond<<min(tries, 4), time.Second)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func (c *calls) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.unavailable) == 0 {
		return "none"
	}
	var out []string
	for k, n := range c.unavailable {
		out = append(out, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// drive starts the Run of candidate through op and, from what watcher's
// WatchRun shows, merges its two pull requests and finishes its review
// through op (after think, as a person would), until watcher shows it
// completed. The watch must only ever send newer versions; one that ends
// unavailable is resumed after the last version seen.
func drive(ctx context.Context, cs *calls, op, watcher *caller, candidate string, think time.Duration) error {
	runID := migration + "__" + candidate
	// A Run that stalls (a change its watcher never showed) fails in a
	// minute and a half, not at the test's deadline: with the faults of
	// these tests a Run takes seconds.
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	retried := false
	err := cs.do(ctx, "StartRun", connect.CodeAlreadyExists, func() error {
		_, err := op.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: migration, CandidateId: candidate, Inputs: inputs}))
		retried = retried || err != nil
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", runID, err)
	}
	var last, execution int64
	acted := map[string]bool{}
	for {
		stream, err := watcher.runs.WatchRun(ctx, connect.NewRequest(&loomv1.WatchRunRequest{RunId: runID, AfterVersion: last}))
		if err != nil {
			return fmt.Errorf("%s: watch: %w", runID, err)
		}
		for stream.Receive() {
			run := stream.Msg().GetRun()
			if run == nil {
				continue // a heartbeat
			}
			if run.GetVersion() <= last {
				stream.Close()
				return fmt.Errorf("%s: the watch sent version %d after %d", runID, run.GetVersion(), last)
			}
			last = run.GetVersion()
			if execution == 0 {
				execution = run.GetExecution()
			}
			if run.GetExecution() != execution {
				stream.Close()
				return fmt.Errorf("%s: a second execution of the Run started (%d after %d): its steps run again", runID, run.GetExecution(), execution)
			}
			if run.GetStatus() == loomv1.RunStatus_RUN_STATUS_COMPLETED {
				stream.Close()
				return nil
			}
			if err := act(ctx, cs, op, run, acted, think); err != nil {
				stream.Close()
				return fmt.Errorf("%s: %w", runID, err)
			}
		}
		err = stream.Err()
		stream.Close()
		// A start answered unavailable (Redis down) stands, and its retry
		// answers already_exists, but the Run's view is written by its
		// workflow, which may not have done so yet: until then the Run is
		// unavailable (Loom asked Temporal), or not found when Temporal
		// did not say within half a second, which is noted.
		if retried && last == 0 && connect.CodeOf(err) == connect.CodeNotFound {
			cs.note("WatchRun not_found after a retried start", err)
			if !sleep(ctx, 2) {
				return fmt.Errorf("%s: the Run was never recorded after its start was retried: %w", runID, err)
			}
			continue
		}
		if err == nil || !cs.tolerated("WatchRun", err) {
			return fmt.Errorf("%s: the watch ended at version %d before the Run completed: %v", runID, last, err)
		}
		if !sleep(ctx, 0) {
			return fmt.Errorf("%s: %w", runID, ctx.Err())
		}
	}
}

// act does what an operator does for run: merge an open pull request,
// finish an awaited review.
func act(ctx context.Context, cs *calls, op *caller, run *loomv1.Run, acted map[string]bool, think time.Duration) error {
	if run.GetStatus() != loomv1.RunStatus_RUN_STATUS_RUNNING {
		return fmt.Errorf("%v", run.GetStatus())
	}
	for _, s := range run.GetStepResults() {
		key := fmt.Sprintf("%s/%d/%v", s.GetStepName(), s.GetAttempt(), s.GetStatus())
		if acted[key] {
			continue
		}
		var call func() error
		what := ""
		switch s.GetStatus() {
		case loomv1.StepStatus_STEP_STATUS_OPEN:
			what = "MarkStepMerged"
			call = func() error {
				_, err := op.runs.MarkStepMerged(ctx, connect.NewRequest(&loomv1.MarkStepMergedRequest{RunId: run.GetId(), StepName: s.GetStepName(), Attempt: s.GetAttempt(), Note: "merged by the cluster test"}))
				return err
			}
		case loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW:
			what = "FinishReview"
			call = func() error {
				_, err := op.runs.FinishReview(ctx, connect.NewRequest(&loomv1.FinishReviewRequest{RunId: run.GetId(), StepName: s.GetStepName(), Attempt: s.GetAttempt(), Outcome: loomv1.StepStatus_STEP_STATUS_COMPLETED}))
				return err
			}
		case loomv1.StepStatus_STEP_STATUS_FAILED:
			return fmt.Errorf("step %s failed: %s", s.GetStepName(), s.GetMessage())
		default:
			continue
		}
		time.Sleep(think)
		// A retried action whose first try landed finds the step moved on.
		if err := cs.do(ctx, what, connect.CodeFailedPrecondition, call); err != nil {
			return fmt.Errorf("step %s %v: %w", s.GetStepName(), s.GetStatus(), err)
		}
		acted[key] = true
	}
	return nil
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

// feeds are the event streams watched through one replica: the
// Migration's WatchEvents, from just before the test's first change, and
// the fleet feed (every Migration's new events), from its first event on.
// The Migration's watch resumes after its last event when it ends
// unavailable; the fleet feed has no position to resume from, so a break
// may leave a gap in it (noted), never a duplicate.
type feeds struct {
	watcher        *caller
	cursor         string
	mu             sync.Mutex
	migration, all []*loomv1.Event
	fleetBroke     int
	errs           []error
}

func watchFeeds(ctx context.Context, t *testing.T, cs *calls, watcher, op *caller, probe string) *feeds {
	t.Helper()
	f := &feeds{watcher: watcher}
	events, err := listEvents(ctx, watcher, "")
	if err != nil || len(events) == 0 {
		t.Fatalf("the Migration's events before the test: %v %v", len(events), err)
	}
	f.cursor = events[len(events)-1].GetId()
	follow := func(fleet bool) {
		after := f.cursor
		for {
			req := &loomv1.WatchEventsRequest{MigrationId: migration, AfterId: after}
			if fleet {
				req = &loomv1.WatchEventsRequest{}
			}
			stream, err := watcher.history.WatchEvents(ctx, connect.NewRequest(req))
			if err != nil {
				f.fail(err)
				return
			}
			for stream.Receive() {
				if e := stream.Msg().GetEvent(); e != nil {
					f.mu.Lock()
					if fleet {
						f.all = append(f.all, e)
					} else {
						f.migration = append(f.migration, e)
						after = e.GetId()
					}
					f.mu.Unlock()
				}
			}
			err = stream.Err()
			stream.Close()
			if ctx.Err() != nil {
				return
			}
			if err == nil || !cs.tolerated("WatchEvents", err) {
				f.fail(fmt.Errorf("WatchEvents %+v ended: %v", req, err))
				return
			}
			if fleet {
				f.mu.Lock()
				f.fleetBroke++
				f.mu.Unlock()
			}
			if !sleep(ctx, 0) {
				return
			}
		}
	}
	go follow(false)
	go follow(true)
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
	got, want := ids(f.all), ids(history[first:])
	if f.fleetBroke == 0 {
		if !slices.Equal(got, want) {
			t.Errorf("the fleet feed delivered %d events, the history holds %d from its first:\n got %v\nwant %v", len(got), len(want), got, want)
		}
		t.Logf("WatchEvents of the Migration delivered %d events, the fleet feed %d: each event of the history once, in order", len(f.migration), len(f.all))
		return
	}
	// Resubscribed, the fleet feed may have a gap, but what it delivered
	// must be events of the history, in its order, each once.
	j := 0
	for _, id := range got {
		for j < len(want) && want[j] != id {
			j++
		}
		if j == len(want) {
			t.Errorf("the fleet feed (resubscribed %d times) delivered %s out of order, twice or not in the history:\n got %v\nwant a subsequence of %v", f.fleetBroke, id, got, want)
			return
		}
		j++
	}
	t.Logf("WatchEvents of the Migration delivered %d events (each event of the history once, in order); the fleet feed, resubscribed %d times, %d of the %d, in order, none twice",
		len(f.migration), f.fleetBroke, len(got), len(want))
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

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// warnings are the last n lines of a log above level INFO.
func warnings(path string, n int) string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			out = append(out, line)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}

func tailOf(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
