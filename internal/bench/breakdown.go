package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// The breakdown says where the time of a step boundary goes, from the spans
// Loom already emits (its API, Temporal's client and worker interceptors,
// the dispatch's own spans) recorded in memory while a few Runs go one at a
// time. Tracing is off while the throughput and latency figures are taken.

// tracing is a TracerProvider whose sampling is switched on and off at run
// time, and which keeps the spans it records.
type tracing struct {
	on       atomic.Bool
	provider *sdktrace.TracerProvider
	mu       sync.Mutex
	spans    []span
}

type span struct {
	Name       string
	ID, Parent trace.SpanID
	Start, End time.Time
	WorkflowID string
}

func newTracing() *tracing {
	t := &tracing{}
	t.provider = sdktrace.NewTracerProvider(sdktrace.WithSampler(t), sdktrace.WithSpanProcessor(t))
	return t
}

// ShouldSample implements sdktrace.Sampler.
func (t *tracing) ShouldSample(sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if t.on.Load() {
		return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
	}
	return sdktrace.SamplingResult{Decision: sdktrace.Drop}
}

// Description implements sdktrace.Sampler.
func (t *tracing) Description() string { return "loom-bench switch" }

// OnStart implements sdktrace.SpanProcessor.
func (t *tracing) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor.
func (t *tracing) OnEnd(s sdktrace.ReadOnlySpan) {
	sp := span{Name: s.Name(), ID: s.SpanContext().SpanID(), Parent: s.Parent().SpanID(), Start: s.StartTime(), End: s.EndTime()}
	for _, a := range s.Attributes() {
		if a.Key == "temporalWorkflowID" {
			sp.WorkflowID = a.Value.AsString()
		}
	}
	t.mu.Lock()
	t.spans = append(t.spans, sp)
	t.mu.Unlock()
}

// Shutdown implements sdktrace.SpanProcessor.
func (t *tracing) Shutdown(context.Context) error { return nil }

// ForceFlush implements sdktrace.SpanProcessor.
func (t *tracing) ForceFlush(context.Context) error { return nil }

func (t *tracing) take() []span {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.spans
	t.spans = nil
	return out
}

// Span names the breakdown looks for.
const (
	spanReport      = "loom.v1.EventService/ReportStepStatus"
	spanUpdate      = "UpdateWorkflow:step-action"
	spanValidate    = "ValidateUpdate:step-action"
	spanHandle      = "HandleUpdate:step-action"
	spanSave        = "RunActivity:SaveRun"
	spanSchedule    = "StartActivity:DispatchStep"
	spanDispatch    = "RunActivity:DispatchStep"
	spanRead        = "DispatchStep: read Migration and Candidate"
	spanExecuteStep = "loom.migrator.v1.MigratorService/ExecuteStep"
)

// hops are the consecutive stretches of a step boundary, in order; each
// ends at the mark of the same index in marks.
var hops = []string{
	"report: Migrator → Loom's API",
	"API: authenticate, validate, check the callback token",
	"Update: Temporal → worker (admission)",
	"Update validator",
	"update handler, until the view write",
	"view write of the report (SaveRun)",
	"workflow: on to the next step",
	"view write of the dispatch (SaveRun)",
	"workflow: schedule the dispatch",
	"workflow task completes → dispatch activity starts",
	"activity task reaches the worker",
	"dispatch: read Migration and Candidate (Redis)",
	"dispatch: sign, until the call",
	"call to the Migrator (HTTP, SDK)",
}

// breakdown is the hops of each boundary that could be followed in the
// spans from end to end.
type breakdown struct {
	Hops    [][]time.Duration // per hop, one sample per boundary
	Total   []time.Duration
	Answer  []time.Duration // the report's answer to the Migrator, off the critical path
	Matched int
	Missed  int
}

