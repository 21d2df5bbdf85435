// Command example-migrator is Loom's example Migrator: it raises the go
// directive of Go repositories, one reviewed pull request per step (see
// package gomigrator).
//
// By default (-host local) the repositories are the git repositories in a
// folder and a pull request is a branch (it needs the git binary):
//
//	example-migrator -fleet ./fleet -generate 12 -loom http://127.0.0.1:8080
//
// With -host github they are an owner's repositories on GitHub (or GitHub
// Enterprise Server with -github-url https://HOST/api/v3/), with real pull
// requests; with a webhook secret, the Migrator serves GitHub's webhook at
// /webhooks/github on its listener, so that merges reach Loom at once:
//
//	GITHUB_TOKEN=... GITHUB_WEBHOOK_SECRET=... example-migrator -host github -github-owner acme
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/loomhq/loom/internal/gomigrator"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/pullrequest/github"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "example-migrator:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, err := newMigrator(ctx, cfg)
	if err != nil {
		return err
	}
	return m.Run(ctx)
}

// config is the command line.
type config struct {
	loom, token, listen string
	fleet               string
	generate            int
	host                string
	github              struct{ url, token, owner, secret string }
	logger              *slog.Logger
}

func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("example-migrator", flag.ContinueOnError)
	fs.StringVar(&cfg.loom, "loom", envOr("LOOM_URL", "http://127.0.0.1:8080"), "Loom's API ($LOOM_URL)")
	fs.StringVar(&cfg.token, "token", defaultToken(), "token of the migrator role ($LOOM_TOKEN, else .loom/migrator.token, written by loom-dev)")
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:9090", "where Loom reaches this Migrator (and GitHub its webhook)")
	fs.StringVar(&cfg.host, "host", "local", "where the repositories are: local (the git repositories in -fleet) or github")
	fs.StringVar(&cfg.fleet, "fleet", "fleet", "with -host local: the folder of git repositories to migrate")
	fs.IntVar(&cfg.generate, "generate", 0, "with -host local: first create a sample fleet of this many repositories in -fleet")
	fs.StringVar(&cfg.github.url, "github-url", envOr("GITHUB_API_URL", github.DefaultBaseURL), "with -host github: GitHub's REST API, https://HOST/api/v3/ for GitHub Enterprise Server ($GITHUB_API_URL)")
	fs.StringVar(&cfg.github.token, "github-token", os.Getenv("GITHUB_TOKEN"), "with -host github: a token with write access to contents and pull requests ($GITHUB_TOKEN)")
	fs.StringVar(&cfg.github.owner, "github-owner", "", "with -host github: the organization or user whose repositories to migrate")
	fs.StringVar(&cfg.github.secret, "github-webhook-secret", os.Getenv("GITHUB_WEBHOOK_SECRET"),
		"with -host github: the secret of a webhook sending pull request events to <-listen>/webhooks/github, so that merges reach Loom at once; empty: merges are seen by polling only ($GITHUB_WEBHOOK_SECRET)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	return cfg, nil
}

// newMigrator is the Migrator the command line asks for.
func newMigrator(ctx context.Context, cfg config) (*migratorsdk.Migrator, error) {
	var fleet gomigrator.Fleet
	var m *migratorsdk.Migrator
	routes := map[string]http.Handler{}
	switch cfg.host {
	case "local":
		dir, err := filepath.Abs(cfg.fleet)
		if err != nil {
			return nil, err
		}
		if cfg.generate > 0 {
			if err := gomigrator.GenerateFleet(ctx, dir, cfg.generate); err != nil {
				return nil, err
			}
		}
		fleet = gomigrator.LocalFleet(dir)
	case "github":
		switch {
		case cfg.generate > 0:
			return nil, errors.New("-generate makes a local fleet: it needs -host local")
		case cfg.github.owner == "":
			return nil, errors.New("-host github needs -github-owner")
		case cfg.github.token == "":
			return nil, errors.New("-host github needs -github-token (or $GITHUB_TOKEN)")
		}
		host, err := github.New(github.Options{BaseURL: cfg.github.url, Token: cfg.github.token})
		if err != nil {
			return nil, err
		}
		fleet = gomigrator.GitHubFleet(host, cfg.github.url, cfg.github.owner)
		if cfg.github.secret != "" {
			// A merge on GitHub makes the Migrator check its open steps now.
			hook, err := github.NewWebhook(cfg.github.secret, func(ctx context.Context, _ []github.ClosedEvent) { m.CheckMerges(ctx) })
			if err != nil {
				return nil, err
			}
			routes["POST /webhooks/github"] = hook
		}
	default:
		return nil, fmt.Errorf("-host %q: want local or github", cfg.host)
	}
	m, err := migratorsdk.New(gomigrator.SpecFor(fleet), migratorsdk.Options{
		LoomURL:    cfg.loom,
		Token:      cfg.token,
		ListenAddr: cfg.listen,
		Logger:     cfg.logger,
		Routes:     routes,
	})
	return m, err
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
