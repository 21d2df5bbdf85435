// Package faults injects the failures Loom must survive into real
// components and counts what they cost: Runs lost, steps executed twice,
// history events lost or doubled, views that disagree with Temporal, and
// the time to recover. cmd/loom-faults runs it and prints the figures; the
// package's tests run the same scenarios.
//
// Scenarios:
//   - RedisOutage: redis-server SIGKILLed while Runs are in flight, brought
//     back on the same append-only file after a while;
//   - MigratorKilled: the Migrator, a process of its own, SIGKILLed with
//     steps it accepted, then started again;
//   - LoomDevKilled: `loom dev`, a process of its own, SIGKILLed again and
//     again while Runs are in flight, and started again each time.
package faults

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/migratorsdk"
)

// Report is what one scenario cost.
type Report struct {
	Scenario string
	Runs     int
	// Completed Runs (view and workflow both completed); Lost, the others.
	Completed, Lost int
	// Doubled counts steps a Migrator completed more than once.
	Doubled int
	// EventsLost and EventsDoubled count history events missing from, or
	// recorded twice in, the Runs' histories.
	EventsLost, EventsDoubled int
	// Disagree counts Runs whose view disagrees with Temporal.
	Disagree int
	// Recovery is from the end of the fault to the last Run completed.
	Recovery time.Duration
	Notes    []string
}

// OK reports whether nothing was lost, doubled or left disagreeing.
func (r Report) OK() bool {
	return r.Lost == 0 && r.Doubled == 0 && r.EventsLost == 0 && r.EventsDoubled == 0 && r.Disagree == 0
}

// Print writes the report as one block.
func (r Report) Print(w io.Writer) {
	verdict := "OK"
	if !r.OK() {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "%s: %s\n", r.Scenario, verdict)
	fmt.Fprintf(w, "  Runs %d: completed %d, lost %d; steps doubled %d; history events lost %d, doubled %d; views disagreeing with Temporal %d; recovered %v after the fault\n",
		r.Runs, r.Completed, r.Lost, r.Doubled, r.EventsLost, r.EventsDoubled, r.Disagree, r.Recovery.Round(100*time.Millisecond))
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  %s\n", n)
	}
}

// executions counts, per (Run, execution, step, attempt), how many times a
// Migrator completed it.
type executions struct {
	mu   sync.Mutex
	done map[string]int
}

func newExecutions() *executions { return &executions{done: map[string]int{}} }

func key(d *migratorsdk.Dispatch) string {
	return fmt.Sprintf("%s/%d/%s/%d", d.RunID, d.Execution, d.Step.Name, d.Attempt)
}

func (e *executions) completed(k string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.done[k]++
}

func (e *executions) total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.done)
}

func (e *executions) doubled() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.done {
		if c > 1 {
			n++
		}
	}
	return n
}

// api is what a scenario calls of Loom's API.
type api struct {
	// lost is filled by awaitCompleted with the Runs it gave up on.
	lost    []string
	runs    loomv1connect.RunServiceClient
	history loomv1connect.HistoryServiceClient
	disc    loomv1connect.DiscoveryServiceClient
}

func newAPI(url string, token string) *api {
	hc := migratorsdk.DefaultHTTPClient()
	var opts []connect.ClientOption
	if token != "" {
		opts = append(opts, migratorsdk.WithToken(token))
	}
	return &api{
		runs:    loomv1connect.NewRunServiceClient(hc, url, opts...),
		history: loomv1connect.NewHistoryServiceClient(hc, url, opts...),
		disc:    loomv1connect.NewDiscoveryServiceClient(hc, url, opts...),
	}
}

// startRuns starts the Runs of ids, retrying each until Loom answers (an
// operator would): a fault may be on.
func (a *api) startRuns(ctx context.Context, migration string, ids []string) error {
	for _, id := range ids {
		for {
			_, err := a.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: migration, CandidateId: id}))
			if err == nil || connect.CodeOf(err) == connect.CodeAlreadyExists {
				break
			}
			// A connection reset by a Loom killed mid-call surfaces as
			// canceled: retried like unavailable (a repeat of a start that
			// landed answers already_exists).
			switch connect.CodeOf(err) {
			case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeUnknown:
			case connect.CodeCanceled:
				if ctx.Err() != nil {
					return ctx.Err()
				}
			default:
				return fmt.Errorf("start %s: %w", id, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// awaitCompleted waits until every Run of ids shows completed, or ctx ends;
// it returns when the last completed.
func (a *api) awaitCompleted(ctx context.Context, migration string, ids []string) (time.Time, int) {
	pending := map[string]bool{}
	for _, id := range ids {
		pending[migration+"__"+id] = true
	}
	var last time.Time
	for len(pending) > 0 && ctx.Err() == nil {
		for id := range pending {
			res, err := a.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: id}))
			if err == nil && res.Msg.GetRun().GetStatus() == loomv1.RunStatus_RUN_STATUS_COMPLETED {
				delete(pending, id)
				last = time.Now()
			}
		}
		if len(pending) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	a.lost = a.lost[:0]
	for id := range pending {
		a.lost = append(a.lost, id)
	}
	return last, len(ids) - len(pending)
}

