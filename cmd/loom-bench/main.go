// Command loom-bench measures Loom in `loom dev` conditions and prints the
// figures: how long a Migrator's report takes to become the next step's
// dispatch (the step boundary), and how fast Runs go through.
//
//	go run ./cmd/loom-bench -runs 50 -steps 5 -concurrency 10
//
// It starts its own `loom dev` environment in a temporary directory (an
// embedded Temporal server and a Redis) and a Migrator built on migratorsdk
// whose every step completes at once.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/internal/devenv"
	"github.com/loomhq/loom/migratorsdk"
)

func main() {
	runs := flag.Int("runs", 50, "Runs to drive")
	steps := flag.Int("steps", 5, "steps per Run")
	concurrency := flag.Int("concurrency", 10, "Runs in flight at once")
	flag.Parse()
	if err := bench(*runs, *steps, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "loom-bench:", err)
		os.Exit(1)
	}
}

// boundaries records, per Run, when the last report was sent and, for the
// next dispatch, how long it took to arrive.
type boundaries struct {
	mu       sync.Mutex
	reported map[string]time.Time
	gaps     []time.Duration
	done     map[string]chan struct{}
}

func bench(runs, steps, concurrency int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "loom-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	ready := make(chan devenv.Env, 1)
	stopped := make(chan error, 1)
	go func() {
		stopped <- devenv.Run(ctx, devenv.Config{DataDir: dir, Addr: "127.0.0.1:0", Logger: quiet}, func(e devenv.Env) { ready <- e })
	}()
	var env devenv.Env
	select {
	case env = <-ready:
	case err := <-stopped:
		return err
	}
	defer func() { cancel(); <-stopped }()

	b := &boundaries{reported: map[string]time.Time{}, done: map[string]chan struct{}{}}
	var defs []migratorsdk.Step
	for i := range steps {
		defs = append(defs, migratorsdk.Step{Name: "step-" + strconv.Itoa(i+1), Type: "instant"})
	}
	spec := migratorsdk.Spec{
		Migration: migratorsdk.Migration{ID: "bench", Name: "Benchmark", Steps: defs},
		Handlers: map[string]migratorsdk.StepHandler{"instant": func(ctx context.Context, d *migratorsdk.Dispatch) error {
			now := time.Now()
			b.mu.Lock()
			if t, ok := b.reported[d.RunID]; ok && d.StepIndex > 0 {
				b.gaps = append(b.gaps, now.Sub(t))
			}
			b.reported[d.RunID] = time.Now()
			b.mu.Unlock()
			if err := d.Completed(ctx); err != nil {
				return err
			}
			if d.StepIndex == steps-1 {
				b.mu.Lock()
				close(b.done[d.RunID])
				b.mu.Unlock()
			}
			return nil
		}},
		Discover: func(context.Context) ([]migratorsdk.Candidate, error) {
			var cs []migratorsdk.Candidate
			for i := range runs {
				cs = append(cs, migratorsdk.Candidate{ID: fmt.Sprintf("c-%04d", i), Kind: "bench"})
			}
			return cs, nil
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	m, err := migratorsdk.New(spec, migratorsdk.Options{LoomURL: env.APIURL, Token: env.MigratorToken, ListenAddr: l.Addr().String(), Logger: quiet})
	if err != nil {
		return err
	}
	mctx, mcancel := context.WithCancel(ctx)
	defer mcancel()
	go func() { _ = m.Serve(mctx, l) }()
	operator := migratorsdk.WithToken(env.OperatorToken)
	if err := waitForCandidates(ctx, env.APIURL, runs, operator); err != nil {
		return err
	}

	client := loomv1connect.NewRunServiceClient(http.DefaultClient, env.APIURL, operator)
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	errs := make(chan error, runs)
	began := time.Now()
	for i := range runs {
		id := fmt.Sprintf("c-%04d", i)
		done := make(chan struct{})
		b.mu.Lock()
		b.done["bench__"+id] = done
		b.mu.Unlock()
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := client.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "bench", CandidateId: id})); err != nil {
				errs <- fmt.Errorf("start %s: %w", id, err)
				return
			}
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				errs <- fmt.Errorf("run of %s did not finish in 2 minutes", id)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	close(errs)
	for err := range errs {
		return err
	}

	b.mu.Lock()
	gaps := slices.Clone(b.gaps)
	b.mu.Unlock()
	slices.Sort(gaps)
	pct := func(p float64) time.Duration { return gaps[int(p*float64(len(gaps)-1))] }
	fmt.Printf("loom-bench: %d Runs × %d steps, %d in flight, loom dev (embedded Temporal, redis-server=%v)\n", runs, steps, concurrency, env.Persistent)
	fmt.Printf("step boundary (report → next dispatch), %d samples: p50 %v  p90 %v  p99 %v  max %v\n",
		len(gaps), pct(0.5).Round(time.Millisecond/10), pct(0.9).Round(time.Millisecond/10), pct(0.99).Round(time.Millisecond/10), gaps[len(gaps)-1].Round(time.Millisecond/10))
	fmt.Printf("throughput: %d Runs in %v = %.1f Runs/s, %.1f steps/s\n", runs, elapsed.Round(time.Millisecond),
		float64(runs)/elapsed.Seconds(), float64(runs*steps)/elapsed.Seconds())
	return nil
}

func waitForCandidates(ctx context.Context, apiURL string, n int, opts ...connect.ClientOption) error {
	c := loomv1connect.NewDiscoveryServiceClient(http.DefaultClient, apiURL, opts...)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		res, err := c.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "bench", PageSize: 1}))
		if err == nil && res.Msg.TotalSize >= int64(n) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the bench Migrator's %d candidates did not arrive", n)
}
