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
	spanStartRun      = "loom.v1.RunService/StartRun"
	spanStartWorkflow = "StartWorkflow:loom.Run"
	spanReport        = "loom.v1.EventService/ReportStepStatus"
	spanUpdate        = "UpdateWorkflow:step-action"
	spanValidate      = "ValidateUpdate:step-action"
	spanWrite         = "RunActivity:WriteView"
	spanDispatch      = "RunActivity:DispatchStep"
	spanRead          = "DispatchStep: read Migration and Candidate"
	spanExecuteStep   = "loom.migrator.v1.MigratorService/ExecuteStep"
)

// A path is a stretch of a Run broken into hops: each hop ends at the mark
// of the same index that follow finds in the spans.
type path struct {
	what   string
	kind   stretch
	hops   []string
	follow func(b boundary, f finder) (marks []time.Time, ok bool)
}

// The hops of a dispatch, common to both paths: it is made in the
// workflow task, as a local activity.
var dispatchHops = []string{
	"dispatch: read Migration and Candidate (Redis)",
	"dispatch: sign, until the call",
	"call to the Migrator (HTTP, SDK)",
}

var paths = []path{
	{
		what: "a step boundary (a report → the next dispatch)",
		kind: stepBoundary,
		hops: append([]string{
			"report: Migrator → Loom's API",
			"API: authenticate, validate, check the callback token",
			"Update: Temporal → worker (admission)",
			"Update validator",
			"update handler and next step, until the dispatch",
		}, dispatchHops...),
		follow: func(b boundary, f finder) ([]time.Time, bool) {
			upd, ok1 := f.first(spanUpdate, b.Reported)
			report, ok2 := f.byID[upd.Parent]
			val, ok3 := f.first(spanValidate, upd.Start)
			tail, ok4 := f.dispatch(val.End)
			if !(ok1 && ok2 && ok3 && ok4) || report.Name != spanReport {
				return nil, false
			}
			return append([]time.Time{report.Start, upd.Start, val.Start, val.End}, tail...), true
		},
	},
	{
		what: "a Run's start (StartRun → the first dispatch)",
		kind: runStart,
		hops: append([]string{
			"StartRun: operator → Loom's API",
			"API: authenticate, validate, read Migration and Candidate",
			"start the workflow (Temporal)",
			"first workflow task, until the view write",
			"view write: the execution and its first dispatch (WriteView)",
			"workflow, until the dispatch",
		}, dispatchHops...),
		follow: func(b boundary, f finder) ([]time.Time, bool) {
			sw, ok1 := f.first(spanStartWorkflow, b.Reported)
			start, ok2 := f.byID[sw.Parent]
			write, ok3 := f.first(spanWrite, sw.Start)
			tail, ok4 := f.dispatch(write.End)
			if !(ok1 && ok2 && ok3 && ok4) || start.Name != spanStartRun {
				return nil, false
			}
			return append([]time.Time{start.Start, sw.Start, sw.End, write.Start, write.End}, tail...), true
		},
	},
}

// finder looks up the spans of one Run's stretch.
type finder struct {
	spans []span // of the Run's workflow, by start time
	byID  map[trace.SpanID]span
	end   time.Time // the stretch's end
}

// first is the first span called name that starts at or after after and
// before the stretch ends.
func (f finder) first(name string, after time.Time) (span, bool) {
	for _, s := range f.spans {
		if s.Name == name && !s.Start.Before(after) && !s.Start.After(f.end) {
			return s, true
		}
	}
	return span{}, false
}

// dispatch is the marks of the dispatch that follows after, up to the end:
// its reads' start and end, its call's start and the end.
func (f finder) dispatch(after time.Time) ([]time.Time, bool) {
	disp, ok := f.first(spanDispatch, after)
	if !ok {
		return nil, false
	}
	var exec, read span
	var okExec, okRead bool
	for _, s := range f.byID {
		switch {
		case s.Name == spanExecuteStep && s.Parent == disp.ID:
			exec, okExec = s, true
		case s.Name == spanRead && s.Parent == disp.ID:
			read, okRead = s, true
		}
	}
	return []time.Time{read.Start, read.End, exec.Start, f.end}, okExec && okRead
}

// breakdown is the hops of each stretch of one path that could be followed
// in the spans from end to end.
type breakdown struct {
	path
	Hops    [][]time.Duration // per hop, one sample per stretch
	Total   []time.Duration
	Matched int
	Missed  int
}

// attribute follows each stretch of p's kind through the spans recorded
// meanwhile. Where two hops overlap (the API's answer and the workflow task
// it started run in parallel), a mark earlier than the one before it counts
// from that one: the hops follow the critical path and add up to the
// stretch.
func attribute(p path, samples []boundary, spans []span) breakdown {
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
	bd := breakdown{path: p, Hops: make([][]time.Duration, len(p.hops))}
	for _, b := range samples {
		if b.Kind != p.kind {
			continue
		}
		marks, ok := p.follow(b, finder{spans: byWorkflow[b.RunID], byID: byID, end: b.Delivered})
		if !ok || len(marks) != len(p.hops) {
			bd.Missed++
			continue
		}
		bd.Matched++
		prev := b.Reported
		for i, m := range marks {
			if m.Before(prev) {
				m = prev
			}
			bd.Hops[i] = append(bd.Hops[i], m.Sub(prev))
			prev = m
		}
		bd.Total = append(bd.Total, b.gap())
	}
	return bd
}

func (bd breakdown) print(w io.Writer, bare percentiles) {
	fmt.Fprintf(w, "\nWhere %s goes (Loom, 1 Run in flight, traced; %d followed end to end, %d not)\n\n", bd.what, bd.Matched, bd.Missed)
	if bd.Matched == 0 {
		fmt.Fprintln(w, "none could be followed through the spans")
		return
	}
	total := percentilesOf(bd.Total)
	fmt.Fprintln(w, "| hop | p50 | p90 | share of the p50 sum |")
	fmt.Fprintln(w, "|---|---|---|---|")
	var sum time.Duration
	p50s := make([]time.Duration, len(bd.hops))
	for i := range bd.hops {
		p50s[i] = percentilesOf(bd.Hops[i]).P50
		sum += p50s[i]
	}
	for i, h := range bd.hops {
		p := percentilesOf(bd.Hops[i])
		fmt.Fprintf(w, "| %s | %s | %s | %.0f%% |\n", h, ms(p.P50), ms(p.P90), 100*float64(p50s[i])/float64(max(sum, 1)))
	}
	fmt.Fprintf(w, "| **the whole stretch** (traced) | %s | %s | |\n", ms(total.P50), ms(total.P90))
	if bare.N > 0 {
		fmt.Fprintf(w, "| bare Temporal, the same (untraced, above) | %s | %s | |\n", ms(bare.P50), ms(bare.P90))
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
