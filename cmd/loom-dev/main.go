// Command loom-dev is Loom's development environment: everything on one
// machine, in one process — a Redis, an embedded Temporal server, the Loom
// server and an example Migrator over a sample fleet.
//
//	go run ./cmd/loom-dev
//
// It is a command of its own, apart from loom (cmd/loom), because the
// embedded Temporal server is most of its size and its build time: the
// binary production runs carries none of it. Every flag can also be set
// through a LOOM_* environment variable (the flag wins); run
// `go run ./cmd/loom-dev -h` for the list.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// newFlagSet makes the FlagSet of loom-dev. The docs test replaces it to
// read the flags loom-dev defines.
var newFlagSet = func(name string) *flag.FlagSet { return flag.NewFlagSet(name, flag.ContinueOnError) }

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "loom-dev:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stderr io.Writer) error {
	cfg, err := parseDev(args, os.LookupEnv, stderr)
	if err != nil {
		return err
	}
	return dev(cfg, stderr)
}
