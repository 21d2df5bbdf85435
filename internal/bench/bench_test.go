package bench

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// TestOneStepRunsHaveNoBoundaryYetAreMeasured runs the bench end to end on
// real components with one step per Run (which once panicked): both sides
// run, the table has a row per level, and the boundary is absent rather
// than made up.
func TestOneStepRunsHaveNoBoundaryYetAreMeasured(t *testing.T) {
	var out bytes.Buffer
	err := Run(context.Background(), Config{Levels: []Level{{1, 3}, {3, 6}}, Steps: 1, Rounds: 2, Bare: true, Warmup: 1, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Log("\n" + got)
	if !strings.Contains(got, "there is no step boundary") {
		t.Error("the table does not say that one-step Runs have no boundary")
	}
	for _, row := range []string{"| 1 | 3 |", "| 3 | 6 |"} {
		line := lineStarting(got, row)
		if line == "" {
			t.Fatalf("no row %q", row)
		}
		cells := strings.Split(line, "|")
		// | in flight | Runs | bare | Loom | ratio | p50 bare / Loom | ...
		for i, name := range map[int]string{3: "bare Runs/s", 4: "Loom Runs/s"} {
			if v := leadingNumber(cells[i]); v <= 0 {
				t.Errorf("row %q: %s is %q", row, name, cells[i])
			}
		}
		if !strings.Contains(cells[6], "—") {
			t.Errorf("row %q: a boundary p50 %q for one-step Runs", row, cells[6])
		}
	}
}

// TestTheBreakdownFollowsEveryBoundary checks that the spans the breakdown
// looks for are still the ones Loom emits: every traced boundary must be
// followed end to end, and its hops must add up to the boundary.
func TestTheBreakdownFollowsEveryBoundary(t *testing.T) {
	var out bytes.Buffer
	err := Run(context.Background(), Config{Levels: []Level{{2, 4}}, Steps: 3, Rounds: 1, Bare: false, Breakdown: 3, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Log("\n" + got)
	// 3 Runs of 3 steps: 6 boundaries and 3 starts.
	for _, want := range []struct {
		p path
		n string
	}{{paths[0], "6"}, {paths[1], "3"}} {
		m := regexp.MustCompile(`Where ` + regexp.QuoteMeta(want.p.what) + ` goes .*traced; (\d+) followed end to end, (\d+) not`).FindStringSubmatch(got)
		if m == nil {
			t.Fatalf("no breakdown of %s printed", want.p.what)
		}
		if m[1] != want.n || m[2] != "0" {
			t.Errorf("%s: followed %s of %s (%s not): the spans Loom emits changed; update breakdown.go", want.p.what, m[1], want.n, m[2])
		}
		for _, h := range want.p.hops {
			if lineStarting(got, "| "+h+" |") == "" {
				t.Errorf("hop %q missing", h)
			}
		}
	}
}

func TestAttributeSplitsABoundaryIntoConsecutiveHops(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	id := func(n byte) trace.SpanID { return trace.SpanID{n} }
	const wf = "bench__c-1"
	spans := []span{
		{Name: spanReport, ID: id(1), Start: at(0.1), End: at(9)},
		{Name: spanUpdate, ID: id(2), Parent: id(1), Start: at(0.2), End: at(8.9), WorkflowID: wf},
		{Name: spanValidate, ID: id(3), Start: at(3), End: at(3.1), WorkflowID: wf},
		{Name: spanWrite, ID: id(4), Start: at(3.3), End: at(4.3), WorkflowID: wf},
		{Name: spanDispatch, ID: id(7), Start: at(3.4), End: at(8), WorkflowID: wf},
		{Name: spanRead, ID: id(8), Parent: id(7), Start: at(6.8), End: at(7)},
		{Name: spanExecuteStep, ID: id(9), Parent: id(7), Start: at(7.1), End: at(7.5)},
	}
	b := boundary{Kind: stepBoundary, RunID: wf, Step: 1, Reported: t0, Delivered: at(7.4)}
	bd := attribute(paths[0], []boundary{b, {Kind: runStart, RunID: wf, Reported: t0, Delivered: at(1)}}, spans)
	if bd.Matched != 1 || bd.Missed != 0 {
		t.Fatalf("matched %d, missed %d; want 1, 0", bd.Matched, bd.Missed)
	}
	var sum time.Duration
	for i := range paths[0].hops {
		sum += bd.Hops[i][0]
	}
	if sum != b.gap() {
		t.Errorf("hops add up to %v, the boundary is %v", sum, b.gap())
	}
	if got := bd.Hops[2][0]; got != 2800*time.Microsecond {
		t.Errorf("admission %v, want 2.8ms", got)
	}
	// The call to the Migrator ends when the dispatch arrives, before the
	// client's span ends: the hops still add up.
	if got := bd.Hops[len(bd.Hops)-1][0]; got != 300*time.Microsecond {
		t.Errorf("call %v, want 0.3ms", got)
	}
	// A boundary whose dispatch was never traced is not made up.
	bd = attribute(paths[0], []boundary{b}, spans[:5])
	if bd.Matched != 0 || bd.Missed != 1 {
		t.Errorf("with spans missing: matched %d, missed %d; want 0, 1", bd.Matched, bd.Missed)
	}
}

func TestParseLevels(t *testing.T) {
	got, err := ParseLevels("1:30, 10:100")
	if err != nil || len(got) != 2 || got[0] != (Level{1, 30}) || got[1] != (Level{10, 100}) {
		t.Errorf("ParseLevels = %v, %v", got, err)
	}
	for _, bad := range []string{"", "1", "0:10", "1:0", "a:b", "1:30,"} {
		if _, err := ParseLevels(bad); err == nil {
			t.Errorf("ParseLevels(%q) accepted", bad)
		}
	}
}

func TestPercentilesAreNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i))
	}
	p := percentilesOf(ds)
	if p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.N != 100 {
		t.Errorf("got %+v", p)
	}
	if percentilesOf(nil).N != 0 {
		t.Error("percentiles of nothing")
	}
}

