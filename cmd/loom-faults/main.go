// Command loom-faults injects the failures Loom must survive into real
// components (redis-server, an embedded Temporal, Loom, Migrators built on
// the SDK, `loom dev`) and prints what they cost: Runs lost, steps done
// twice, history events lost or doubled, views disagreeing with Temporal,
// time to recover.
//
//	go run ./cmd/loom-faults                       # every scenario
//	go run ./cmd/loom-faults -scenarios redis -outages 30s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/loomhq/loom/internal/faults"
)

func main() {
	if faults.Child() {
		return
	}
	scenarios := flag.String("scenarios", "redis,migrator,loom-dev", "which scenarios to run")
	runs := flag.Int("runs", 50, "Runs in flight")
	steps := flag.Int("steps", 3, "steps per Run")
	outages := flag.String("outages", "30s,3m", "how long Redis stays down, one scenario each")
	kills := flag.Int("kills", 5, "how many times loom dev is SIGKILLed")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	failed := false
	report := func(r faults.Report, err error) {
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", r.Scenario, err)
			failed = true
			return
		}
		r.Print(os.Stdout)
		failed = failed || !r.OK()
	}
	for _, s := range strings.Split(*scenarios, ",") {
		switch strings.TrimSpace(s) {
		case "redis":
			for _, o := range strings.Split(*outages, ",") {
				d, err := time.ParseDuration(strings.TrimSpace(o))
				if err != nil {
					fmt.Fprintln(os.Stderr, "loom-faults: -outages:", err)
					os.Exit(2)
				}
				report(faults.RedisOutage(ctx, faults.RedisOutageConfig{Runs: *runs, Steps: *steps, Outage: d}))
			}
		case "migrator":
			report(faults.MigratorKilled(ctx, faults.MigratorKilledConfig{Runs: min(*runs, 20)}))
		case "loom-dev":
			report(faults.LoomDevKilled(ctx, faults.LoomDevKilledConfig{Runs: *runs, Steps: *steps, Kills: *kills}))
		default:
			fmt.Fprintf(os.Stderr, "loom-faults: unknown scenario %q\n", s)
			os.Exit(2)
		}
	}
	if failed {
		os.Exit(1)
	}
}
