// Package cli is what the commands loom (production) and loom-dev (the
// development environment) share on their command lines: flags whose
// defaults come from LOOM_* variables, the flags both define alike, the
// logger and the tracer. It lives apart from both so that loom can be
// built without loom-dev's embedded Temporal server.
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/loomhq/loom/server"
	"github.com/loomhq/loom/server/telemetry"
)

// Configuration comes from defaults, then LOOM_* environment variables, then
// flags: each flag's default is read from its variable.

// LookupEnv is os.LookupEnv, or a test's map.
type LookupEnv func(string) (string, bool)

// LogConfig is the -log-level and -log-format of a command.
type LogConfig struct {
	Level  string
	Format string
}

// Logger is the logger the config asks for, writing to w.
func (c LogConfig) Logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated in parse
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Validate refuses a level or format the logger does not know.
func (c LogConfig) Validate() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return fmt.Errorf("log-level: %w", err)
	}
	if c.Format != "text" && c.Format != "json" {
		return fmt.Errorf("log-format: %q is neither text nor json", c.Format)
	}
	return nil
}

// Flags wraps a FlagSet so that every flag is documented with its variable.
// A variable that does not parse is kept in Err, to be returned before the
// flags are parsed.
type Flags struct {
	FS  *flag.FlagSet
	Env LookupEnv
	Err error
}

func (f *Flags) envName(name string) string {
	return "LOOM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (f *Flags) String(p *string, name, def, help string) {
	if v, ok := f.Env(f.envName(name)); ok {
		def = v
	}
	f.FS.StringVar(p, name, def, help+" ($"+f.envName(name)+")")
}

func (f *Flags) Duration(p *time.Duration, name string, def time.Duration, help string) {
	if v, ok := f.Env(f.envName(name)); ok {
		d, err := time.ParseDuration(v)
		if err != nil && f.Err == nil {
			f.Err = fmt.Errorf("%s: %w", f.envName(name), err)
		}
		def = d
	}
	f.FS.DurationVar(p, name, def, help+" ($"+f.envName(name)+")")
}

func (f *Flags) Int(p *int, name string, def int, help string) {
	if v, ok := f.Env(f.envName(name)); ok {
		n, err := strconv.Atoi(v)
		if err != nil && f.Err == nil {
			f.Err = fmt.Errorf("%s: %w", f.envName(name), err)
		}
		def = n
	}
	f.FS.IntVar(p, name, def, help+" ($"+f.envName(name)+")")
}

func (f *Flags) Float(p *float64, name string, def float64, help string) {
	if v, ok := f.Env(f.envName(name)); ok {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil && f.Err == nil {
			f.Err = fmt.Errorf("%s: %w", f.envName(name), err)
		}
		def = x
	}
	f.FS.Float64Var(p, name, def, help+" ($"+f.envName(name)+")")
}

func (f *Flags) Bool(p *bool, name string, def bool, help string) {
	if v, ok := f.Env(f.envName(name)); ok {
		b, err := strconv.ParseBool(v)
		if err != nil && f.Err == nil {
			f.Err = fmt.Errorf("%s: %w", f.envName(name), err)
		}
		def = b
	}
	f.FS.BoolVar(p, name, def, help+" ($"+f.envName(name)+")")
}

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// DispatchWindowFlag and CORSOriginsFlag are flags of loom serve and
// loom-dev: a short dispatch window and a browser client on another origin
// are tried with loom-dev as they run with loom serve.
func DispatchWindowFlag(f *Flags, p *time.Duration, def time.Duration) {
	f.Duration(p, "dispatch-window", def, "how long a dispatch retries an unreachable Migrator before the step fails")
}

func CORSOriginsFlag(f *Flags, p *string) {
	f.String(p, "cors-origins", "", "browser origins allowed to call the API, comma-separated; * for any")
}

// OIDCFlags are the console's sign-in at the JWT issuer, in loom serve and
// loom-dev.
func OIDCFlags(f *Flags, o *server.ConsoleOIDC, scopes *string) {
	f.String(&o.ClientID, "oidc-client-id", "", "the console's client id at the JWT issuer: the console signs in there (authorization code + PKCE)")
	f.String(scopes, "oidc-scopes", "openid profile email", "scopes the console asks the issuer for, space-separated")
	f.Bool(&o.UseIDToken, "oidc-use-id-token", false, "the console sends the ID token rather than the access token (for opaque access tokens; -jwt-audience is then the client id)")
}

// InstallTracing makes the tracer provider OTEL_* ask for the process's
// global one, for the server and for everything else in the process (the
// example Migrator of loom-dev), and returns what flushes it at exit.
func InstallTracing(ctx context.Context, log *slog.Logger) (shutdown func(), err error) {
	tr, err := telemetry.TracingFromEnv(ctx, "loom")
	if err != nil {
		return nil, err
	}
	otel.SetTracerProvider(tr.Provider)
	otel.SetTextMapPropagator(telemetry.Propagator())
	if tr.Exporting {
		log.Info("exporting traces over OTLP")
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tr.Shutdown(ctx); err != nil {
			log.Warn("could not flush the last traces", "error", err)
		}
	}, nil
}