// attribute follows each boundary through the spans recorded meanwhile.
func attribute(samples []boundary, spans []span) breakdown {
	byWorkflow := map[string][]span{}
	byID := map[trace.SpanID]span{}
	for _, s := range spans {
		byID[s.ID] = s
		if s.WorkflowID != "" {
			byWorkflow[s.WorkflowID] = append(byWorkflow[s.WorkflowID], s)
		}
	}
	for _, ss := range byWorkflow {
		slices.SortFunc(ss, func(a, b span) int { return a.Start.Compare(b.Start) })
	}
	bd := breakdown{Hops: make([][]time.Duration, len(hops))}
	for _, b := range samples {
		if b.Kind != stepBoundary {
			continue
		}
		marks, answer, ok := follow(b, byWorkflow[b.RunID], byID)
		if !ok {
			bd.Missed++
			continue
		}
		bd.Matched++
		prev := b.Reported
		for i, m := range marks {
			bd.Hops[i] = append(bd.Hops[i], m.Sub(prev))
			prev = m
		}
		bd.Total = append(bd.Total, b.gap())
		bd.Answer = append(bd.Answer, answer)
	}
	return bd
}

// follow finds the marks of one boundary: the first span of each kind that
// starts within it, in the order the boundary goes through them.
func follow(b boundary, spans []span, byID map[trace.SpanID]span) (marks []time.Time, answer time.Duration, ok bool) {
	within := func(name string, after time.Time) (span, bool) {
		for _, s := range spans {
			if s.Name == name && !s.Start.Before(after) && !s.Start.After(b.Delivered) {
				return s, true
			}
		}
		return span{}, false
	}
	upd, ok1 := within(spanUpdate, b.Reported)
	report, ok2 := byID[upd.Parent]
	val, ok3 := within(spanValidate, upd.Start)
	save1, ok4 := within(spanSave, val.End)
	save2, ok5 := within(spanSave, save1.End)
	sched, ok6 := within(spanSchedule, save2.End)
	disp, ok7 := within(spanDispatch, sched.Start)
	var exec, read span
	ok8, ok9 := false, false
	for _, s := range byID {
		switch {
		case s.Name == spanExecuteStep && s.Parent == disp.ID:
			exec, ok8 = s, true
		case s.Name == spanRead && s.Parent == disp.ID:
			read, ok9 = s, true
		}
	}
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && ok8 && ok9) || report.Name != spanReport {
		return nil, 0, false
	}
	marks = []time.Time{report.Start, upd.Start, val.Start, val.End, save1.Start, save1.End, save2.Start, save2.End,
		sched.Start, disp.Start, read.Start, read.End, exec.Start, b.Delivered}
	for i := 1; i < len(marks); i++ {
		if marks[i].Before(marks[i-1]) {
			return nil, 0, false
		}
	}
	return marks, report.End.Sub(b.Reported), true
}

func (bd breakdown) print(w io.Writer, bare percentiles) {
	fmt.Fprintf(w, "\nWhere a step boundary goes (Loom, 1 Run in flight, traced; %d boundaries followed end to end, %d not)\n\n", bd.Matched, bd.Missed)
	if bd.Matched == 0 {
		fmt.Fprintln(w, "no boundary could be followed through the spans")
		return
	}
	total := percentilesOf(bd.Total)
	fmt.Fprintln(w, "| hop | p50 | p90 | share of the p50 sum |")
	fmt.Fprintln(w, "|---|---|---|---|")
	var sum time.Duration
	p50s := make([]time.Duration, len(hops))
	for i := range hops {
		p50s[i] = percentilesOf(bd.Hops[i]).P50
		sum += p50s[i]
	}
	for i, h := range hops {
		p := percentilesOf(bd.Hops[i])
		fmt.Fprintf(w, "| %s | %s | %s | %.0f%% |\n", h, ms(p.P50), ms(p.P90), 100*float64(p50s[i])/float64(max(sum, 1)))
	}
	fmt.Fprintf(w, "| **report → next dispatch** (traced) | %s | %s | |\n", ms(total.P50), ms(total.P90))
	if bare.N > 0 {
		fmt.Fprintf(w, "| bare Temporal, signal → next dispatch (untraced, above) | %s | %s | |\n", ms(bare.P50), ms(bare.P90))
	}
	a := percentilesOf(bd.Answer)
	fmt.Fprintf(w, "\nThe Migrator gets the report's answer after %s (p50), in parallel with the dispatch.\n", ms(a.P50))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
