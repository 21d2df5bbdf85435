package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/loomhq/loom/internal/cli"
	"github.com/loomhq/loom/server"
	"github.com/loomhq/loom/server/auth"
)

func parseServe(args []string, env cli.LookupEnv, stderr io.Writer) (server.Config, cli.LogConfig, error) {
	cfg := server.DefaultConfig()
	var lc cli.LogConfig
	var redisAddrs, cors string
	var console bool
	f := &cli.Flags{FS: newFlagSet("loom serve"), Env: env}
	f.FS.SetOutput(stderr)
	f.String(&cfg.Addr, "addr", cfg.Addr, "address the API listens on")
	f.String(&cfg.AdminAddr, "admin-addr", cfg.AdminAddr, "address of /metrics, /healthz and /readyz (unauthenticated: keep it private); empty: off")
	f.String(&redisAddrs, "redis-addr", strings.Join(cfg.Redis.Addrs, ","), "Redis address; several, comma-separated, for Redis Cluster")
	f.String(&cfg.Redis.Username, "redis-username", "", "Redis ACL user name")
	f.String(&cfg.Redis.Password, "redis-password", "", "Redis password")
	f.Int(&cfg.Redis.DB, "redis-db", 0, "Redis database number (not with Redis Cluster)")
	f.Int(&cfg.Redis.WaitReplicas, "redis-wait-replicas", cfg.Redis.WaitReplicas, "Redis replicas that must acknowledge each write before Loom answers for it (WAIT); -1: 1 with Redis Cluster (several -redis-addr), 0 with one address")
	f.Duration(&cfg.Redis.WaitTimeout, "redis-wait-timeout", cfg.Redis.WaitTimeout, "how long a write waits for -redis-wait-replicas; after it the write stands, with a warning")
	f.String(&cfg.Temporal.HostPort, "temporal-addr", cfg.Temporal.HostPort, "Temporal frontend address")
	f.String(&cfg.Temporal.Namespace, "temporal-namespace", cfg.Temporal.Namespace, "Temporal namespace")
	f.String(&cfg.Temporal.TaskQueue, "task-queue", cfg.Temporal.TaskQueue, "Temporal task queue of Runs (the same on every replica)")
	cli.DispatchWindowFlag(f, &cfg.DispatchWindow, cfg.DispatchWindow)
	f.Duration(&cfg.ReconcileEvery, "reconcile-every", cfg.ReconcileEvery, "how often views of Runs whose workflow ended are brought in line with Temporal (0: never; loom reconcile does it on demand)")
	f.Duration(&cfg.DispatchLease, "dispatch-lease", cfg.DispatchLease, "how long a Migrator may hold an accepted step without a report before it is dispatched again (a Migration may set its own)")
	f.Duration(&cfg.PreviewTimeout, "preview-timeout", cfg.PreviewTimeout, "how long a preview waits for the Migrator")
	f.Bool(&console, "console", true, "serve the browser console at /")
	cli.CORSOriginsFlag(f, &cors)
	var nets, hosts string
	sec := &cfg.Security
	f.Bool(&sec.Insecure, "insecure-no-auth", false, "serve everyone without a token (trusted networks only)")
	f.String(&sec.TokensFile, "tokens-file", "", "static tokens, hashed (loom tokens create prints entries)")
	f.String(&sec.KeysFile, "keys-file", "", "callback-token and call-signing keys (loom keys init writes one)")
	f.String(&sec.JWT.Issuer, "jwt-issuer", "", "accept JWT access tokens of this issuer")
	f.String(&sec.JWT.Audience, "jwt-audience", "", "audience JWT access tokens must carry")
	f.String(&sec.JWT.JWKSURL, "jwt-jwks-url", "", "URL of the issuer's JSON Web Key Set (default: the jwks_uri of its OpenID configuration)")
	f.String(&sec.JWT.JWKSFile, "jwt-jwks-file", "", "file of the issuer's JSON Web Key Set")
	f.String(&sec.JWT.RoleClaim, "jwt-role-claim", "loom_role", "claim holding the caller's role")
	f.String(&sec.JWT.MigrationsClaim, "jwt-migrations-claim", "loom_migrations", "claim listing a migrator's Migrations (id or prefix*)")
	var scopes string
	cli.OIDCFlags(f, &sec.ConsoleOIDC, &scopes)
	f.Duration(&sec.SessionLifetime, "session-lifetime", auth.DefaultSessionLife, "how long a browser's sign-in (session cookie) lasts at most")
	f.Duration(&sec.SessionIdleTimeout, "session-idle-timeout", auth.DefaultSessionIdle, "a browser's sign-in ends after this long without a call")
	f.Bool(&sec.ProtectHealth, "protect-health", false, "require a token for gRPC health and reflection too")
	f.Float(&sec.RateLimit, "rate-limit", 50, "calls per second per caller (0: no limit)")
	f.Int(&sec.Burst, "rate-burst", 200, "burst of calls per caller")
	f.Int(&sec.MaxRequestBytes, "max-request-bytes", 4<<20, "largest request message")
	f.String(&nets, "allow-migrator-nets", "", "networks Migrators may be in although refused by default (loopback, link-local), comma-separated CIDRs")
	f.String(&hosts, "allow-migrator-hosts", "", "the only Migrator host names Loom calls, comma-separated (*.domain for a domain); empty: any")
	f.String(&cfg.TLS.CertFile, "tls-cert", "", "serve TLS with this certificate (reloaded when it changes)")
	f.String(&cfg.TLS.KeyFile, "tls-key", "", "key of -tls-cert")
	f.String(&cfg.TLS.ClientCAFile, "tls-client-ca", "", "verify the client certificates callers present against this CA (mutual TLS)")
	f.String(&cfg.TLS.MigratorCAFile, "migrator-ca", "", "CA of https:// Migrators")
	f.String(&cfg.TLS.MigratorCertFile, "migrator-cert", "", "client certificate presented to Migrators (mutual TLS)")
	f.String(&cfg.TLS.MigratorKeyFile, "migrator-key", "", "key of -migrator-cert")
	f.Duration(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long a stop waits for calls in flight")
	f.String(&lc.Level, "log-level", "info", "log level: debug, info, warn or error")
	f.String(&lc.Format, "log-format", "text", "log format: text or json")
	if f.Err != nil {
		return cfg, lc, f.Err
	}
	if err := f.FS.Parse(args); err != nil {
		return cfg, lc, err
	}
	if f.FS.NArg() > 0 {
		return cfg, lc, fmt.Errorf("unexpected arguments: %v", f.FS.Args())
	}
	cfg.Redis.Addrs = cli.SplitList(redisAddrs)
	cfg.CORSOrigins = cli.SplitList(cors)
	cfg.NoConsole = !console
	cfg.Security.AllowMigratorNets = cli.SplitList(nets)
	cfg.Security.AllowMigratorHosts = cli.SplitList(hosts)
	cfg.Security.ConsoleOIDC.Scopes = strings.Fields(scopes)
	if err := lc.Validate(); err != nil {
		return cfg, lc, err
	}
	return cfg, lc, cfg.Validate()
}
