// Package server is Loom's composition root: it turns a Config into a
// running control plane (the Connect API on one port, its Redis store, the
// Temporal worker that executes Runs, gRPC health and reflection) and stops
// it gracefully.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/api"
	"github.com/loomhq/loom/server/internal/console"
	"github.com/loomhq/loom/server/internal/dispatch"
	"github.com/loomhq/loom/server/internal/engine"
	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/store"
	"github.com/loomhq/loom/server/telemetry"
)

// Config is everything the server needs. Zero values take the defaults of
// DefaultConfig.
type Config struct {
	// Addr is the address the API listens on, e.g. "127.0.0.1:8080" or ":8080".
	Addr string
	// AdminAddr is where /metrics (Prometheus), /healthz and /readyz are
	// served, apart from the API; empty serves none of them.
	AdminAddr string
	// TracerProvider records the server's spans; nil uses OpenTelemetry's
	// global provider (see telemetry.TracingFromEnv).
	TracerProvider trace.TracerProvider
	// Redis is where Migrations, Candidates and Run views live.
	Redis RedisConfig
	// Temporal is where Runs execute.
	Temporal TemporalConfig
	// DispatchWindow is how long a dispatch retries an unreachable Migrator
	// before the step fails.
	DispatchWindow time.Duration
	// DispatchLease is how long a Migrator may hold an accepted step
	// without a report before it is dispatched again, for Migrations that
	// set no lease of their own.
	DispatchLease time.Duration
	// ReconcileEvery is how often the server brings the views of Runs whose
	// workflow ended back in line with the engine (a first pass a minute
	// after start); 0 never does (RunService.ReconcileRuns still does).
	ReconcileEvery time.Duration
	// PreviewTimeout bounds a Migrator's answer to a preview.
	PreviewTimeout time.Duration
	// CORSOrigins are the browser origins allowed to call the API, e.g.
	// "https://console.example.com"; "*" allows any. Empty: same origin only.
	CORSOrigins []string
	// NoConsole turns off the browser console served at / (the API's paths
	// are the same either way).
	NoConsole bool
	// ShutdownTimeout bounds how long a stop waits for calls in flight.
	ShutdownTimeout time.Duration
	// Security: authentication, keys, limits and the Migrator address
	// policy.
	Security SecurityConfig
	// TLS of the API and of calls to Migrators.
	TLS TLSConfig
}

// TemporalConfig says how to reach Temporal.
type TemporalConfig struct {
	// HostPort is the frontend address, e.g. "127.0.0.1:7233".
	HostPort  string
	Namespace string
	// TaskQueue is where this server's worker takes Runs from; every
	// replica of one Loom uses the same.
	TaskQueue string
}

// DefaultConfig is the configuration of a local server.
func DefaultConfig() Config {
	return Config{
		Addr:      "127.0.0.1:8080",
		AdminAddr: "127.0.0.1:8081",
		Redis:     RedisConfig{Addrs: []string{"127.0.0.1:6379"}, WaitReplicas: -1, WaitTimeout: store.DefaultWaitTimeout},
		Temporal: TemporalConfig{
			HostPort:  "127.0.0.1:7233",
			Namespace: "default",
			TaskQueue: engine.DefaultTaskQueue,
		},
		DispatchWindow:  time.Hour,
		DispatchLease:   10 * time.Minute,
		ReconcileEvery:  time.Hour,
		PreviewTimeout:  time.Minute,
		ShutdownTimeout: 15 * time.Second,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Addr == "" {
		return errors.New("addr: must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("addr: %w", err)
	}
	if c.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
			return fmt.Errorf("admin addr: %w", err)
		}
	}
	if len(c.Redis.Addrs) == 0 {
		return errors.New("redis addr: at least one address is needed")
	}
	if c.Redis.WaitTimeout < 0 || c.Redis.WaitTimeout >= store.CallTimeout {
		return fmt.Errorf("redis wait timeout: from 0 (1 s) to below %v, the read timeout of Redis's connections", store.CallTimeout)
	}
	if c.Temporal.HostPort == "" || c.Temporal.Namespace == "" || c.Temporal.TaskQueue == "" {
		return errors.New("temporal: address, namespace and task queue are needed")
	}
	if c.DispatchWindow <= 0 || c.PreviewTimeout <= 0 || c.DispatchLease < 10*time.Second {
		return errors.New("dispatch window and preview timeout: must be positive; dispatch lease: at least 10s")
	}
	if err := c.Security.validate(); err != nil {
		return err
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls: give both the certificate and the key file")
	}
	if c.ShutdownTimeout <= 0 {
		return errors.New("shutdown timeout: must be positive")
	}
	return nil
}

