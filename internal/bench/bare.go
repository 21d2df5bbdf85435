package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// The bare side is what a team would write on Temporal alone, with nothing
// of Loom: a workflow that dispatches each step by an activity posting to
// the Migrator over HTTP, and moves on when the Migrator signals that the
// step is done. It runs on the same Temporal server as Loom, with the same
// activity options, so the difference between the two sides is Loom's own
// cost: its API, authentication, the Update and its validator, the view
// writes in Redis, the dispatch's reads and signing.
const (
	bareWorkflowName = "loom-bench.BareRun"
	bareActivityName = "BareDispatch"
	bareSignal       = "report"
	bareTaskQueue    = "loom-bench-bare"
)

// BareInput is the input of the bare workflow.
type BareInput struct {
	RunID       string
	Steps       int
	MigratorURL string
}

// BareDispatch is what the bare activity posts to the bare Migrator.
type BareDispatch struct {
	RunID string `json:"run_id"`
	Step  int    `json:"step"`
}

// bareRun walks the steps like Loom's Run workflow does: the dispatch goes
// out in the background, the step ends with the Migrator's report.
func bareRun(ctx workflow.Context, in BareInput) error {
	reports := workflow.GetSignalChannel(ctx, bareSignal)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
		},
	})
	for i := range in.Steps {
		workflow.ExecuteActivity(actx, bareActivityName, BareDispatch{RunID: in.RunID, Step: i}, in.MigratorURL)
		for {
			var step int
			reports.Receive(ctx, &step)
			if step == i {
				break
			}
		}
	}
	return nil
}

// bareActivities posts dispatches to the bare Migrator.
type bareActivities struct {
	http *http.Client
}

func (a *bareActivities) dispatch(ctx context.Context, d BareDispatch, url string) error {
	body, _ := json.Marshal(d)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("bare migrator answered %s", res.Status)
	}
	return nil
}

// bareSide is the bare workflow's worker, its Migrator and its driver.
type bareSide struct {
	tc     client.Client
	worker worker.Worker
	srv    *http.Server
	url    string
	steps  int
	rec    *boundaries
	last   *lastReports
}

func startBare(tc client.Client, steps int) (*bareSide, error) {
	b := &bareSide{tc: tc, steps: steps, rec: newBoundaries(), last: newLastReports()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.url = "http://" + l.Addr().String() + "/dispatch"
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serveDispatch), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(l) }()

	b.worker = worker.New(tc, bareTaskQueue, worker.Options{})
	b.worker.RegisterWorkflowWithOptions(bareRun, workflow.RegisterOptions{Name: bareWorkflowName})
	acts := &bareActivities{http: &http.Client{Timeout: 30 * time.Second}}
	b.worker.RegisterActivityWithOptions(acts.dispatch, activity.RegisterOptions{Name: bareActivityName})
	if err := b.worker.Start(); err != nil {
		_ = b.srv.Close()
		return nil, err
	}
	return b, nil
}

// serveDispatch is the bare Migrator: it answers at once, like the SDK
// does, and reports the step done in the background.
func (b *bareSide) serveDispatch(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	var d BareDispatch
	if err := json.NewDecoder(r.Body).Decode(&d); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.rec.delivered(d.RunID, d.Step, at)
	w.WriteHeader(http.StatusOK)
	go func() {
		b.rec.reporting(d.RunID, time.Now())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.tc.SignalWorkflow(ctx, d.RunID, "", bareSignal, d.Step); err == nil && d.Step == b.steps-1 {
			b.last.done(d.RunID)
		}
	}()
}

func (b *bareSide) name() string { return "bare Temporal" }

// run starts the bare Run id and waits until its workflow completes.
func (b *bareSide) run(ctx context.Context, id string) error {
	runID := "bare-" + id
	b.rec.starting(runID, time.Now())
	_, err := b.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: runID, TaskQueue: bareTaskQueue},
		bareWorkflowName, BareInput{RunID: runID, Steps: b.steps, MigratorURL: b.url})
	if err != nil {
		return fmt.Errorf("start %s: %w", runID, err)
	}
	if err := awaitClosed(ctx, b.tc, b.last, runID); err != nil {
		return fmt.Errorf("run %s: %w", runID, err)
	}
	b.rec.completed(runID, time.Now())
	return nil
}

func (b *bareSide) boundaries() *boundaries { return b.rec }

func (b *bareSide) stop() {
	b.worker.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		_ = b.srv.Close()
	}
}
