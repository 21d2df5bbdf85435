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
	f := &flags{fs: flag.NewFlagSet("loom serve", flag.ContinueOnError), env: env}
	f.fs.SetOutput(stderr)
	f.string(&cfg.Addr, "addr", cfg.Addr, "address the API listens on")
	f.string(&redisAddrs, "redis-addr", strings.Join(cfg.Redis.Addrs, ","), "Redis address; several, comma-separated, for Redis Cluster")
	f.string(&cfg.Redis.Username, "redis-username", "", "Redis ACL user name")
	f.string(&cfg.Redis.Password, "redis-password", "", "Redis password")
	f.int(&cfg.Redis.DB, "redis-db", 0, "Redis database number (not with Redis Cluster)")
	f.string(&cfg.Temporal.HostPort, "temporal-addr", cfg.Temporal.HostPort, "Temporal frontend address")
	f.string(&cfg.Temporal.Namespace, "temporal-namespace", cfg.Temporal.Namespace, "Temporal namespace")
	f.string(&cfg.Temporal.TaskQueue, "task-queue", cfg.Temporal.TaskQueue, "Temporal task queue of Runs (the same on every replica)")
	f.duration(&cfg.DispatchWindow, "dispatch-window", cfg.DispatchWindow, "how long a dispatch retries an unreachable Migrator before the step fails")
	f.duration(&cfg.PreviewTimeout, "preview-timeout", cfg.PreviewTimeout, "how long a preview waits for the Migrator")
	f.string(&cors, "cors-origins", "", "browser origins allowed to call the API, comma-separated; * for any")
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
	if err := lc.validate(); err != nil {
		return cfg, lc, err
	}
	return cfg, lc, cfg.Validate()
}
