package bench

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// printTable prints one row per level, bare Temporal beside Loom when it
// ran, as a Markdown table.
func printTable(cfg Config, loom, bare []*result) {
	w := cfg.Out
	fmt.Fprintf(w, "loom-bench: %d steps per Run, a Migrator that completes each step at once; one `loom dev` environment (embedded Temporal, redis-server) on %d CPUs; %d round(s) per level",
		cfg.Steps, runtime.NumCPU(), cfg.Rounds)
	if bare != nil {
		fmt.Fprint(w, ", sides alternating")
	}
	fmt.Fprint(w, "\n\n")
	if cfg.Steps == 1 {
		fmt.Fprint(w, "(one step per Run: there is no step boundary to measure)\n\n")
	}
	if bare == nil {
		fmt.Fprintln(w, "| in flight | Runs | Runs/s | boundary p50 | p90 | p99 | CPU s/Run (of which Redis) | peak RSS |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
		for _, l := range loom {
			p := percentilesOf(l.Gaps)
			fmt.Fprintf(w, "| %d | %d | %s | %s | %s | %s | %s | %s |\n", l.InFlight, l.Runs, rate(l), gap(p, p.P50), gap(p, p.P90), gap(p, p.P99), cpu(l), mb(l.PeakRSS))
		}
		return
	}
	fmt.Fprintln(w, "| in flight | Runs | Runs/s bare | Runs/s Loom | Loom ÷ bare | boundary p50 bare / Loom | ÷ | p90 bare / Loom | p99 bare / Loom | CPU s/Run (of which Redis) bare / Loom | peak RSS bare / Loom |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for i, l := range loom {
		b := bare[i]
		lp, bp := percentilesOf(l.Gaps), percentilesOf(b.Gaps)
		fmt.Fprintf(w, "| %d | %d | %s | %s | **%.2f** | %s / %s | **%s** | %s / %s | %s / %s | %s / %s | %s / %s |\n",
			l.InFlight, l.Runs, rate(b), rate(l), l.runsPerSecond()/b.runsPerSecond(),
			gap(bp, bp.P50), gap(lp, lp.P50), ratio(lp.P50, bp.P50),
			gap(bp, bp.P90), gap(lp, lp.P90), gap(bp, bp.P99), gap(lp, lp.P99),
			cpu(b), cpu(l), mb(b.PeakRSS), mb(l.PeakRSS))
	}
	fmt.Fprintln(w, "\nA Run's two ends (p50, bare / Loom): its start → first dispatch, and its last report → workflow completed")
	fmt.Fprintln(w, "\n| in flight | start → first dispatch | ÷ | last report → completed | ÷ |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for i, l := range loom {
		b := bare[i]
		ls, bs := percentilesOf(l.Starts), percentilesOf(b.Starts)
		le, be := percentilesOf(l.Ends), percentilesOf(b.Ends)
		fmt.Fprintf(w, "| %d | %s / %s | %s | %s / %s | %s |\n", l.InFlight, gap(bs, bs.P50), gap(ls, ls.P50), ratio(ls.P50, bs.P50),
			gap(be, be.P50), gap(le, le.P50), ratio(le.P50, be.P50))
	}
	fmt.Fprintln(w)
	for i, l := range loom {
		b := bare[i]
		thr := l.runsPerSecond() / b.runsPerSecond()
		lp, bp := percentilesOf(l.Gaps), percentilesOf(b.Gaps)
		switch l.InFlight {
		case 1:
			fmt.Fprintf(w, "target, 1 in flight: Runs/s ≥ 0.8× bare: %s (%.2f)", verdict(thr >= 0.8), thr)
			if bp.N > 0 {
				r := float64(lp.P50) / float64(bp.P50)
				fmt.Fprintf(w, "; boundary p50 ≤ 1.3× bare: %s (%.2f)", verdict(r <= 1.3), r)
			}
			fmt.Fprintln(w)
		case 10:
			fmt.Fprintf(w, "target, 10 in flight: Runs/s ≥ 0.9× bare: %s (%.2f)\n", verdict(thr >= 0.9), thr)
		}
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

// rate is the Runs/s over every round, and each round's when there were
// several, so their spread shows.
func rate(r *result) string {
	s := fmt.Sprintf("%.1f", r.runsPerSecond())
	if len(r.Rounds) > 1 {
		var each []string
		for _, e := range r.Rounds {
			each = append(each, fmt.Sprintf("%.1f", float64(r.Runs)/e.Seconds()))
		}
		s += " (" + strings.Join(each, ", ") + ")"
	}
	return s
}

func gap(p percentiles, d time.Duration) string {
	if p.N == 0 {
		return "—"
	}
	return ms(d)
}

func ratio(a, b time.Duration) string {
	if b <= 0 || a <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

// cpu is the CPU seconds per Run, and in parentheses the part of it that
// redis-server spent.
func cpu(r *result) string {
	n := float64(r.Runs * len(r.Rounds))
	return fmt.Sprintf("%.3f (%.3f)", r.CPU.Seconds()/n, r.RedisCPU.Seconds()/n)
}

func mb(b int64) string { return fmt.Sprintf("%d MB", b>>20) }
