// Package bench measures Loom against the engine it stands on. In one
// process and one `loom dev` environment (the embedded Temporal server with
// its development settings, and a redis-server), it drives Runs through
// Loom and, alternately, the same Runs written on bare Temporal, at several
// levels of Runs in flight, and prints both with their ratio: throughput,
// the step boundary (a Migrator's report → the next step's dispatch), CPU
// time per Run and peak memory. It then follows a few traced Runs to say
// where Loom's step boundary goes.
//
// Two benches of their own share its environment: RunRollout (rollout.go)
// measures rollouts against Runs started one by one, and RunScale
// (scale.go) the store at fleet scale: Migrations of 100 to 1,000,000
// Candidates discovered, listed, run and deleted through the API, with
// the Redis bytes per Candidate and where they go.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/loomhq/loom/internal/devenv"
)

// Level is a number of Runs kept in flight and how many Runs to drive so.
type Level struct {
	InFlight, Runs int
}

// DefaultLevels are the levels `make bench` measures: an operator starting
// one Run, a handful, a batch, and a wide rollout.
var DefaultLevels = []Level{{1, 30}, {10, 100}, {50, 300}, {300, 600}}

// ParseLevels reads "inflight:runs,…", e.g. "1:30,10:100".
func ParseLevels(s string) ([]Level, error) {
	var out []Level
	for part := range strings.SplitSeq(s, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(part), ":")
		inFlight, err1 := strconv.Atoi(a)
		runs, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || inFlight < 1 || runs < 1 {
			return nil, fmt.Errorf("level %q: want in-flight:runs, both positive, e.g. 10:100", part)
		}
		out = append(out, Level{InFlight: inFlight, Runs: runs})
	}
	return out, nil
}

// Config is one bench.
type Config struct {
	Levels []Level
	// Steps per Run (≥ 1).
	Steps int
	// Rounds per level: each round measures both sides, in alternating
	// order, so neither always runs on a warmer or fuller server.
	Rounds int
	// Bare turns the bare Temporal side on.
	Bare bool
	// Warmup Runs per side before anything is measured.
	Warmup int
	// Breakdown is how many Runs go one at a time, traced, to say where a
	// step boundary goes; 0 skips it.
	Breakdown int
	// Out receives the figures; Progress, a line per phase.
	Out, Progress io.Writer
	// ProfileDir, when set, receives a CPU profile of every measured phase
	// (the process holds Temporal, Loom and both Migrators; not Redis).
	ProfileDir string
}

func (c Config) validate() error {
	if c.Steps < 1 {
		return errors.New("steps: at least 1")
	}
	if c.Rounds < 1 {
		return errors.New("rounds: at least 1")
	}
	if len(c.Levels) == 0 {
		return errors.New("levels: at least one")
	}
	return nil
}

// side is one way of running the bench's Runs: Loom, or bare Temporal.
type side interface {
	name() string
	run(ctx context.Context, id string) error
	boundaries() *boundaries
	stop()
}

// result is one side's figures at one level, over all its rounds.
type result struct {
	Level
	Rounds []time.Duration // elapsed, per round
	// Gaps are step boundaries; Starts, start → first dispatch; Ends, last
	// report → workflow completed.
	Gaps, Starts, Ends []time.Duration
	CPU, RedisCPU      time.Duration
	PeakRSS            int64
}

func (r *result) runsPerSecond() float64 {
	var total time.Duration
	for _, e := range r.Rounds {
		total += e
	}
	return float64(r.Runs*len(r.Rounds)) / total.Seconds()
}

// defaultWriters gives a bench's writers their defaults: figures to
// standard output, progress nowhere.
func defaultWriters(out, progress *io.Writer) {
	if *out == nil {
		*out = os.Stdout
	}
	if *progress == nil {
		*progress = io.Discard
	}
}

