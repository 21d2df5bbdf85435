package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/loomhq/loom/server"
)

// Configuration comes from defaults, then LOOM_* environment variables, then
// flags: each flag's default is read from its variable.

type lookupEnv func(string) (string, bool)

type logConfig struct {
	level  string
	format string
}

func (c logConfig) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.level)) // validated in parse
	opts := &slog.HandlerOptions{Level: level}
	if c.format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// flags wraps a FlagSet so that every flag is documented with its variable.
type flags struct {
	fs  *flag.FlagSet
	env lookupEnv
	err error
}

func (f *flags) envName(name string) string {
	return "LOOM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (f *flags) string(p *string, name, def, help string) {
	if v, ok := f.env(f.envName(name)); ok {
		def = v
	}
	f.fs.StringVar(p, name, def, help+" ($"+f.envName(name)+")")
}

func (f *flags) duration(p *time.Duration, name string, def time.Duration, help string) {
	if v, ok := f.env(f.envName(name)); ok {
		d, err := time.ParseDuration(v)
		if err != nil && f.err == nil {
			f.err = fmt.Errorf("%s: %w", f.envName(name), err)
		}
		def = d
	}
	f.fs.DurationVar(p, name, def, help+" ($"+f.envName(name)+")")
}

func (f *flags) int(p *int, name string, def int, help string) {
	if v, ok := f.env(f.envName(name)); ok {
		n, err := strconv.Atoi(v)
		if err != nil && f.err == nil {
			f.err = fmt.Errorf("%s: %w", f.envName(name), err)
		}
		def = n
	}
	f.fs.IntVar(p, name, def, help+" ($"+f.envName(name)+")")
}

func (f *flags) float(p *float64, name string, def float64, help string) {
	if v, ok := f.env(f.envName(name)); ok {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil && f.err == nil {
			f.err = fmt.Errorf("%s: %w", f.envName(name), err)
		}
		def = x
	}
	f.fs.Float64Var(p, name, def, help+" ($"+f.envName(name)+")")
}

func (f *flags) bool(p *bool, name string, def bool, help string) {
	if v, ok := f.env(f.envName(name)); ok {
		b, err := strconv.ParseBool(v)
		if err != nil && f.err == nil {
			f.err = fmt.Errorf("%s: %w", f.envName(name), err)
		}
		def = b
	}
	f.fs.BoolVar(p, name, def, help+" ($"+f.envName(name)+")")
}