// Server is a Loom control plane.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    *store.Store
	temporal *engine.Client
	worker   *engine.Worker
	handler  http.Handler
	admin    http.Handler
	tls      *tls.Config
	metrics  *telemetry.Metrics
	runs     *migration.Runs
	// tokens is the tokens file, reread while serving; nil without one.
	tokens *auth.FileTokens
	// sweepNow asks the sweeper of deleted Migrations to run at once (a
	// Migration was just deleted), not at its next interval.
	sweepNow chan struct{}
}

// RedisConfig says how to reach Redis: a server, or Redis Cluster.
type RedisConfig struct {
	// Addrs is one address, or several (seed nodes) for Redis Cluster.
	Addrs    []string
	Username string
	Password string
	// DB is the database number; not with Redis Cluster.
	DB int
	// WaitReplicas is how many replicas must acknowledge each of Loom's
	// writes (Redis WAIT, on the write's connection) before Loom answers
	// for it: a master that crashes then cannot lose a write Loom
	// reported done. 0 waits for none; < 0 (DefaultConfig) is 1 on Redis
	// Cluster (several Addrs) and 0 on a single server. A write fewer
	// replicas acknowledge within WaitTimeout stands, with a warning and
	// loom_redis_replica_shortfalls_total (docs/production.md).
	WaitReplicas int
	// WaitTimeout bounds that wait (0: 1 s); below 5 s.
	WaitTimeout time.Duration
}

