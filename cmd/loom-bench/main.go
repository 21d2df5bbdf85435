// Command loom-bench measures Loom against bare Temporal, side by side in
// one process on one `loom dev` environment, and prints the figures: Runs
// per second, the step boundary (a Migrator's report → the next step's
// dispatch), CPU time per Run and peak memory, at several levels of Runs in
// flight, with Loom's ratio to the engine; then where a step boundary's
// time goes.
//
// With -rollout it measures rollouts instead: the same Runs started
// directly with StartRun and by one StartRollout, side by side; the
// rollout workflow's own state; how soon PauseRollout takes; and many
// Candidates started by one rollout at once.
//
// With -scale it measures the store at fleet scale instead: for each size,
// a fresh Migration of that many Candidates discovered, listed with every
// filter and pair of filters, run and deleted through Loom's API, with the
// Redis bytes per Candidate and where they go, and each figure's ratio
// against the first size.
//
//	go run ./cmd/loom-bench                      # what `make bench` prints
//	go run ./cmd/loom-bench -levels 1:50 -steps 5 -bare=false
//	go run ./cmd/loom-bench -rollout             # what `make bench-rollout` prints
//	go run ./cmd/loom-bench -rollout -runs 2000 -in-flight 100
//	go run ./cmd/loom-bench -scale               # what `make bench-scale` prints
//	go run ./cmd/loom-bench -scale -sizes 100,1000000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/loomhq/loom/internal/bench"
)

func main() {
	levels := flag.String("levels", "1:30,10:100,50:300,300:600", "levels to measure, as in-flight:runs,…")
	steps := flag.Int("steps", 3, "steps per Run")
	rounds := flag.Int("rounds", 2, "rounds per level; the sides alternate which goes first")
	bare := flag.Bool("bare", true, "also run the bare Temporal equivalent and print Loom's ratio to it")
	warmup := flag.Int("warmup", 20, "Runs per side before measuring")
	breakdown := flag.Int("breakdown", 30, "Runs traced one at a time to break a step boundary down; 0 skips it")
	profiles := flag.String("cpuprofile-dir", "", "write a CPU profile of every measured phase into this directory")
	rollout := flag.Bool("rollout", false, "measure rollouts against StartRun instead (-steps, -rounds and -warmup then default to 1, 1 and 50)")
	runs := flag.Int("runs", 10000, "with -rollout: Runs per side and round")
	inFlight := flag.Int("in-flight", 500, "with -rollout: Runs in flight on both sides (the rollout's max_in_flight)")
	pauseRuns := flag.Int("pause-runs", 2000, "with -rollout: Candidates of the rollout paused mid-way; 0 skips the pause check")
	pauseInFlight := flag.Int("pause-in-flight", 50, "with -rollout: that rollout's max_in_flight")
	pauseAt := flag.Int("pause-at", 200, "with -rollout: pause it once this many of its Runs started")
	burst := flag.Int("burst", 1000, "with -rollout: Candidates of one rollout started at once (max_in_flight as many); 0 skips it")
	scale := flag.Bool("scale", false, "measure the store at fleet scale instead: Migrations of -sizes Candidates")
	sizes := flag.String("sizes", "100,100000", "with -scale: the Candidates of each Migration; the first is what the others are compared with")
	pages := flag.Int("pages", 200, "with -scale: ListCandidates calls per filter, pair of filters or order")
	starts := flag.Int("starts", 200, "with -scale: Runs started per size (at most half of it)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *scale {
		ns, err := bench.ParseSizes(*sizes)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loom-bench: -sizes:", err)
			os.Exit(2)
		}
		if err := bench.RunScale(ctx, bench.ScaleConfig{Sizes: ns, Batch: 1000, Pages: *pages, Starts: *starts, Steps: *steps,
			ProfileDir: *profiles, Out: os.Stdout, Progress: os.Stderr}); err != nil {
			fmt.Fprintln(os.Stderr, "loom-bench:", err)
			os.Exit(1)
		}
		return
	}
	if *rollout {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		cfg := bench.RolloutConfig{Runs: *runs, InFlight: *inFlight, Steps: 1, Rounds: 1, Warmup: 50,
			PauseRuns: *pauseRuns, PauseInFlight: *pauseInFlight, PauseAt: *pauseAt, BurstRuns: *burst,
			ProfileDir: *profiles, Out: os.Stdout, Progress: os.Stderr}
		if set["steps"] {
			cfg.Steps = *steps
		}
		if set["rounds"] {
			cfg.Rounds = *rounds
		}
		if set["warmup"] {
			cfg.Warmup = *warmup
		}
		if err := bench.RunRollout(ctx, cfg); err != nil {
			fmt.Fprintln(os.Stderr, "loom-bench:", err)
			os.Exit(1)
		}
		return
	}
	ls, err := bench.ParseLevels(*levels)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loom-bench: -levels:", err)
		os.Exit(2)
	}
	err = bench.Run(ctx, bench.Config{Levels: ls, Steps: *steps, Rounds: *rounds, Bare: *bare, Warmup: *warmup,
		Breakdown: *breakdown, ProfileDir: *profiles, Out: os.Stdout, Progress: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loom-bench:", err)
		os.Exit(1)
	}
}
