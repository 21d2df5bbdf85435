// Package devenv runs what `loom dev` needs in-process or as child
// processes: a Temporal server persisted to a SQLite file, a Redis persisted
// in the same data directory (or, without redis-server, an in-memory
// Redis-compatible server), and a lock so that two `loom dev` never share a
// data directory. Run (this file) brings them up with the Loom server and
// the example Migrator; temporal.go, redis.go and credentials.go hold each
// part.
package devenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/loomhq/loom/internal/gomigrator"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/server"
	"github.com/loomhq/loom/server/auth"
)

// Config is a development environment.
type Config struct {
	// DataDir keeps Redis's and Temporal's state, the sample fleet and the
	// lock.
	DataDir string
	// Addr is where the Loom API listens.
	Addr string
	// AdminAddr is where /metrics, /healthz and /readyz are served; empty
	// serves none.
	AdminAddr string
	// NoConsole turns off the browser console at the API's /.
	NoConsole bool
	// CORSOrigins are the browser origins allowed to call the API from
	// another origin (a console served elsewhere, a web client); "*" allows
	// any. Empty: same origin only.
	CORSOrigins []string
	// DispatchWindow is how long a dispatch retries an unreachable Migrator
	// before the step fails; 0 is the server's default (an hour).
	DispatchWindow time.Duration
	// TemporalPort and RedisPort: 0 picks free ports.
	TemporalPort int
	RedisPort    int
	// RedisBinary overrides the redis-server looked up on PATH; "none"
	// forces the in-memory fallback.
	RedisBinary string
	// Example runs the example Migrator over a sample fleet of FleetSize
	// git repositories in DataDir/fleet, listening on ExampleAddr.
	Example     bool
	FleetSize   int
	ExampleAddr string
	Logger      *slog.Logger
	// JWT, when its Issuer is set, also accepts that issuer's tokens, and
	// ConsoleOIDC signs the console in there: single sign-on tried locally.
	// The tokens loom dev writes keep working.
	JWT         auth.JWTConfig
	ConsoleOIDC server.ConsoleOIDC
	// TLS serves the API over https with a self-signed certificate for
	// 127.0.0.1 and localhost, made on the first start in DataDir/tls and
	// reused: browsers then speak HTTP/2 with Loom. Plain h2c is served
	// either way without it.
	TLS bool
}

// Env is a running development environment.
type Env struct {
	// APIURL is the Loom API, e.g. "http://127.0.0.1:8080".
	APIURL string
	// ConsoleURL opens the console signed in as the operator: the token
	// rides in the URL's fragment, which browsers never send to a server
	// ("" when the console is off).
	ConsoleURL string
	// AdminURL serves /metrics, /healthz and /readyz ("" when off).
	AdminURL     string
	DataDir      string
	Persistent   bool
	RedisAddr    string
	TemporalAddr string
	// FleetDir is where the example Migrator's repositories are ("" when it
	// does not run).
	FleetDir string
	// OperatorToken and MigratorToken authenticate a person (role operator)
	// and a Migrator (role migrator, every Migration) with this Loom; their
	// files are OperatorTokenFile and MigratorTokenFile. AdminToken (file
	// AdminTokenFile) is for what only admins may do: DeleteMigration,
	// ReconcileRuns.
	OperatorToken, MigratorToken, AdminToken             string
	OperatorTokenFile, MigratorTokenFile, AdminTokenFile string
	// TokensFile holds the hashes of every token this Loom accepts; it is
	// reread when it changes, so a token added to it (loom tokens create
	// -add-to) works within seconds.
	TokensFile string
	// CertFile is the certificate of the API with TLS ("" without): trust
	// it (curl --cacert, grpcurl -cacert) or accept the browser's warning.
	CertFile string
}

