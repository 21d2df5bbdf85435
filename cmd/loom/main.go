// Command loom is the Loom control plane: the server and its admin commands.
//
//	loom serve   serve the API against an external Redis and Temporal (production mode)
//	loom tokens create, loom keys init, loom reconcile
//
// The development environment, with an embedded Temporal server, is the
// command loom-dev (cmd/loom-dev): it is kept out of this binary, which
// production runs, so that loom carries no Temporal server (a test checks).
//
// Every flag can also be set through a LOOM_* environment variable (the
// flag wins); run `loom serve -h` for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/loomhq/loom/internal/cli"
	"github.com/loomhq/loom/server"
)

const usage = `loom is a control plane for fleet-wide migrations.

Usage:
  loom serve [flags]   production: serve the API (Connect, gRPC, gRPC-Web) against
                       an external Redis and Temporal
  loom tokens create   make a token for a person or a Migrator (a role, a scope)
  loom keys init       make the keys file of callback tokens and call signatures
  loom reconcile       record how Runs whose workflow ended really ended, where their
                       views still say running (admin token: -token-file, LOOM_TOKEN)

Run 'loom serve -h' for the flags; each has a LOOM_* environment variable.
A working system on this machine (an embedded Temporal, a Redis, the Loom server and
an example Migrator over a sample fleet) is another command: go run ./cmd/loom-dev
`

// newFlagSet makes the FlagSet of each subcommand. The docs test replaces
// it to read the flags every subcommand defines.
var newFlagSet = func(name string) *flag.FlagSet { return flag.NewFlagSet(name, flag.ContinueOnError) }

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "loom:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		cfg, logCfg, err := parseServe(args[1:], os.LookupEnv, stderr)
		if err != nil {
			return err
		}
		return serve(cfg, logCfg.Logger(stderr))
	case "dev":
		// Where loom dev was before it became a command of its own.
		return errors.New("loom dev is now the command loom-dev, kept out of the production binary: run go run ./cmd/loom-dev from Loom's repository")
	case "tokens":
		if len(args) < 2 || args[1] != "create" {
			return errors.New("usage: loom tokens create -subject NAME -role ROLE [-migrations IDS] [-add-to FILE]")
		}
		return tokensCreate(args[2:], os.Stdout, stderr)
	case "reconcile":
		return reconcile(args[1:], os.Stdout, stderr)
	case "keys":
		if len(args) < 2 || args[1] != "init" {
			return errors.New("usage: loom keys init [-out keys.json]")
		}
		return keysInit(args[2:], stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stderr, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func serve(cfg server.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutdown, err := cli.InstallTracing(ctx, log)
	if err != nil {
		return err
	}
	defer shutdown()
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	return srv.Run(ctx)
}
