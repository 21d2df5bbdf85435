// Command loom-bench measures Loom against bare Temporal, side by side in
// one process on one `loom dev` environment, and prints the figures: Runs
// per second, the step boundary (a Migrator's report → the next step's
// dispatch), CPU time per Run and peak memory, at several levels of Runs in
// flight, with Loom's ratio to the engine; then where a step boundary's
// time goes.
//
//	go run ./cmd/loom-bench                      # what `make bench` prints
//	go run ./cmd/loom-bench -levels 1:50 -steps 5 -bare=false
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
	flag.Parse()
	ls, err := bench.ParseLevels(*levels)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loom-bench: -levels:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err = bench.Run(ctx, bench.Config{Levels: ls, Steps: *steps, Rounds: *rounds, Bare: *bare, Warmup: *warmup,
		Breakdown: *breakdown, ProfileDir: *profiles, Out: os.Stdout, Progress: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loom-bench:", err)
		os.Exit(1)
	}
}
