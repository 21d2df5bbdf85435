package clusterenv_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/internal/clusterenv"
)

// BenchmarkReplicas (make bench-replicas) drives the same Runs — the
// example Migrator's 3-step Runs, each pull request merged and each
// review finished by an operator as soon as the Run's watch shows it —
// through one Loom replica, then through three, against the same
// Temporal server (on PostgreSQL) and Redis Cluster, all on this machine.
// It prints each phase's throughput and the CPU each part used, and how
// busy the machine was: where the machine's processors were all busy, the
// machine, not the number of replicas, bounded the phase. LOOM_BENCH_RUNS
// sets the Runs per phase (default 60), all in flight at once.
func BenchmarkReplicas(b *testing.B) {
	runs := 60
	if v, err := strconv.Atoi(os.Getenv("LOOM_BENCH_RUNS")); err == nil && v > 0 {
		runs = v
	}
	const warmup = 6
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Minute)
	defer cancel()
	// Every fifth repository of the fleet is no Candidate.
	need := 2*runs + warmup
	fleet := need + need/4 + 5
	env := start(ctx, b, fleet)
	ids := allCandidates(ctx, b, newClient(env.Replicas[1].URL, env.Tokens["viewer"]), need)
	a, m, c := env.Replicas[0], env.Replicas[1], env.Replicas[2]

	// One replica: the Migrator's (it reports through it); the other two
	// stopped as an orchestrator scales down, so that no other worker
	// takes the task queue's work.
	a.Stop()
	c.Stop()
	if _, err := phase(ctx, env, []*clusterenv.Replica{m}, ids[:warmup]); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	one, err := phase(ctx, env, []*clusterenv.Replica{m}, ids[warmup:warmup+runs])
	if err != nil {
		b.Fatalf("through one replica: %v", err)
	}
	for _, r := range []*clusterenv.Replica{a, c} {
		if err := r.Start(ctx); err != nil {
			b.Fatalf("start %s again: %v", r.Name(), err)
		}
	}
	three, err := phase(ctx, env, env.Replicas, ids[warmup+runs:])
	if err != nil {
		b.Fatalf("through three replicas: %v", err)
	}
	b.Logf("%d Runs of 3 steps per phase, all in flight at once, on %d CPUs:\n%s\n%s", runs, one.cpus, one, three)
	b.ReportMetric(one.perSecond(), "runs/s-1-replica")
	b.ReportMetric(three.perSecond(), "runs/s-3-replicas")
	b.ReportMetric(one.busy(), "machine-busy-1")
	b.ReportMetric(three.busy(), "machine-busy-3")
}

// phaseResult is what one phase measured.
type phaseResult struct {
	replicas  int
	runs      int
	wall      time.Duration
	durations []time.Duration // each Run's, start to completed
	cpu       map[string]time.Duration
	machine   time.Duration
	cpus      int
}

func (p phaseResult) perSecond() float64 { return float64(p.runs) / p.wall.Seconds() }

// busy is the share of the machine's processors busy during the phase.
func (p phaseResult) busy() float64 {
	return p.machine.Seconds() / (p.wall.Seconds() * float64(p.cpus))
}

func (p phaseResult) String() string {
	slices.Sort(p.durations)
	q := func(f float64) time.Duration {
		return p.durations[int(f*float64(len(p.durations)-1))].Round(10 * time.Millisecond)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "through %d replica(s): %d Runs in %v: %.2f Runs/s, %.1f steps/s; a Run p50 %v, p99 %v; machine %.0f %% busy\n",
		p.replicas, p.runs, p.wall.Round(10*time.Millisecond), p.perSecond(), 3*p.perSecond(), q(0.5), q(0.99), 100*p.busy())
	fmt.Fprintf(&b, "  CPU used (share of one CPU over the phase; per Run):")
	var parts time.Duration
	for _, name := range slices.Sorted(maps.Keys(p.cpu)) {
		d := p.cpu[name]
		parts += d
		fmt.Fprintf(&b, " %s %.0f %% %v;", name, 100*d.Seconds()/p.wall.Seconds(), (d / time.Duration(p.runs)).Round(100*time.Microsecond))
	}
	// What the machine did besides: this benchmark's own process (the
	// callers) and anything else running, which makes the figures
	// meaningless when it is large.
	fmt.Fprintf(&b, " the rest of the machine %.0f %%", 100*(p.machine-parts).Seconds()/p.wall.Seconds())
	return b.String()
}

// phase drives a Run of each of ids at once, Run i through replica i mod
// len(through) (started, watched and acted on there), and measures it.
func phase(ctx context.Context, env *clusterenv.Env, through []*clusterenv.Replica, ids []string) (phaseResult, error) {
	type pair struct{ op, watcher *caller }
	callers := make([]pair, len(through))
	for i, r := range through {
		callers[i] = pair{newClient(r.URL, env.Tokens["operator"]), newClient(r.URL, env.Tokens["viewer"])}
	}
	cpu0 := env.CPUTimes()
	machine0, cpus := clusterenv.MachineCPU()
	began := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	durations := make([]time.Duration, len(ids))
	cs := &calls{strict: true}
	for i, id := range ids {
		p := callers[i%len(callers)]
		wg.Go(func() {
			t0 := time.Now()
			errs[i] = drive(ctx, cs, p.op, p.watcher, id, 0)
			durations[i] = time.Since(t0)
		})
	}
	wg.Wait()
	wall := time.Since(began)
	machine1, _ := clusterenv.MachineCPU()
	cpu := env.CPUTimes()
	for k, v := range cpu {
		cpu[k] = v - cpu0[k]
	}
	return phaseResult{replicas: len(through), runs: len(ids), wall: wall, durations: durations, cpu: cpu, machine: machine1 - machine0, cpus: cpus},
		errors.Join(errs...)
}

// allCandidates waits until the Migrator has discovered at least n
// Candidates and returns their ids, n of them.
func allCandidates(ctx context.Context, tb testing.TB, c *caller, n int) []string {
	tb.Helper()
	for {
		var ids []string
		token := ""
		var err error
		for {
			var res *connect.Response[loomv1.ListCandidatesResponse]
			res, err = c.disc.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: migration, PageSize: 500, PageToken: token}))
			if err != nil {
				break
			}
			for _, cand := range res.Msg.GetCandidates() {
				ids = append(ids, cand.GetId())
			}
			if token = res.Msg.GetNextPageToken(); token == "" {
				break
			}
		}
		if err == nil && len(ids) >= n {
			return ids[:n]
		}
		if ctx.Err() != nil {
			tb.Fatalf("the Migrator's %d Candidates did not arrive: %v (last: %d, %v)", n, ctx.Err(), len(ids), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
