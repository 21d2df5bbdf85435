package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/loomhq/loom/internal/cli"
	"github.com/loomhq/loom/internal/devenv"
	"github.com/loomhq/loom/server"
)

type devConfig struct {
	env devenv.Config
	log cli.LogConfig
}

func parseDev(args []string, env cli.LookupEnv, stderr io.Writer) (devConfig, error) {
	c := devConfig{env: devenv.Config{Example: true}}
	var console bool
	var cors string
	f := &cli.Flags{FS: newFlagSet("loom-dev"), Env: env}
	f.FS.SetOutput(stderr)
	f.String(&c.env.DataDir, "data-dir", ".loom", "where Redis, Temporal and the sample fleet keep their state")
	f.String(&c.env.Addr, "addr", "127.0.0.1:8080", "address the API listens on")
	f.String(&c.env.AdminAddr, "admin-addr", "127.0.0.1:8081", "address of /metrics, /healthz and /readyz; empty: off")
	f.Bool(&console, "console", true, "serve the browser console at the API's address")
	f.Bool(&c.env.TLS, "tls", false, "serve https with a self-signed certificate for 127.0.0.1/localhost made in the data directory (browsers then use HTTP/2)")
	cli.CORSOriginsFlag(f, &cors)
	cli.DispatchWindowFlag(f, &c.env.DispatchWindow, server.DefaultConfig().DispatchWindow)
	f.Int(&c.env.TemporalPort, "temporal-port", 7233, "port of the embedded Temporal server")
	f.Int(&c.env.RedisPort, "redis-port", 6380, "port of the development Redis")
	f.Bool(&c.env.Example, "example", true, "run the example Migrator over a sample fleet of git repositories")
	f.Int(&c.env.FleetSize, "fleet-size", 12, "how many repositories the sample fleet has")
	f.String(&c.env.ExampleAddr, "example-addr", "127.0.0.1:9090", "address of the example Migrator")
	var scopes string
	f.String(&c.env.JWT.Issuer, "jwt-issuer", "", "also accept JWTs of this issuer (to try single sign-on locally)")
	f.String(&c.env.JWT.Audience, "jwt-audience", "", "audience those JWTs must carry")
	f.String(&c.env.JWT.RoleClaim, "jwt-role-claim", "loom_role", "claim holding the caller's role")
	cli.OIDCFlags(f, &c.env.ConsoleOIDC, &scopes)
	f.String(&c.log.Level, "log-level", "warn", "log level: debug, info, warn or error")
	f.String(&c.log.Format, "log-format", "text", "log format: text or json")
	if f.Err != nil {
		return c, f.Err
	}
	if err := f.FS.Parse(args); err != nil {
		return c, err
	}
	if f.FS.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", f.FS.Args())
	}
	c.env.NoConsole = !console
	c.env.CORSOrigins = cli.SplitList(cors)
	c.env.ConsoleOIDC.Scopes = strings.Fields(scopes)
	// Refused here rather than by the server, which loom dev builds only
	// once Redis and Temporal have started.
	if c.env.DispatchWindow <= 0 {
		return c, fmt.Errorf("dispatch-window: %v is not a positive duration", c.env.DispatchWindow)
	}
	return c, c.log.Validate()
}

func dev(c devConfig, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c.env.Logger = c.log.Logger(stderr)
	shutdown, err := cli.InstallTracing(ctx, c.env.Logger)
	if err != nil {
		return err
	}
	defer shutdown()
	fmt.Fprintln(stderr, "loom-dev: starting Redis, Temporal and Loom…")
	return devenv.Run(ctx, c.env, func(e devenv.Env) { printWelcome(stderr, e) })
}

func printWelcome(w io.Writer, e devenv.Env) {
	state := "kept in " + e.DataDir + " (survives restarts)"
	if !e.Persistent {
		state = "IN MEMORY: nothing survives a restart (install redis-server to keep state)"
	}
	host := strings.TrimPrefix(strings.TrimPrefix(e.APIURL, "http://"), "https://")
	// grpcurl's way to reach the API: in clear, or trusting loom dev's
	// certificate.
	conn := "-plaintext"
	if e.CertFile != "" {
		conn = "-cacert " + e.CertFile
	}
	fmt.Fprint(w, "\nLoom is running.\n")
	if e.ConsoleURL != "" {
		fmt.Fprintf(w, "  Console    %s  (open it: signs you in as the operator)\n", e.ConsoleURL)
	}
	fmt.Fprintf(w, `  API        %s  (Connect, gRPC, gRPC-Web; reflection on)
  Temporal   %s
  Redis      %s
  State      %s
`, e.APIURL, e.TemporalAddr, e.RedisAddr, state)
	if e.CertFile != "" {
		fmt.Fprintf(w, "  TLS        %s  (self-signed, made for this data directory: trust it, or accept the browser's warning once)\n", e.CertFile)
	}
	if e.AdminURL != "" {
		fmt.Fprintf(w, "  Admin      %s/metrics  /healthz  /readyz\n", e.AdminURL)
	}
	if e.FleetDir != "" {
		fmt.Fprintf(w, "  Fleet      %s  (git repositories the example Migrator migrates)\n", e.FleetDir)
	}
	fmt.Fprintf(w, `  Tokens     operator: %[2]s
             migrator: %[3]s
             admin:    %[5]s  (DeleteMigration, ReconcileRuns)
             all tokens: %[4]s (reread when it changes; add one with
               loom tokens create -subject NAME -role ROLE -add-to %[4]s)

Try (callers need a token: the operator's is in the data directory):
  export LOOM_TOKEN=$(cat %[2]s)
  grpcurl %[6]s %[1]s list
`, host, e.OperatorTokenFile, e.MigratorTokenFile, e.TokensFile, e.AdminTokenFile, conn)
	// The example's Migration exists only when the example Migrator runs:
	// without it, these would answer not_found.
	if e.FleetDir != "" {
		fmt.Fprintf(w, `  grpcurl %[2]s -H "authorization: Bearer $LOOM_TOKEN" -d '{"migration_id": "go-directive"}' %[1]s loom.v1.DiscoveryService/ListCandidates
  grpcurl %[2]s -H "authorization: Bearer $LOOM_TOKEN" -d '{"migration_id": "go-directive", "candidate_id": "svc-01", "inputs": {"go_version": "1.23", "toolchain": "1.23.4"}}' %[1]s loom.v1.RunService/PreviewRun
`, host, conn)
	} else {
		fmt.Fprintf(w, `  grpcurl %[3]s -H "authorization: Bearer $LOOM_TOKEN" -d '{}' %[1]s loom.v1.RegistryService/ListMigrations
  (no example Migrator: run yours against %[2]s with the migrator token)
`, host, e.APIURL, conn)
	}
	fmt.Fprint(w, "\nStop with Ctrl-C.\n")
}
