package bench

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// scaleFigure is one row of the scale bench's table: a figure at every
// size, its ratio against the first size, and the target if any.
type scaleFigure struct {
	name string
	val  func(r *scaleResult) float64
	unit string // "ms", "B", "/s", "" — how to print it
	// target, when set, is checked at the largest size.
	target string
	ok     func(v float64) bool
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func p50(ds []time.Duration) float64 { return msOf(percentilesOf(ds).P50) }
func p99(ds []time.Duration) float64 { return msOf(percentilesOf(ds).P99) }

// worstPage is the slowest p99 of the page rows that are pairs (or not).
func worstPage(r *scaleResult, pair bool) (float64, string) {
	var worst float64
	name := ""
	for _, p := range r.pages {
		if p.pair != pair {
			continue
		}
		if v := p99(p.lat); v >= worst {
			worst, name = v, p.name
		}
	}
	return worst, name
}

// worstServerPage is worstPage of the server's own times.
func worstServerPage(r *scaleResult, pair bool) (float64, string) {
	var worst float64
	name := ""
	for _, p := range r.pages {
		if p.pair == pair {
			if v := p99(p.server); v >= worst {
				worst, name = v, p.name
			}
		}
	}
	return worst, name
}

func perCandidate(b int64, n int) float64 { return float64(b) / float64(max(1, n)) }

var scaleFigures = []scaleFigure{
	{name: "Redis bytes / Candidate at rest (used_memory Δ ÷ N)", unit: "B",
		val:    func(r *scaleResult) float64 { return perCandidate(r.restBytes, r.n) },
		target: "≤ 1,024", ok: func(v float64) bool { return v <= 1024 }},
	{name: "… after the unchanged re-discovery", unit: "B",
		val: func(r *scaleResult) float64 { return perCandidate(r.rediscoverBytes, r.n) }},
	{name: "Redis keys / Candidate at rest", unit: "x",
		val: func(r *scaleResult) float64 { return float64(r.restKeys) / float64(r.n) }},
	{name: "Redis bytes a completed Run adds (Δ ÷ Runs)", unit: "B",
		val: func(r *scaleResult) float64 { return perCandidate(r.runBytes, r.completed) }},
	{name: "Redis bytes / Candidate with a completed Run (at rest + that)", unit: "B",
		val: func(r *scaleResult) float64 {
			return perCandidate(r.restBytes, r.n) + perCandidate(r.runBytes, r.completed)
		},
		target: "≤ 4,096", ok: func(v float64) bool { return v <= 4096 }},
	{name: "discovery, Candidates/s (N ÷ Σ request round trips)", unit: "/s",
		val: func(r *scaleResult) float64 { return float64(r.n) / r.discover.Seconds() }},
	{name: "discovery, Candidates/s of server time (N ÷ Σ the server's Server-Timing)", unit: "/s",
		val:    func(r *scaleResult) float64 { return float64(r.n) / sum(r.submitsServer).Seconds() },
		target: "≥ 40,000", ok: func(v float64) bool { return v >= 40000 }},
	{name: "discovery, request p50 (requests of up to 1,000)", unit: "ms", val: func(r *scaleResult) float64 { return p50(r.submits) }},
	{name: "discovery, request p99", unit: "ms", val: func(r *scaleResult) float64 { return p99(r.submits) }},
	{name: "discovery, the last (complete) request", unit: "ms", val: func(r *scaleResult) float64 { return msOf(r.lastSubmit) }},
	{name: "discovery CPU µs / Candidate, redis-server", unit: "µs",
		val: func(r *scaleResult) float64 { return float64(r.discoverRedis.Microseconds()) / float64(r.n) }},
	{name: "discovery CPU µs / Candidate, this process (Loom, Temporal, the bench)", unit: "µs",
		val: func(r *scaleResult) float64 {
			return float64((r.discoverCPU - r.discoverRedis).Microseconds()) / float64(r.n)
		}},
	{name: "discovery requests that failed and were tried again (both passes)", unit: "x",
		val: func(r *scaleResult) float64 { return float64(r.submitsFailed + r.resubmitsFailed) }},
	{name: "re-discovery unchanged, Candidates/s", unit: "/s",
		val: func(r *scaleResult) float64 { return float64(r.n) / r.rediscover.Seconds() }},
	{name: "re-discovery, request p50", unit: "ms", val: func(r *scaleResult) float64 { return p50(r.resubmits) }},
	{name: "re-discovery, request p99", unit: "ms", val: func(r *scaleResult) float64 { return p99(r.resubmits) }},
	{name: "StartRun p50", unit: "ms", val: func(r *scaleResult) float64 { return p50(r.startLat) }},
	{name: "StartRun p99", unit: "ms", val: func(r *scaleResult) float64 { return p99(r.startLat) }},
	{name: "ListCandidates page of 100, slowest p99 of one filter or order", unit: "ms",
		val: func(r *scaleResult) float64 { v, _ := worstPage(r, false); return v }},
	{name: "ListCandidates page of 100, slowest p99 of a pair", unit: "ms",
		val:    func(r *scaleResult) float64 { v, _ := worstPage(r, true); return v },
		target: "≤ 10 ms", ok: func(v float64) bool { return v <= 10 }},
	{name: "… of the server's time (Server-Timing)", unit: "ms",
		val: func(r *scaleResult) float64 { v, _ := worstServerPage(r, true); return v }},
	{name: "DeleteMigration, answered", unit: "ms", val: func(r *scaleResult) float64 { return msOf(r.deleteAnswered) }},
	{name: "DeleteMigration, until its keys were swept", unit: "ms", val: func(r *scaleResult) float64 { return msOf(r.deleteTime) }},
	{name: "reader (GetRun/GetCandidate, another Migration): longest without an answer during the delete", unit: "ms",
		val:    func(r *scaleResult) float64 { return msOf(r.readerStall) },
		target: "≤ ~10 ms", ok: func(v float64) bool { return v <= 10 }},
	{name: "reader: its longest call during the delete", unit: "ms", val: func(r *scaleResult) float64 { return msOf(r.readerLongest) }},
	{name: "reader: calls answered during the delete", unit: "x", val: func(r *scaleResult) float64 { return float64(r.readerCalls) }},
	{name: "reader: calls that failed during the delete", unit: "x", val: func(r *scaleResult) float64 { return float64(r.readerFailed) }},
	{name: "reader: p50 before the delete", unit: "ms", val: func(r *scaleResult) float64 { return msOf(r.readerBase.P50) }},
	{name: "reader: longest without an answer in the second before the delete", unit: "ms",
		val: func(r *scaleResult) float64 { return msOf(r.readerBaseStall) }},
	{name: "keys of the Migration left after the delete", unit: "x", val: func(r *scaleResult) float64 { return float64(r.leftKeys) }},
	{name: "Redis bytes / Candidate left after the delete (used_memory Δ)", unit: "B",
		val: func(r *scaleResult) float64 { return perCandidate(r.leftBytes, r.n) }},
}

func fmtFigure(v float64, unit string) string {
	switch unit {
	case "ms":
		if v < 10 {
			return fmt.Sprintf("%.2f ms", v)
		}
		return fmt.Sprintf("%.1f ms", v)
	case "µs":
		return fmt.Sprintf("%.1f µs", v)
	case "B":
		return thousands(int64(v+0.5)) + " B"
	case "/s":
		return thousands(int64(v+0.5)) + "/s"
	}
	if v == float64(int64(v)) {
		return thousands(int64(v))
	}
	return fmt.Sprintf("%.2f", v)
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func ratioOf(v, base float64) string {
	if base == 0 || v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", v/base)
}

func printScale(cfg ScaleConfig, rs []*scaleResult) {
	w := cfg.Out
	first, last := rs[0], rs[len(rs)-1]
	var sizes []string
	for _, r := range rs {
		sizes = append(sizes, thousands(int64(r.n)))
	}
	fmt.Fprintf(w, "loom-bench -scale: Migrations of %s Candidates, each fresh, driven through Loom's API on one `loom dev` environment (embedded Temporal, redis-server with appendfsync always) on %d CPUs\n\n",
		strings.Join(sizes, ", "), runtime.NumCPU())
	fmt.Fprintf(w, "Candidates of 4 kinds, metadata team (20 values) and repo (unique), submitted as a Migrator does: requests of %d one after another, one round, the last complete. %d Runs of %d steps started one at a time (a quarter held at a failed first step, cancelled before the delete); %d calls per ListCandidates row. Ratios are against %s Candidates; targets (issue 17) are checked at %s.\n\n",
		cfg.Batch, min(cfg.Starts, last.n/2), cfg.Steps, cfg.Pages, thousands(int64(first.n)), thousands(int64(last.n)))
	fmt.Fprint(w, "| figure |")
	for _, s := range sizes {
		fmt.Fprintf(w, " %s |", s)
	}
	for _, s := range sizes[1:] {
		fmt.Fprintf(w, " %s ÷ %s |", s, sizes[0])
	}
	fmt.Fprintln(w, " target |")
	fmt.Fprint(w, "|---|")
	fmt.Fprint(w, strings.Repeat("---|", 2*len(rs)))
	fmt.Fprintln(w)
	for _, f := range scaleFigures {
		fmt.Fprintf(w, "| %s |", f.name)
		for _, r := range rs {
			fmt.Fprintf(w, " %s |", fmtFigure(f.val(r), f.unit))
		}
		for _, r := range rs[1:] {
			fmt.Fprintf(w, " %s |", ratioOf(f.val(r), f.val(first)))
		}
		t := ""
		if f.ok != nil {
			t = f.target + ": " + verdict(f.ok(f.val(last)))
		}
		fmt.Fprintf(w, " %s |\n", t)
	}
	for _, r := range rs {
		if r.deleteErr != "" {
			fmt.Fprintf(w, "\nDeleteMigration of %s Candidates answered an error (its time runs until the Migration was gone): %s\n", thousands(int64(r.n)), r.deleteErr)
		}
	}
	if _, name := worstPage(last, true); name != "" {
		fmt.Fprintf(w, "\nThe slowest pair at %s: %s.\n", sizes[len(sizes)-1], name)
	}
	for i, r := range rs {
		fmt.Fprintf(w, "\nAt %s, Redis rewrote its append-only file (a fork, then a child on one of the CPUs) %d times during the discovery and %d during the delete; the pages were timed after a rewrite ended (waited %s), and %d ran during them.",
			sizes[i], r.discoverRewrites, r.deleteRewrites, r.rewriteWait.Round(time.Millisecond), r.pageRewrites)
	}
	fmt.Fprintln(w)
	for i, r := range rs {
		fmt.Fprintf(w, "\nRedis's own stalls of %v or more (its latency monitor), at %s: during the pages %s; during the delete %s.",
			latencyThreshold, sizes[i], r.pageStalls, r.deleteStalls)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "\nListCandidates, a page of 100: p50 / p99 as the client saw them, the server's own p99 (Server-Timing), and the first call's total_size (✓ when it is the exact count of matching Candidates; ≈ an estimate, flagged so by the API, with its error)")
	fmt.Fprintln(w)
	fmt.Fprint(w, "| filters |")
	for _, s := range sizes {
		fmt.Fprintf(w, " %s |", s)
	}
	for _, s := range sizes[1:] {
		fmt.Fprintf(w, " p99 %s ÷ %s |", s, sizes[0])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "|---|"+strings.Repeat("---|", 2*len(rs)-1))
	for i, row := range first.pages {
		fmt.Fprintf(w, "| %s |", row.name)
		for _, r := range rs {
			p := r.pages[i]
			check := "✓ " + thousands(p.total)
			switch {
			case p.estimated:
				check = fmt.Sprintf("≈ %s, exactly %s: %+.1f%%", thousands(p.total), thousands(p.want), 100*float64(p.total-p.want)/float64(max(1, p.want)))
			case p.total != p.want:
				check = fmt.Sprintf("✗ %s, not %s", thousands(p.total), thousands(p.want))
			}
			fmt.Fprintf(w, " %s / %s, server %s (%s) |", fmtFigure(p50(p.lat), "ms"), fmtFigure(p99(p.lat), "ms"), fmtFigure(p99(p.server), "ms"), check)
		}
		for _, r := range rs[1:] {
			fmt.Fprintf(w, " %s |", ratioOf(p99(r.pages[i].lat), p99(row.lat)))
		}
		fmt.Fprintln(w)
	}

	shown := []*scaleResult{last}
	if len(rs) > 1 {
		shown = []*scaleResult{first, last}
	}
	for _, r := range shown {
		printClasses(w, fmt.Sprintf("\nWhere the bytes go at rest, %s Candidates (MEMORY USAGE of every key of a class of up to 20 keys, else the mean of 20 × the count; used_memory Δ was %s B/Candidate):",
			thousands(int64(r.n)), thousands(int64(perCandidate(r.restBytes, r.n)+0.5))), r.restClasses, r.n)
	}
	fmt.Fprintf(w, "\nWhere a completed Run's bytes go at %s Candidates: a Candidate's own keys (MEMORY USAGE, the mean of up to 20 never run and 20 with a completed Run), then what the Migration's other keys grew by per completed Run (used_memory Δ was %s B per Run):\n\n",
		sizes[len(sizes)-1], thousands(int64(perCandidate(last.runBytes, last.completed)+0.5)))
	fmt.Fprintln(w, "| key | never run | completed Run | Δ per Run |")
	fmt.Fprintln(w, "|---|---|---|---|")
	var sumNever, sumDone, sumShared int64
	for _, d := range last.done {
		nv := int64(0)
		for _, k := range last.never {
			if k.pattern == d.pattern {
				nv = k.bytes
			}
		}
		sumNever += nv
		sumDone += d.bytes
		fmt.Fprintf(w, "| `%s` | %s B | %s B | %s B |\n", d.pattern, thousands(nv), thousands(d.bytes), thousands(d.bytes-nv))
	}
	for _, c := range last.runShared {
		sumShared += c.bytes
		fmt.Fprintf(w, "| `%s` (the Migration's; %+d keys) | | | %s B |\n", c.pattern, c.keys, thousands(c.bytes))
	}
	fmt.Fprintf(w, "| all | %s B | %s B | %s B |\n", thousands(sumNever), thousands(sumDone), thousands(sumDone-sumNever+sumShared))
	if len(last.leftClasses) > 0 {
		printClasses(w, fmt.Sprintf("\nLeft in Redis after DeleteMigration of %s Candidates:", sizes[len(sizes)-1]), last.leftClasses, last.n)
	}
}

func printClasses(w io.Writer, title string, cs []keyClass, n int) {
	fmt.Fprintln(w, title)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| key | keys | bytes | bytes / Candidate |")
	fmt.Fprintln(w, "|---|---|---|---|")
	var keys int
	var bytes int64
	for _, c := range cs {
		keys += c.keys
		bytes += c.bytes
		fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", c.pattern, thousands(int64(c.keys)), thousands(c.bytes), thousands(int64(perCandidate(c.bytes, n)+0.5)))
	}
	fmt.Fprintf(w, "| all | %s | %s | %s |\n", thousands(int64(keys)), thousands(bytes), thousands(int64(perCandidate(bytes, n)+0.5)))
}
