// Command loom-cluster starts, on this machine, the topology the cluster
// test runs (package clusterenv): a private PostgreSQL, a Temporal server on
// it, a Redis Cluster of 3 masters and 3 replicas, Loom replicas on one task
// queue, and the example Migrator. It prints where each one is and the
// tokens, then runs until Ctrl-C, when it stops them all.
//
//	go run ./cmd/loom-cluster -dir /tmp/loom-cluster
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/loomhq/loom/internal/clusterenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loom-cluster:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "", "where data, logs and binaries go (default: a new temporary directory, kept)")
	replicas := flag.Int("replicas", 3, "loom serve processes")
	fleet := flag.Int("fleet", 10, "repositories in the example Migrator's fleet")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "loom-cluster-")
		if err != nil {
			return err
		}
		*dir = d
	} else if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	env, err := clusterenv.Start(ctx, clusterenv.Options{Dir: *dir, Replicas: *replicas, Fleet: *fleet, Log: log})
	if err != nil {
		return err
	}
	defer env.Stop()
	fmt.Printf("PostgreSQL      %s (user postgres, databases temporal and temporal_visibility)\n", env.PostgresAddr)
	fmt.Printf("Temporal        %s (namespace %s, task queue %s)\n", env.TemporalAddr, env.Namespace, clusterenv.TaskQueue)
	fmt.Printf("Redis Cluster   %s\n", strings.Join(env.RedisAddrs(), ","))
	for _, r := range env.Replicas {
		fmt.Printf("%-15s %s (admin %s)\n", r.Name(), r.URL, r.AdminURL)
		fmt.Printf("                %s %s\n", filepath.Join(env.Bin, "loom"), strings.Join(r.Args(), " "))
	}
	fmt.Printf("Migrator        example-migrator, reporting through %s\n", env.Migrator.Name)
	for _, role := range []string{"operator", "viewer", "admin", "migrator"} {
		fmt.Printf("%-8s token  %s\n", role, env.Tokens[role])
	}
	fmt.Printf("logs and data   %s\nCtrl-C stops everything\n", *dir)
	<-ctx.Done()
	return nil
}