// Run starts Redis, Temporal, the Loom server and, if asked, the example
// Migrator, calls ready once the API answers, and stops everything in
// reverse order when ctx ends.
func Run(ctx context.Context, cfg Config, ready func(Env)) (err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	release, err := Lock(dir)
	if err != nil {
		return err
	}
	defer release()

	rds, err := StartRedis(ctx, RedisOptions{Dir: dir, Port: cfg.RedisPort, Binary: cfg.RedisBinary, Logger: log})
	if err != nil {
		return err
	}
	defer rds.Stop()

	// Temporal and Redis persist together or not at all: Runs never outlive
	// their Candidates, nor the reverse.
	tdir := filepath.Join(dir, "temporal")
	if !rds.Persistent() {
		tdir = ""
	}
	tmp, err := StartTemporal(ctx, TemporalOptions{Dir: tdir, FrontendPort: cfg.TemporalPort, Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		if serr := tmp.Stop(); serr != nil && err == nil {
			err = fmt.Errorf("stop temporal: %w", serr)
		}
	}()

	creds, err := ensureCredentials(dir)
	if err != nil {
		return err
	}
	scfg := server.DefaultConfig()
	scfg.Addr = cfg.Addr
	scfg.NoConsole = cfg.NoConsole
	scfg.CORSOrigins = cfg.CORSOrigins
	if cfg.DispatchWindow > 0 {
		scfg.DispatchWindow = cfg.DispatchWindow
	}
	scfg.Security.TokensFile = creds.tokensFile
	scfg.Security.KeysFile = creds.keysFile
	scfg.Security.JWT = cfg.JWT
	scfg.Security.ConsoleOIDC = cfg.ConsoleOIDC
	// Migrators run on this machine in development.
	scfg.Security.AllowMigratorNets = []string{"127.0.0.0/8", "::1/128"}
	scfg.Security.RateLimit = 0
	scheme := "http"
	if cfg.TLS {
		if scfg.TLS.CertFile, scfg.TLS.KeyFile, err = ensureDevCert(dir, time.Now()); err != nil {
			return err
		}
		scheme = "https"
	}
	scfg.Redis.Addrs = []string{rds.Addr()}
	scfg.Temporal.HostPort = tmp.HostPort()
	scfg.Temporal.Namespace = tmp.Namespace()
	// A development server stops at once: nobody waits on it.
	scfg.ShutdownTimeout = 5 * time.Second
	srv, err := server.New(ctx, scfg, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	var admin net.Listener
	if cfg.AdminAddr != "" {
		if admin, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			l.Close()
			return fmt.Errorf("listen on %s (admin): %w", cfg.AdminAddr, err)
		}
	}
	sctx, stopServer := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, l, admin) }()
	defer func() {
		stopServer()
		if serr := <-served; serr != nil && err == nil {
			err = serr
		}
	}()

	env := Env{
		APIURL:            scheme + "://" + l.Addr().String(),
		CertFile:          scfg.TLS.CertFile,
		AdminURL:          adminURL(admin),
		DataDir:           dir,
		Persistent:        rds.Persistent() && tmp.Persistent(),
		RedisAddr:         rds.Addr(),
		TemporalAddr:      tmp.HostPort(),
		OperatorToken:     creds.operator,
		MigratorToken:     creds.migrator,
		OperatorTokenFile: creds.operatorFile,
		MigratorTokenFile: creds.migratorFile,
		AdminToken:        creds.admin,
		AdminTokenFile:    creds.adminFile,
		TokensFile:        creds.tokensFile,
	}
	if !cfg.NoConsole {
		env.ConsoleURL = env.APIURL + "/#token=" + url.QueryEscape(creds.operator)
	}
	if cfg.Example {
		env.FleetDir = filepath.Join(dir, "fleet")
		stopExample, err := startExample(ctx, cfg, env, log)
		if err != nil {
			return err
		}
		defer stopExample()
	}
	if ready != nil {
		ready(env)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-served:
		served <- err // for the deferred stop
		return err
	}
}

// startExample generates the sample fleet (once) and runs the example
// Migrator against the server until stop is called. It returns once the
// Migration is announced and its Candidates submitted.
func startExample(ctx context.Context, cfg Config, env Env, log *slog.Logger) (stop func(), err error) {
	if err := gomigrator.GenerateFleet(ctx, env.FleetDir, cfg.FleetSize); err != nil {
		return nil, fmt.Errorf("generate the sample fleet: %w", err)
	}
	l, err := net.Listen("tcp", cfg.ExampleAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for the example migrator on %s: %w", cfg.ExampleAddr, err)
	}
	client := migratorsdk.DefaultHTTPClient()
	if env.CertFile != "" {
		pool, err := devCertPool(env.CertFile)
		if err != nil {
			l.Close()
			return nil, err
		}
		client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	m, err := migratorsdk.New(gomigrator.Spec(env.FleetDir), migratorsdk.Options{
		LoomURL:         env.APIURL,
		HTTPClient:      client,
		Token:           env.MigratorToken,
		ListenAddr:      l.Addr().String(),
		Logger:          log.With("component", "example-migrator"),
		MergeCheckEvery: 2 * time.Second,
		ShutdownTimeout: 3 * time.Second,
	})
	if err != nil {
		l.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(m.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(l) }()
	mctx, cancel := context.WithCancel(context.Background())
	stop = func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer scancel()
		_ = hs.Shutdown(sctx)
		m.Stop(sctx)
	}
	sctx, scancel := context.WithTimeout(ctx, time.Minute)
	defer scancel()
	if err := startUntil(sctx, mctx, m); err != nil {
		stop()
		return nil, fmt.Errorf("start the example migrator: %w", err)
	}
	return stop, nil
}

// startUntil starts m's background work for the life of mctx, giving up if
// the announce has not succeeded when limit ends.
func startUntil(limit, mctx context.Context, m *migratorsdk.Migrator) error {
	started := make(chan error, 1)
	go func() { started <- m.Start(mctx) }()
	select {
	case err := <-started:
		return err
	case <-limit.Done():
		return limit.Err()
	}
}

func adminURL(l net.Listener) string {
	if l == nil {
		return ""
	}
	return "http://" + l.Addr().String()
}