// Run runs the bench and prints its figures.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	defaultWriters(&cfg.Out, &cfg.Progress)
	quiet := slog.New(slog.DiscardHandler)
	var tr *tracing
	if cfg.Breakdown > 0 {
		// The server takes the global provider when it starts: spans are
		// only recorded while the breakdown runs.
		tr = newTracing()
		prev := otel.GetTracerProvider()
		otel.SetTracerProvider(tr.provider)
		defer otel.SetTracerProvider(prev)
	}

	w, err := openWorld(ctx, quiet)
	if err != nil {
		return err
	}
	defer w.close()
	ctx, env, tc, m := w.ctx, w.env, w.tc, w.m

	total := cfg.Warmup + cfg.Breakdown
	for _, l := range cfg.Levels {
		total += l.Runs * cfg.Rounds
	}
	all := make([]string, total)
	for i := range all {
		all[i] = candidateID(i)
	}
	loom, err := startLoom(ctx, env, tc, cfg.Steps, all, quiet)
	if err != nil {
		return err
	}
	defer loom.stop()
	sides := []side{loom}
	var bare *bareSide
	if cfg.Bare {
		if bare, err = startBare(tc, cfg.Steps); err != nil {
			return err
		}
		defer bare.stop()
		sides = []side{bare, loom}
	}
	next := map[side]int{}
	ids := func(s side, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = candidateID(next[s])
			next[s]++
		}
		return out
	}

	if cfg.Warmup > 0 {
		for _, s := range sides {
			fmt.Fprintf(cfg.Progress, "warming up: %d Runs through %s\n", cfg.Warmup, s.name())
			if _, err := phase(ctx, s, Level{InFlight: min(10, cfg.Warmup), Runs: cfg.Warmup}, ids(s, cfg.Warmup), m); err != nil {
				return err
			}
		}
	}
	results := map[side][]*result{}
	for _, l := range cfg.Levels {
		per := map[side]*result{}
		for _, s := range sides {
			per[s] = &result{Level: l}
		}
		for round := range cfg.Rounds {
			order := slices.Clone(sides)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, s := range order {
				fmt.Fprintf(cfg.Progress, "%s: %d Runs × %d steps, %d in flight (round %d of %d)\n", s.name(), l.Runs, cfg.Steps, l.InFlight, round+1, cfg.Rounds)
				stopProfile, err := profile(cfg.ProfileDir, fmt.Sprintf("%s-%d-in-flight-round-%d.pprof", s.name(), l.InFlight, round+1))
				if err != nil {
					return err
				}
				ph, err := phase(ctx, s, l, ids(s, l.Runs), m)
				stopProfile()
				if err != nil {
					return err
				}
				fmt.Fprintf(cfg.Progress, "  %.1f Runs/s; the slowest Run (%s) took %v\n", float64(l.Runs)/ph.elapsed.Seconds(), ph.slowestID, ph.slowest.Round(time.Millisecond))
				r := per[s]
				r.Rounds = append(r.Rounds, ph.elapsed)
				r.Gaps = append(r.Gaps, ph.gaps(stepBoundary)...)
				r.Starts = append(r.Starts, ph.gaps(runStart)...)
				r.Ends = append(r.Ends, ph.gaps(runEnd)...)
				r.CPU += ph.res.cpu
				r.RedisCPU += ph.res.redisCPU
				r.PeakRSS = max(r.PeakRSS, ph.res.peakRSS)
			}
		}
		for _, s := range sides {
			results[s] = append(results[s], per[s])
		}
	}
	var bareResults []*result
	if bare != nil {
		bareResults = results[bare]
	}
	printTable(cfg, results[loom], bareResults)

	if tr != nil {
		fmt.Fprintf(cfg.Progress, "breakdown: %d Runs through Loom, one at a time, traced\n", cfg.Breakdown)
		tr.take()
		tr.on.Store(true)
		ph, err := phase(ctx, loom, Level{InFlight: 1, Runs: cfg.Breakdown}, ids(loom, cfg.Breakdown), m)
		tr.on.Store(false)
		if err != nil {
			return err
		}
		spans := tr.take()
		for _, p := range paths {
			var bareP percentiles
			if bare != nil {
				r := results[bare][0]
				bareP = percentilesOf(map[stretch][]time.Duration{stepBoundary: r.Gaps, runStart: r.Starts}[p.kind])
			}
			attribute(p, ph.samples, spans).print(cfg.Out, bareP)
		}
	}
	return nil
}