func (c logConfig) validate() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.level)); err != nil {
		return fmt.Errorf("log-level: %w", err)
	}
	if c.format != "text" && c.format != "json" {
		return fmt.Errorf("log-format: %q is neither text nor json", c.format)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func parseServe(args []string, env lookupEnv, stderr io.Writer) (server.Config, logConfig, error) {
	cfg := server.DefaultConfig()
	var lc logConfig
	var redisAddrs, cors string
	var console bool
	f := &flags{fs: newFlagSet("loom serve"), env: env}
	f.fs.SetOutput(stderr)
	f.string(&cfg.Addr, "addr", cfg.Addr, "address the API listens on")
	f.string(&cfg.AdminAddr, "admin-addr", cfg.AdminAddr, "address of /metrics, /healthz and /readyz (unauthenticated: keep it private); empty: off")
	f.string(&redisAddrs, "redis-addr", strings.Join(cfg.Redis.Addrs, ","), "Redis address; several, comma-separated, for Redis Cluster")
	f.string(&cfg.Redis.Username, "redis-username", "", "Redis ACL user name")
	f.string(&cfg.Redis.Password, "redis-password", "", "Redis password")
	f.int(&cfg.Redis.DB, "redis-db", 0, "Redis database number (not with Redis Cluster)")
	f.string(&cfg.Temporal.HostPort, "temporal-addr", cfg.Temporal.HostPort, "Temporal frontend address")
	f.string(&cfg.Temporal.Namespace, "temporal-namespace", cfg.Temporal.Namespace, "Temporal namespace")
	f.string(&cfg.Temporal.TaskQueue, "task-queue", cfg.Temporal.TaskQueue, "Temporal task queue of Runs (the same on every replica)")
	dispatchWindowFlag(f, &cfg.DispatchWindow, cfg.DispatchWindow)
	f.duration(&cfg.ReconcileEvery, "reconcile-every", cfg.ReconcileEvery, "how often views of Runs whose workflow ended are brought in line with Temporal (0: never; loom reconcile does it on demand)")
	f.duration(&cfg.DispatchLease, "dispatch-lease", cfg.DispatchLease, "how long a Migrator may hold an accepted step without a report before it is dispatched again (a Migration may set its own)")
	f.duration(&cfg.PreviewTimeout, "preview-timeout", cfg.PreviewTimeout, "how long a preview waits for the Migrator")
	f.bool(&console, "console", true, "serve the browser console at /")
	corsOriginsFlag(f, &cors)
	var nets, hosts string
	sec := &cfg.Security
	f.bool(&sec.Insecure, "insecure-no-auth", false, "serve everyone without a token (trusted networks only)")
	f.string(&sec.TokensFile, "tokens-file", "", "static tokens, hashed (loom tokens create prints entries)")
	f.string(&sec.KeysFile, "keys-file", "", "callback-token and call-signing keys (loom keys init writes one)")
	f.string(&sec.JWT.Issuer, "jwt-issuer", "", "accept JWT access tokens of this issuer")
	f.string(&sec.JWT.Audience, "jwt-audience", "", "audience JWT access tokens must carry")
	f.string(&sec.JWT.JWKSURL, "jwt-jwks-url", "", "URL of the issuer's JSON Web Key Set (default: the jwks_uri of its OpenID configuration)")
	f.string(&sec.JWT.JWKSFile, "jwt-jwks-file", "", "file of the issuer's JSON Web Key Set")
	f.string(&sec.JWT.RoleClaim, "jwt-role-claim", "loom_role", "claim holding the caller's role")
	f.string(&sec.JWT.MigrationsClaim, "jwt-migrations-claim", "loom_migrations", "claim listing a migrator's Migrations (id or prefix*)")
	var scopes string
	oidcFlags(f, &sec.ConsoleOIDC, &scopes)
	f.bool(&sec.ProtectHealth, "protect-health", false, "require a token for gRPC health and reflection too")
	f.float(&sec.RateLimit, "rate-limit", 50, "calls per second per caller (0: no limit)")
	f.int(&sec.Burst, "rate-burst", 200, "burst of calls per caller")
	f.int(&sec.MaxRequestBytes, "max-request-bytes", 4<<20, "largest request message")
	f.string(&nets, "allow-migrator-nets", "", "networks Migrators may be in although refused by default (loopback, link-local), comma-separated CIDRs")
	f.string(&hosts, "allow-migrator-hosts", "", "the only Migrator host names Loom calls, comma-separated (*.domain for a domain); empty: any")
	f.string(&cfg.TLS.CertFile, "tls-cert", "", "serve TLS with this certificate (reloaded when it changes)")
	f.string(&cfg.TLS.KeyFile, "tls-key", "", "key of -tls-cert")
	f.string(&cfg.TLS.ClientCAFile, "tls-client-ca", "", "verify the client certificates callers present against this CA (mutual TLS)")
	f.string(&cfg.TLS.MigratorCAFile, "migrator-ca", "", "CA of https:// Migrators")
	f.string(&cfg.TLS.MigratorCertFile, "migrator-cert", "", "client certificate presented to Migrators (mutual TLS)")
	f.string(&cfg.TLS.MigratorKeyFile, "migrator-key", "", "key of -migrator-cert")
	f.duration(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long a stop waits for calls in flight")
	f.string(&lc.level, "log-level", "info", "log level: debug, info, warn or error")
	f.string(&lc.format, "log-format", "text", "log format: text or json")
	if f.err != nil {
		return cfg, lc, f.err
	}
	if err := f.fs.Parse(args); err != nil {
		return cfg, lc, err
	}
	if f.fs.NArg() > 0 {
		return cfg, lc, fmt.Errorf("unexpected arguments: %v", f.fs.Args())
	}
	cfg.Redis.Addrs = splitList(redisAddrs)
	cfg.CORSOrigins = splitList(cors)
	cfg.NoConsole = !console
	cfg.Security.AllowMigratorNets = splitList(nets)
	cfg.Security.AllowMigratorHosts = splitList(hosts)
	cfg.Security.ConsoleOIDC.Scopes = strings.Fields(scopes)
	if err := lc.validate(); err != nil {
		return cfg, lc, err
	}
	return cfg, lc, cfg.Validate()
}

// dispatchWindowFlag and corsOriginsFlag are flags of serve and dev: a
// short dispatch window and a browser client on another origin are tried
// with loom dev as they run with loom serve.
func dispatchWindowFlag(f *flags, p *time.Duration, def time.Duration) {
	f.duration(p, "dispatch-window", def, "how long a dispatch retries an unreachable Migrator before the step fails")
}

func corsOriginsFlag(f *flags, p *string) {
	f.string(p, "cors-origins", "", "browser origins allowed to call the API, comma-separated; * for any")
}

// oidcFlags are the console's sign-in at the JWT issuer, in serve and dev.
func oidcFlags(f *flags, o *server.ConsoleOIDC, scopes *string) {
	f.string(&o.ClientID, "oidc-client-id", "", "the console's client id at the JWT issuer: the console signs in there (authorization code + PKCE)")
	f.string(scopes, "oidc-scopes", "openid profile email", "scopes the console asks the issuer for, space-separated")
	f.bool(&o.UseIDToken, "oidc-use-id-token", false, "the console sends the ID token rather than the access token (for opaque access tokens; -jwt-audience is then the client id)")
}
