package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/loomhq/loom/server/internal/migration"
)

// DialOptions say how to reach Temporal.
type DialOptions struct {
	HostPort  string
	Namespace string
	// Logger receives the Temporal SDK's warnings and errors.
	Logger *slog.Logger
	// Tracer, when set, traces workflow starts, updates, signals and
	// activities, continuing the trace of the API call that caused them.
	Tracer trace.Tracer
	// Meter, when set, receives the Temporal SDK's metrics (workflow and
	// activity task latencies, poll results, ...).
	Meter metric.Meter
}

// Client is a connection to Temporal, from which the server builds its
// ExecutionEngine and its worker, so that no other package sees Temporal.
type Client struct {
	c         client.Client
	namespace string
}

// Dial connects to Temporal and checks that it answers.
func Dial(ctx context.Context, o DialOptions) (*Client, error) {
	opts := client.Options{
		HostPort:  o.HostPort,
		Namespace: o.Namespace,
		Logger:    sdklog.NewStructuredLogger(slog.New(runAttrs{Handler: o.Logger.Handler()})),
	}
	if o.Tracer != nil {
		tracing, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{Tracer: o.Tracer})
		if err != nil {
			return nil, fmt.Errorf("temporal tracing: %w", err)
		}
		opts.Interceptors = append(opts.Interceptors, tracing)
	}
	if o.Meter != nil {
		opts.MetricsHandler = temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{Meter: o.Meter})
	}
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("temporal at %s (namespace %s) does not answer: %w", o.HostPort, o.Namespace, err)
	}
	return &Client{c: c, namespace: o.Namespace}, nil
}

// NewClient wraps an existing Temporal client (tests, embedding).
func NewClient(c client.Client, namespace string) *Client {
	return &Client{c: c, namespace: namespace}
}

// Engine returns the ExecutionEngine over this connection.
func (c *Client) Engine(o Options) *Engine { return New(c.c, o) }

// Ping reports whether Temporal answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.c.CheckHealth(ctx, &client.CheckHealthRequest{})
	return err
}

// Close closes the connection.
func (c *Client) Close() { c.c.Close() }

// Worker executes Runs: their workflows and activities.
type Worker struct {
	w worker.Worker
}

// NewWorker returns a worker of taskQueue; Start it, then Stop it.
func (c *Client) NewWorker(taskQueue string, acts *Activities) *Worker {
	if acts.Signal == nil {
		acts.Signal = c.signalRollout
	}
	return &Worker{w: NewWorker(c.c, taskQueue, acts)}
}

// signalRollout sends t to its rollout's workflow under t's request id, by
// which Temporal deduplicates it. A rollout that ended no longer listens.
func (c *Client) signalRollout(ctx context.Context, t RolloutTell) error {
	input, err := converter.GetDefaultDataConverter().ToPayloads(t.Change)
	if err != nil {
		return err
	}
	_, err = c.c.WorkflowService().SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{
		Namespace:         c.namespace,
		WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: t.WorkflowID},
		SignalName:        SignalRunChanged,
		Input:             input,
		Identity:          "loom",
		RequestId:         t.RequestID,
	})
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil
	}
	return err
}

// Start starts polling for Runs.
func (w *Worker) Start() error {
	if err := w.w.Start(); err != nil {
		return fmt.Errorf("start the temporal worker: %w", err)
	}
	return nil
}

// Stop stops polling and waits for the tasks in hand.
func (w *Worker) Stop() { w.w.Stop() }

// runAttrs names the Run of every line the Temporal SDK logs about a
// workflow or an activity: from the WorkflowID it attaches (the run id), it
// adds migration_id, candidate_id and run_id, the keys of the rest of
// Loom's logs.
type runAttrs struct {
	slog.Handler
	// named is set once the attributes are added, by WithAttrs.
	named bool
}

func (h runAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	named := h.named
	if !named {
		for _, a := range as {
			if extra := nameRun(a); extra != nil {
				as, named = append(as, extra...), true
				break
			}
		}
	}
	return runAttrs{Handler: h.Handler.WithAttrs(as), named: named}
}

func (h runAttrs) WithGroup(name string) slog.Handler {
	return runAttrs{Handler: h.Handler.WithGroup(name), named: h.named}
}

// Handle names the Run of a line that passes its WorkflowID with the message
// rather than through With.
func (h runAttrs) Handle(ctx context.Context, r slog.Record) error {
	if !h.named {
		var extra []slog.Attr
		r.Attrs(func(a slog.Attr) bool {
			extra = nameRun(a)
			return extra == nil
		})
		if extra != nil {
			r = r.Clone()
			r.AddAttrs(extra...)
		}
	}
	return h.Handler.Handle(ctx, r)
}

// nameRun returns the attributes naming the Run of a WorkflowID attribute.
func nameRun(a slog.Attr) []slog.Attr {
	if a.Key != "WorkflowID" {
		return nil
	}
	id := a.Value.String()
	m, c, ok := migration.ParseRunID(id)
	if !ok {
		return nil
	}
	return []slog.Attr{slog.String("migration_id", m), slog.String("candidate_id", c), slog.String("run_id", id)}
}