// New connects to Redis and Temporal and builds the API and the worker.
// Close releases what it opened.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	sec, err := buildSecurity(ctx, cfg.Security, cfg.TLS)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := serverTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	if cfg.Security.Insecure {
		log.Warn("authentication is OFF (-insecure-no-auth): anyone who reaches the port can announce Migrations and drive Runs")
	}
	metrics, err := telemetry.NewMetrics()
	if err != nil {
		return nil, err
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	// Callers and Migrators are authenticated: their trace context is
	// trusted, so one trace follows a step from StartRun to the Migrator's
	// report.
	rpcTelemetry, err := otelconnect.NewInterceptor(otelconnect.WithTracerProvider(tp),
		otelconnect.WithMeterProvider(metrics.Provider), otelconnect.WithPropagator(telemetry.Propagator()),
		otelconnect.WithTrustRemote())
	if err != nil {
		return nil, fmt.Errorf("rpc telemetry: %w", err)
	}
	st, err := store.Open(ctx, store.Options(cfg.Redis))
	if err != nil {
		return nil, err
	}
	tc, err := engine.Dial(ctx, engine.DialOptions{
		HostPort:  cfg.Temporal.HostPort,
		Namespace: cfg.Temporal.Namespace,
		Logger:    log,
		Tracer:    tp.Tracer("github.com/loomhq/loom/server/engine"),
		Meter:     metrics.Meter("go.temporal.io/sdk"),
	})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	if d, err := st.Durability(ctx); err != nil {
		log.Warn("could not read Redis persistence settings", "error", err)
	} else if !d.AOF {
		log.Warn("Redis has no append-only file: a Redis restart loses Migrations, Candidates and Run views; run it with --appendonly yes --appendfsync everysec")
	}
	s := &Server{cfg: cfg, log: log, store: st, temporal: tc, tls: tlsCfg, metrics: metrics, tokens: sec.tokens, sweepNow: make(chan struct{}, 1)}
	// A delete answers once its Migration is gone from every read; its keys
	// are swept by sweepDeletedEvery, woken here.
	st.SweepDeletesLater(func(string) {
		select {
		case s.sweepNow <- struct{}{}:
		default: // a sweep is due already: it takes every deleted Migration
		}
	})
	meter := metrics.Meter("github.com/loomhq/loom/server")
	if err := s.observeRuns(meter); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.observeReplicaWait(meter); err != nil {
		s.Close()
		return nil, err
	}
	migrators := dispatch.New(dispatch.Options{Policy: sec.policy, Signer: sec.signer, Callbacks: sec.callbacks, TLS: sec.migrTLS,
		Meter: meter, ClientOptions: []connect.ClientOption{connect.WithInterceptors(rpcTelemetry)}})
	acts := &engine.Activities{Store: st, Migrators: migrators, Rollouts: st}
	s.worker = tc.NewWorker(cfg.Temporal.TaskQueue, acts)
	now := func() time.Time { return time.Now().UTC() }
	s.runs = &migration.Runs{
		Store: st,
		Engine: tc.Engine(engine.Options{
			TaskQueue:      cfg.Temporal.TaskQueue,
			DispatchWindow: cfg.DispatchWindow,
			DispatchLease:  cfg.DispatchLease,
		}),
		Migrators:      migrators,
		Now:            now,
		PreviewTimeout: cfg.PreviewTimeout,
	}
	acts.Runs = s.runs
	rollouts := &migration.Rollouts{Store: st, Rollout: st, Engine: s.runs.Engine.(*engine.Engine), Runs: s.runs, Now: now}
	var sessions *auth.Sessions
	if sec.authn != nil {
		// In Redis, like everything else: every replica knows every
		// session, and a restart signs nobody out.
		sessions = &auth.Sessions{Store: st, Authn: sec.authn,
			Lifetime: cfg.Security.SessionLifetime, Idle: cfg.Security.SessionIdleTimeout}
	}
	s.handler = api.NewHandler(api.Options{
		Registry:        &migration.Registry{Store: st, Now: now, CheckURL: sec.policy.CheckURL},
		Discovery:       &migration.Discovery{Store: st, Now: now},
		Runs:            s.runs,
		Rollouts:        rollouts,
		History:         &migration.History{Store: st, Now: now},
		Metrics:         &migration.Metrics{Store: st, Now: now},
		Logger:          log,
		Ready:           s.ready,
		CORSOrigins:     cfg.CORSOrigins,
		Authenticator:   sec.authn,
		Sessions:        sessions,
		Callbacks:       sec.callbacks,
		Signer:          sec.signer,
		RateLimit:       cfg.Security.RateLimit,
		Burst:           cfg.Security.Burst,
		MaxRequestBytes: cfg.Security.MaxRequestBytes,
		ProtectHealth:   cfg.Security.ProtectHealth,
		Telemetry:       rpcTelemetry,
		Meter:           meter,
		Console:         consoleHandler(cfg, sec),
	})
	s.admin = s.adminHandler()
	return s, nil
}

// Handler is the server's HTTP handler, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves the API on cfg.Addr, and the admin endpoints on cfg.AdminAddr,
// until ctx is done, then stops gracefully: it stops accepting calls and
// waits up to ShutdownTimeout for those in flight.
func (s *Server) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	var admin net.Listener
	if s.cfg.AdminAddr != "" {
		if admin, err = net.Listen("tcp", s.cfg.AdminAddr); err != nil {
			l.Close()
			return fmt.Errorf("listen on %s (admin): %w", s.cfg.AdminAddr, err)
		}
	}
	return s.Serve(ctx, l, admin)
}