// describeLost says where the Runs awaitCompleted gave up on stand.
func (a *api) describeLost(ctx context.Context, ids []string) []string {
	var out []string
	for _, id := range ids {
		res, err := a.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: id}))
		if err != nil {
			out = append(out, fmt.Sprintf("lost %s: %v", id, err))
			continue
		}
		r := res.Msg.GetRun()
		var cur *loomv1.StepResult
		if n := len(r.GetStepResults()); n > 0 {
			cur = r.GetStepResults()[n-1]
		}
		out = append(out, fmt.Sprintf("lost %s: %s, step %s %s (attempt %d, dispatched %d times, %d dispatch failures: %s), by %s: %q", id, r.GetStatus(),
			cur.GetStepName(), cur.GetStatus(), cur.GetAttempt(), cur.GetDispatchCount(), cur.GetDispatchFailures(), cur.GetLastDispatchError(),
			cur.GetActor(), cur.GetMessage()))
	}
	sort.Strings(out)
	return out
}

// checkHistories counts, over the Candidates ids of a Migration whose Runs
// have steps steps, the lifecycle events missing or recorded twice: each
// Run has one run_started, one step_dispatched and one completed report per
// step, and one run_completed (dispatches again after a lease are told
// apart by their reason).
func (a *api) checkHistories(ctx context.Context, migration string, ids []string, steps int) (lost, doubled int, notes []string) {
	for _, id := range ids {
		count := map[string]int{}
		token := ""
		for {
			res, err := a.history.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: migration, CandidateId: id, PageSize: 200, PageToken: token}))
			if err != nil {
				notes = append(notes, fmt.Sprintf("history of %s: %v", id, err))
				break
			}
			for _, e := range res.Msg.GetEvents() {
				k := strings.ToLower(strings.TrimPrefix(e.GetKind().String(), "EVENT_KIND_"))
				switch {
				case k == "step_dispatched" && e.GetDetails()["reason"] != "":
					k = "step_dispatched_again"
				case k == "step_reported":
					k += ":" + e.GetDetails()["status"]
				}
				count[k]++
			}
			if token = res.Msg.GetNextPageToken(); token == "" {
				break
			}
		}
		for k, want := range map[string]int{"run_started": 1, "step_dispatched": steps, "step_reported:completed": steps, "run_completed": 1} {
			switch got := count[k]; {
			case got < want:
				lost += want - got
				notes = append(notes, fmt.Sprintf("%s: %d %s events, want %d", id, got, k, want))
			case got > want:
				doubled += got - want
				notes = append(notes, fmt.Sprintf("%s: %d %s events, want %d", id, got, k, want))
			}
		}
	}
	sort.Strings(notes)
	if len(notes) > 10 {
		notes = append(notes[:10], fmt.Sprintf("… and %d more", len(notes)-10))
	}
	return lost, doubled, notes
}

// waitCandidates waits until the Migration has n Candidates.
func (a *api) waitCandidates(ctx context.Context, migration string, n int) error {
	for ctx.Err() == nil {
		res, err := a.disc.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: migration, PageSize: 1}))
		if err == nil && res.Msg.GetTotalSize() >= int64(n) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%d Candidates of %s did not arrive: %w", n, migration, ctx.Err())
}

func candidateIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("svc-%03d", i)
	}
	return out
}

func migratorCandidates(ids []string) func(context.Context) ([]migratorsdk.Candidate, error) {
	return func(context.Context) ([]migratorsdk.Candidate, error) {
		cs := make([]migratorsdk.Candidate, len(ids))
		for i, id := range ids {
			cs[i] = migratorsdk.Candidate{ID: id, Kind: "service"}
		}
		return cs, nil
	}
}

func stepsOf(n int) []migratorsdk.Step {
	out := make([]migratorsdk.Step, n)
	for i := range out {
		out[i] = migratorsdk.Step{Name: fmt.Sprintf("step-%d", i+1), Type: "work"}
	}
	return out
}

// viewsDisagree counts the Runs of ids whose view's status is not their
// workflow's in Temporal (completed for completed, running for running).
func viewsDisagree(ctx context.Context, hostPort, namespace string, a *api, migration string, ids []string, notes *[]string) int {
	tc, err := client.DialContext(ctx, client.Options{HostPort: hostPort, Namespace: namespace,
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		*notes = append(*notes, "cannot compare views with Temporal: "+err.Error())
		return len(ids)
	}
	defer tc.Close()
	n := 0
	for _, id := range ids {
		runID := migration + "__" + id
		view, err := a.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: runID}))
		desc, derr := tc.DescribeWorkflowExecution(ctx, runID, "")
		if err != nil || derr != nil {
			n++
			*notes = append(*notes, fmt.Sprintf("%s: view %v, workflow %v", runID, err, derr))
			continue
		}
		engine := desc.GetWorkflowExecutionInfo().GetStatus()
		vs := view.Msg.GetRun().GetStatus()
		agree := engine == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED && vs == loomv1.RunStatus_RUN_STATUS_COMPLETED ||
			engine == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING && vs == loomv1.RunStatus_RUN_STATUS_RUNNING
		if !agree {
			n++
			*notes = append(*notes, fmt.Sprintf("%s: view %s, workflow %s", runID, vs, engine))
		}
	}
	return n
}