func lineStarting(s, prefix string) string {
	for line := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

func leadingNumber(cell string) float64 {
	f := strings.Fields(strings.Trim(cell, " *"))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// TestTheRolloutBenchRunsEndToEnd runs the rollout bench at a tiny size on
// real components: both sides are measured, the rollout's workflow is read
// from its history (so its id and its start activity's name are still the
// server's), the pause starts nothing after its answer and the burst skips
// nothing.
func TestTheRolloutBenchRunsEndToEnd(t *testing.T) {
	var out bytes.Buffer
	err := RunRollout(context.Background(), RolloutConfig{Runs: 40, InFlight: 10, Steps: 1, Rounds: 1,
		PauseRuns: 30, PauseInFlight: 5, PauseAt: 5, BurstRuns: 20, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Log("\n" + got)
	row := strings.Split(lineStarting(got, "| 1 | direct |"), "|")
	if len(row) < 6 {
		t.Fatal("no row for round 1")
	}
	for i, name := range map[int]string{3: "direct Runs/s", 4: "rollout Runs/s", 5: "ratio"} {
		if v := leadingNumber(row[i]); v <= 0 {
			t.Errorf("%s is %q", name, row[i])
		}
	}
	for _, what := range []string{"| round 1 | 40 |", "| pause (cancelled) | 30 |", "| 20 in one | 20 |"} {
		cells := strings.Split(lineStarting(got, what), "|")
		if len(cells) < 9 {
			t.Errorf("no state row %q", what)
			continue
		}
		// | rollout | Candidates | runs | events | events | input | input | batches (retried) |
		for i, name := range map[int]string{3: "workflow runs", 4: "events", 6: "input bytes", 8: "start batches"} {
			if v := leadingNumber(cells[i]); v <= 0 {
				t.Errorf("%s: %s is %q", what, name, cells[i])
			}
		}
	}
	if m := regexp.MustCompile(`answered in \*\*([0-9.]+)(ms|s|µs)\*\*.*\*\*(\d+) after the answer\*\*`).FindStringSubmatch(got); m == nil {
		t.Error("no pause figures")
	} else if m[3] != "0" {
		t.Errorf("%s Runs started after the pause's answer", m[3])
	}
	if !strings.Contains(got, "20 started, 20 completed, 0 skipped") || !strings.Contains(got, "none timed out") {
		t.Error("the burst did not start its 20 Candidates cleanly")
	}
}

// TestTheScaleBenchPrintsEveryFigure runs the store-at-scale bench at tiny
// sizes on real components: every figure is printed at both sizes with its
// ratio, every ListCandidates row has its latencies and total, and the
// tables of where the bytes go are there.
func TestTheScaleBenchPrintsEveryFigure(t *testing.T) {
	var out bytes.Buffer
	err := RunScale(context.Background(), ScaleConfig{Sizes: []int{50, 200}, Batch: 40, Pages: 3, Starts: 8, Steps: 3, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Log("\n" + got)
	figure := regexp.MustCompile(`^-?[0-9][0-9,]*(\.[0-9]+)?( ms| µs| B|/s)?$`)
	for _, f := range scaleFigures {
		cells := strings.Split(lineStarting(got, "| "+f.name+" |"), "|")
		// | figure | 50 | 200 | 200 ÷ 50 | target |
		if len(cells) != 7 {
			t.Errorf("no row %q", f.name)
			continue
		}
		for i, what := range map[int]string{2: "at 50", 3: "at 200", 4: "ratio"} {
			if c := strings.TrimSpace(cells[i]); !figure.MatchString(c) && (what != "ratio" || c != "—") {
				t.Errorf("%s: %s is %q", f.name, what, c)
			}
		}
		if f.ok != nil && !strings.Contains(strings.ToLower(cells[5]), "met") {
			t.Errorf("%s: no verdict on its target: %q", f.name, cells[5])
		}
	}
	for _, name := range []string{"none (by id)", "status = not_started", "metadata team (1 of 20)", "metadata repo (unique)",
		"id prefix (1 of 10)", "current step status = failed", "order by last change", "status = not_started + metadata team (1 of 20)"} {
		cells := strings.Split(lineStarting(got, "| "+name+" |"), "|")
		// The server's time is read from its Server-Timing: never 0.
		m := regexp.MustCompile(`^ [0-9.]+ ms / [0-9.]+ ms, server ([0-9.]+) ms \([✓✗≈] `).FindStringSubmatch(cells[min(3, len(cells)-1)])
		if len(cells) != 6 || m == nil || m[1] == "0.00" {
			t.Errorf("no page row %q at both sizes: %q", name, cells)
		}
	}
	for _, table := range []string{"Where the bytes go at rest, 50 Candidates", "Where the bytes go at rest, 200 Candidates", "Where a completed Run's bytes go at 200 Candidates"} {
		if !strings.Contains(got, table) {
			t.Errorf("no table %q", table)
		}
	}
	if lineStarting(got, "| `c:<c>` |") == "" {
		t.Error("the Candidate hash is not among the keys")
	}
	for _, size := range []string{"50", "200"} {
		if !regexp.MustCompile(`At ` + size + `, Redis rewrote its append-only file \(a fork, then a child on one of the CPUs\) [0-9]+ times during the discovery and [0-9]+ during the delete; the pages were timed after a rewrite ended \(waited [0-9.]+[mµ]?s\), and [0-9]+ ran during them\.`).MatchString(got) {
			t.Errorf("no line on append-only file rewrites around the discovery, the pages and the delete at %s", size)
		}
	}
}