// Serve is Run on listeners the caller opened: the API's and the admin
// endpoints' (nil serves no admin endpoints).
func (s *Server) Serve(ctx context.Context, l, admin net.Listener) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if s.tls != nil {
		protocols.SetHTTP2(true)
		l = tls.NewListener(l, s.tls)
	} else {
		// Cleartext HTTP/2 (h2c) so gRPC clients work without TLS.
		protocols.SetUnencryptedHTTP2(true)
	}
	hs := &http.Server{
		Handler:           s.handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if err := s.worker.Start(); err != nil {
		return err
	}
	// The worker stops after the API: calls in flight may wait on Runs.
	defer s.worker.Stop()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(l) }()
	if s.cfg.ReconcileEvery > 0 {
		rctx, stopReconciling := context.WithCancel(ctx)
		defer stopReconciling()
		go s.reconcileEvery(rctx, time.Minute, s.cfg.ReconcileEvery)
	}
	dctx, stopSweeping := context.WithCancel(ctx)
	defer stopSweeping()
	go s.sweepDeletedEvery(dctx, sweepDeletedInterval)
	if s.tokens != nil {
		tctx, stopReloading := context.WithCancel(ctx)
		defer stopReloading()
		go reloadTokens(tctx, s.tokens, tokensReloadEvery, s.log)
	}
	if admin != nil {
		as := &http.Server{Handler: s.admin, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
		go func() { _ = as.Serve(admin) }()
		// Probes answer until the very end: the admin server closes last.
		defer as.Close()
		s.log.Info("admin endpoints are serving", "addr", admin.Addr().String(), "paths", "/metrics /healthz /readyz")
	}
	for _, warning := range s.store.CheckSettings(ctx) {
		s.log.Warn(warning)
	}
	s.log.Info("loom is serving", "addr", l.Addr().String(),
		"temporal", s.cfg.Temporal.HostPort, "namespace", s.cfg.Temporal.Namespace, "task_queue", s.cfg.Temporal.TaskQueue)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("stopping: waiting for calls in flight", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		// Calls still running past the timeout (a watcher, a slow report) are
		// cut: their clients retry. Nothing is lost: Runs live in Temporal.
		s.log.Warn("stopped before every call finished: the rest were cut", "timeout", s.cfg.ShutdownTimeout, "error", err)
		_ = hs.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// reconcileEvery runs the reconciler after first, then every every, until
// ctx ends. Every replica does: the fixes are idempotent.
func (s *Server) reconcileEvery(ctx context.Context, first, every time.Duration) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rep, err := s.runs.Reconcile(ctx, "")
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("reconciling the run views failed; trying again later", "error", err, "retry_in", every)
		case len(rep.Fixed) > 0:
			for _, f := range rep.Fixed {
				s.log.Warn("run view reconciled with the engine", "run_id", f.RunID, "status", string(f.Status), "reason", f.Reason)
			}
		}
		t.Reset(every)
	}
}

// sweepDeletedInterval is how often a server looks for deleted Migrations
// whose keys were not all swept away (a delete cut short by a crash or by
// Redis going away), besides once at start.
const sweepDeletedInterval = time.Minute

// sweepDeletedEvery upgrades data of an earlier layout and finishes the
// sweeps of deleted Migrations that were cut short, at start and then every
// every, until ctx ends. Every replica does: both may be repeated.
func (s *Server) sweepDeletedEvery(ctx context.Context, every time.Duration) {
	for {
		// Data of an earlier layout of the store's keys is upgraded first
		// (after that, one GET).
		if n, err := s.store.UpgradeLayout(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("upgrading the store's layout failed; trying again later", "error", err, "retry_in", every)
		} else if n > 0 {
			s.log.Info("upgraded the store's layout", "migrations", n)
		}
		n, err := s.store.SweepDeleted(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("sweeping deleted migrations failed; trying again later", "error", err, "retry_in", every)
		case n > 0:
			s.log.Info("swept the keys of deleted migrations", "migrations", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		case <-s.sweepNow:
		}
	}
}

// Close releases the server's connections.
func (s *Server) Close() error {
	s.temporal.Close()
	_ = s.metrics.Provider.Shutdown(context.Background())
	return s.store.Close()
}

func consoleHandler(cfg Config, sec *security) http.Handler {
	if cfg.NoConsole {
		return nil
	}
	return console.Handler(console.Options{OIDC: sec.signIn})
}