// world is one `loom dev` environment and a Temporal client on it.
type world struct {
	// ctx ends when the environment is closed.
	ctx   context.Context
	env   devenv.Env
	tc    client.Client
	m     meter
	close func()
}

// openWorld starts a `loom dev` environment in a temporary directory (the
// embedded Temporal server, redis-server, a Loom server) and dials its
// Temporal.
func openWorld(ctx context.Context, quiet *slog.Logger) (*world, error) {
	ctx, cancel := context.WithCancel(ctx)
	dir, err := os.MkdirTemp("", "loom-bench-")
	if err != nil {
		cancel()
		return nil, err
	}
	ready := make(chan devenv.Env, 1)
	stopped := make(chan error, 1)
	go func() {
		stopped <- devenv.Run(ctx, devenv.Config{DataDir: dir, Addr: "127.0.0.1:0", NoConsole: true, Logger: quiet},
			func(e devenv.Env) { ready <- e })
	}()
	var env devenv.Env
	select {
	case env = <-ready:
	case err := <-stopped:
		cancel()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start loom dev: %w", err)
	}
	down := func() { cancel(); <-stopped; os.RemoveAll(dir) }
	tc, err := client.DialContext(ctx, client.Options{HostPort: env.TemporalAddr, Namespace: "default",
		Logger: sdklog.NewStructuredLogger(quiet)})
	if err != nil {
		down()
		return nil, fmt.Errorf("dial temporal: %w", err)
	}
	return &world{ctx: ctx, env: env, tc: tc, m: meter{redisPID: redisPID(ctx, env.RedisAddr)},
		close: func() { tc.Close(); down() }}, nil
}

type phaseResult struct {
	elapsed time.Duration
	// slowest is the longest a Run took, slowestID its Candidate.
	slowest   time.Duration
	slowestID string
	samples   []boundary
	res       resources
}

func (p phaseResult) gaps(kind stretch) []time.Duration {
	var out []time.Duration
	for _, s := range p.samples {
		if s.Kind == kind {
			out = append(out, s.gap())
		}
	}
	return out
}

// phase drives the Runs ids through s, l.InFlight at a time, and measures.
func phase(ctx context.Context, s side, l Level, ids []string, m meter) (phaseResult, error) {
	s.boundaries().take()
	m.reset()
	before := m.read()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	sem := make(chan struct{}, l.InFlight)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	began := time.Now()
	var slowMu sync.Mutex
	var slowest time.Duration
	slowID := ""
	for _, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			if err := s.run(ctx, id); err != nil {
				once.Do(func() { first = fmt.Errorf("%s: %w", s.name(), err); cancel() })
			}
			slowMu.Lock()
			if d := time.Since(t0); d > slowest {
				slowest, slowID = d, id
			}
			slowMu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	if first == nil && ctx.Err() != nil {
		first = fmt.Errorf("%s: %d Runs at %d in flight did not finish: %w", s.name(), l.Runs, l.InFlight, ctx.Err())
	}
	after := m.read()
	return phaseResult{elapsed: elapsed, samples: s.boundaries().take(), slowest: slowest, slowestID: slowID,
		res: resources{cpu: after.cpu - before.cpu, redisCPU: after.redisCPU - before.redisCPU, peakRSS: after.peakRSS}}, first
}

// profile starts a CPU profile into dir/name; the returned func stops it
// and writes the allocations so far beside it, as name.allocs before and
// after (compare them with pprof -diff_base).
func profile(dir, name string) (func(), error) {
	if dir == "" {
		return func() {}, nil
	}
	path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
	writeAllocs := func(suffix string) {
		if f, err := os.Create(path + suffix); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	writeAllocs(".allocs-before")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close(); writeAllocs(".allocs-after") }, nil
}

// redisPID asks the development Redis for its process id, so the bench can
// count its CPU and memory (0 when it is the in-process fallback).
func redisPID(ctx context.Context, addr string) int {
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	info, err := rc.Info(ctx, "server").Result()
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, _ := strconv.Atoi(v)
			if pid == os.Getpid() {
				return 0
			}
			return pid
		}
	}
	return 0
}
