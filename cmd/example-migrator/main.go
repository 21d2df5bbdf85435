// Command example-migrator is Loom's example Migrator: it raises the go
// directive of the Go repositories in a folder, one reviewed git branch per
// step (see package gomigrator). It needs the git binary.
//
//	example-migrator -fleet ./fleet -generate 12 -loom http://127.0.0.1:8080
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

	"github.com/loomhq/loom/cmd/example-migrator/gomigrator"
	"github.com/loomhq/loom/migratorsdk"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "example-migrator:", err)
		os.Exit(1)
	}
}

func run() error {
	loom := flag.String("loom", envOr("LOOM_URL", "http://127.0.0.1:8080"), "Loom's API ($LOOM_URL)")
	token := flag.String("token", defaultToken(), "token of the migrator role ($LOOM_TOKEN, else .loom/migrator.token, written by loom dev)")
	listen := flag.String("listen", "127.0.0.1:9090", "where Loom reaches this Migrator")
	fleet := flag.String("fleet", "fleet", "folder of git repositories to migrate")
	generate := flag.Int("generate", 0, "first create a sample fleet of this many repositories in -fleet")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := filepath.Abs(*fleet)
	if err != nil {
		return err
	}
	if *generate > 0 {
		if err := gomigrator.GenerateFleet(ctx, dir, *generate); err != nil {
			return err
		}
	}
	m, err := migratorsdk.New(gomigrator.Spec(dir), migratorsdk.Options{
		LoomURL:    *loom,
		Token:      *token,
		ListenAddr: *listen,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	return m.Run(ctx)
}

// defaultToken is $LOOM_TOKEN, else the Migrator token `loom dev` keeps in
// its default data directory, so that the example runs against a local loom
// dev with no extra step.
func defaultToken() string {
	if v := os.Getenv("LOOM_TOKEN"); v != "" {
		return v
	}
	b, err := os.ReadFile(filepath.Join(".loom", "migrator.token"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
