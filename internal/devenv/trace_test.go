package devenv_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
)

// TestOneTraceFollowsAStepThroughLoomTemporalAndTheMigrator records every
// span of `loom dev` (server, workflow, example Migrator) in memory and
// follows a Run: the Migrator's report of each step descends, span by span,
// from the operator's StartRun, through the workflow, the dispatch activity
// and the Migrator's handler.
func TestOneTraceFollowsAStepThroughLoomTemporalAndTheMigrator(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	ctx := context.Background()
	d := startDev(t, t.TempDir())
	if _, err := d.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: migrationID, CandidateId: "svc-02", Inputs: inputs})); err != nil {
		t.Fatal(err)
	}
	const runID = migrationID + "__svc-02"
	d.waitStep(t, runID, "bump-go", loomv1.StepStatus_STEP_STATUS_OPEN)
	merge(t, filepath.Join(d.env.FleetDir, "svc-02"), "loom/bump-go")
	d.waitStep(t, runID, "pin-toolchain", loomv1.StepStatus_STEP_STATUS_OPEN)
	merge(t, filepath.Join(d.env.FleetDir, "svc-02"), "loom/pin-toolchain")
	d.waitStep(t, runID, "review", loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW)
	// The workflow's own span ends with the Run: finish it.
	if _, err := d.runs.FinishReview(ctx, connect.NewRequest(&loomv1.FinishReviewRequest{
		RunId: runID, StepName: "review", Attempt: 1, Outcome: loomv1.StepStatus_STEP_STATUS_COMPLETED,
	})); err != nil {
		t.Fatal(err)
	}
	d.waitRun(t, runID, loomv1.RunStatus_RUN_STATUS_COMPLETED)
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}

	all := spans.GetSpans()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	var start *tracetest.SpanStub
	for i, s := range all {
		byID[s.SpanContext.SpanID()] = s
		if s.Name == "loom.v1.RunService/StartRun" && s.SpanKind == trace.SpanKindServer {
			start = &all[i]
		}
	}
	if start == nil {
		t.Fatalf("no StartRun server span among %d spans", len(all))
	}
	// chain names the spans from s up to its root.
	chain := func(s tracetest.SpanStub) []string {
		var names []string
		for {
			names = append(names, s.Name+"("+s.SpanKind.String()+")")
			p, ok := byID[s.Parent.SpanID()]
			if !s.Parent.IsValid() || !ok {
				return names
			}
			s = p
		}
	}
	var fromHandlers int
	for _, s := range all {
		if s.Name != "loom.v1.EventService/ReportStepStatus" || s.SpanKind != trace.SpanKindServer {
			continue
		}
		c := chain(s)
		if len(c) == 2 {
			// A merge the Migrator's poll detected starts a trace of its own.
			continue
		}
		fromHandlers++
		if s.SpanContext.TraceID() != start.SpanContext.TraceID() {
			t.Errorf("a report is in trace %s, not in StartRun's %s: %s", s.SpanContext.TraceID(), start.SpanContext.TraceID(), strings.Join(c, " <- "))
			continue
		}
		// From the report up: the Migrator's call, its step handler, the
		// Migrator serving the dispatch, Loom's dispatch, the activity, the
		// workflow, its start, and the operator's StartRun at the root.
		want := []string{
			"loom.v1.EventService/ReportStepStatus(server)",
			"loom.v1.EventService/ReportStepStatus(client)",
			"step ", // the SDK's span of the handler
			"loom.migrator.v1.MigratorService/ExecuteStep(server)",
			"loom.migrator.v1.MigratorService/ExecuteStep(client)",
			"RunActivity:DispatchStep(server)",
			"StartActivity:DispatchStep(client)",
			"RunWorkflow:loom.Run(server)",
			"StartWorkflow:loom.Run(client)",
			"loom.v1.RunService/StartRun(server)",
		}
		if !inOrder(c, want) || !strings.HasPrefix(c[len(c)-1], "loom.v1.RunService/StartRun") {
			t.Errorf("the report's ancestry is\n  %s\nwant, in order, up to the root,\n  %s", strings.Join(c, "\n  "), strings.Join(want, "\n  "))
		}
	}
	// bump-go and pin-toolchain report open; review, awaiting review.
	if fromHandlers != 3 {
		t.Errorf("%d reports of step handlers, want 3", fromHandlers)
	}
	// Every dispatch, the next ones too, is in the trace.
	var execs int
	for _, s := range all {
		if s.Name == "loom.migrator.v1.MigratorService/ExecuteStep" && s.SpanKind == trace.SpanKindServer && s.SpanContext.TraceID() == start.SpanContext.TraceID() {
			execs++
		}
	}
	if execs != 3 {
		t.Errorf("%d dispatches served by the Migrator in StartRun's trace, want 3 (bump-go, pin-toolchain, review)", execs)
	}
}

// inOrder reports whether every want (a prefix) matches an element of have,
// in order.
func inOrder(have, want []string) bool {
	i := 0
	for _, h := range have {
		if i < len(want) && strings.HasPrefix(h, want[i]) {
			i++
		}
	}
	return i == len(want)
}
