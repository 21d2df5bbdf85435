// Package clusterenv starts, on this machine, the topology Loom runs in
// production, with real components, each a process of its own on free
// loopback ports in one directory:
//
//   - PostgreSQL: a private cluster (initdb, postgres) in the directory;
//   - a Temporal server persisted in it (./internal/clusterenv/temporalserver,
//     which creates its schema with Temporal's own SQL schema tool);
//   - a Redis Cluster of 3 masters and 3 replicas (redis-server with
//     --cluster-enabled yes, joined by redis-cli --cluster create);
//   - Loom replicas, `loom serve` on the same task queue, keys file and
//     tokens file, against that Temporal and that Redis Cluster;
//   - the example Migrator (cmd/example-migrator) over a generated fleet of
//     git repositories, announced to one replica.
//
// The cluster test (this package's test) and `go run ./cmd/loom-cluster`
// start it. It never uses the machine's own PostgreSQL or Redis: a missing
// binary (initdb, postgres, redis-server, redis-cli, git, go) is an error
// that says what to install.
package clusterenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loomhq/loom/internal/freeport"
)

// Options configure an environment.
type Options struct {
	// Dir holds everything (data, logs, binaries); it must exist.
	Dir string
	// Replicas is the number of `loom serve` processes; default 3.
	Replicas int
	// Fleet is how many repositories the example Migrator's fleet has (a
	// fifth of them are already up to date, so not Candidates); default 10.
	Fleet int
	// BinDir holds loom, example-migrator and temporalserver already
	// built; "" builds them into Dir/bin with the go command.
	BinDir string
	// MigratorReplica is the replica the Migrator announces to and reports
	// through; default 1 (the second).
	MigratorReplica int
	// Log receives progress; default none.
	Log *slog.Logger
}

// Env is a running environment.
type Env struct {
	Dir string
	Bin string
	// TemporalAddr is the Temporal frontend; Namespace, Loom's namespace.
	TemporalAddr, Namespace string
	// PostgresAddr is the private PostgreSQL.
	PostgresAddr string
	// Redis is the Redis Cluster's nodes, the first three its masters at
	// creation.
	Redis []*RedisNode
	// Replicas are the `loom serve` processes.
	Replicas []*Replica
	// Migrator is the example Migrator.
	Migrator *Process
	// Tokens by role: operator, viewer, admin, migrator (Migration
	// go-directive).
	Tokens map[string]string

	postgres, temporal *Process
	pgDir              string
	log                *slog.Logger
	mu                 sync.Mutex
	stopped            bool
}

// TaskQueue is the Temporal task queue every replica works.
const TaskQueue = "loom-runs"

// Start starts the environment; Stop stops it. On error, what was started
// is stopped.
func Start(ctx context.Context, o Options) (_ *Env, err error) {
	if o.Replicas == 0 {
		o.Replicas = 3
	}
	if o.Fleet == 0 {
		o.Fleet = 10
	}
	if o.MigratorReplica == 0 && o.Replicas > 1 {
		o.MigratorReplica = 1
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := lookBinaries(); err != nil {
		return nil, err
	}
	e := &Env{Dir: o.Dir, Namespace: "default", Tokens: map[string]string{}, log: o.Log}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	began := time.Now()
	e.Bin = o.BinDir
	if e.Bin == "" {
		e.Bin = filepath.Join(o.Dir, "bin")
		if err := Build(ctx, e.Bin); err != nil {
			return nil, err
		}
		e.log.Info("built loom, example-migrator and temporalserver", "took", time.Since(began).Round(time.Millisecond))
	}
	// PostgreSQL and the Redis Cluster do not depend on each other: start
	// them side by side.
	var wg sync.WaitGroup
	var pgErr, redisErr error
	wg.Go(func() { pgErr = e.startPostgres(ctx) })
	wg.Go(func() { redisErr = e.startRedisCluster(ctx) })
	wg.Wait()
	if err := errors.Join(pgErr, redisErr); err != nil {
		return nil, err
	}
	e.log.Info("PostgreSQL and the Redis Cluster answer", "postgres", e.PostgresAddr, "redis", e.RedisAddrs(), "after", time.Since(began).Round(time.Millisecond))
	if err := e.startTemporal(ctx); err != nil {
		return nil, err
	}
	e.log.Info("Temporal answers", "addr", e.TemporalAddr, "after", time.Since(began).Round(time.Millisecond))
	if err := e.credentials(ctx); err != nil {
		return nil, err
	}
	for i := range o.Replicas {
		r, err := e.newReplica(i)
		if err != nil {
			return nil, err
		}
		e.Replicas = append(e.Replicas, r)
	}
	// Replicas start side by side, each waited for until ready.
	errs := make([]error, len(e.Replicas))
	for i, r := range e.Replicas {
		wg.Go(func() { errs[i] = r.Start(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	e.log.Info("Loom replicas ready", "urls", e.URLs(), "after", time.Since(began).Round(time.Millisecond))
	if err := e.startMigrator(ctx, o.Fleet, e.Replicas[o.MigratorReplica]); err != nil {
		return nil, err
	}
	e.log.Info("the example Migrator serves", "reports_to", e.Replicas[o.MigratorReplica].URL, "after", time.Since(began).Round(time.Millisecond))
	return e, nil
}

// lookBinaries fails with what to install when a binary is missing.
func lookBinaries() error {
	var missing []string
	for _, bin := range []string{"initdb", "postgres"} {
		if _, err := pgBinary(bin); err != nil {
			missing = append(missing, err.Error())
		}
	}
	for bin, hint := range map[string]string{
		"redis-server": "apt-get install -y redis-server",
		"redis-cli":    "apt-get install -y redis-tools",
		"git":          "apt-get install -y git (the example Migrator's fleet is git repositories)",
		"go":           "Go, to build loom, example-migrator and temporalserver",
	} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s is not on PATH (install: %s)", bin, hint))
		}
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}

// pgBinary finds a PostgreSQL server binary: on PATH, else where Debian's
// packages put them, /usr/lib/postgresql/<version>/bin (the newest).
func pgBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	found, _ := filepath.Glob(filepath.Join("/usr/lib/postgresql", "*", "bin", name))
	sort.Slice(found, func(i, j int) bool { return pgVersion(found[i]) > pgVersion(found[j]) })
	if len(found) == 0 {
		return "", fmt.Errorf("%s is not on PATH nor in /usr/lib/postgresql/*/bin (install PostgreSQL's server: apt-get install -y postgresql)", name)
	}
	return found[0], nil
}

// pgVersion is the major version in /usr/lib/postgresql/<version>/bin/x.
func pgVersion(path string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return v
}

// Build builds loom, example-migrator and temporalserver into dir with the
// go command, from the module this package belongs to.
func Build(ctx context.Context, dir string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"./cmd/loom", "./cmd/example-migrator", "./internal/clusterenv/temporalserver")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

// moduleRoot is the directory of Loom's go.mod, found from this process's
// working directory (a test runs in its package's directory).
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside Loom's module: run from its repository")
	}
	return filepath.Dir(gomod), nil
}

// Stop stops everything, in the order that loses nothing: the Migrator,
// the replicas, Temporal, then the stores.
func (e *Env) Stop() {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return
	}
	e.stopped = true
	e.mu.Unlock()
	if e.Migrator != nil {
		e.Migrator.Stop(5 * time.Second)
	}
	var wg sync.WaitGroup
	for _, r := range e.Replicas {
		wg.Go(func() { r.Stop() })
	}
	wg.Wait()
	if e.temporal != nil {
		e.temporal.Stop(10 * time.Second)
	}
	for _, n := range e.Redis {
		wg.Go(func() { n.Stop() })
	}
	if e.postgres != nil {
		// SIGINT is PostgreSQL's fast shutdown.
		_ = e.postgres.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-e.postgres.Done():
		case <-time.After(10 * time.Second):
			e.postgres.Kill()
		}
	}
	wg.Wait()
	if e.pgDir != "" {
		_ = os.RemoveAll(e.pgDir)
	}
}

// URLs are the replicas' API URLs.
func (e *Env) URLs() []string {
	var out []string
	for _, r := range e.Replicas {
		out = append(out, r.URL)
	}
	return out
}

// RedisAddrs are the Redis Cluster's node addresses.
func (e *Env) RedisAddrs() []string {
	var out []string
	for _, n := range e.Redis {
		out = append(out, n.Addr)
	}
	return out
}

// startPostgres makes a private PostgreSQL cluster and starts it. As root
// (PostgreSQL refuses to run as root) it runs as the user postgres, in a
// directory of its own under the system's temporary directory, which that
// user can reach.
func (e *Env) startPostgres(ctx context.Context) error {
	var cred *syscall.Credential
	dir := filepath.Join(e.Dir, "postgres")
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("PostgreSQL does not run as root and there is no user postgres to run it as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if dir, err = os.MkdirTemp("", "loom-cluster-pg-"); err != nil {
			return err
		}
		e.pgDir = dir
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	port, err := freeport.Pick()
	if err != nil {
		return err
	}
	data := filepath.Join(dir, "data")
	initLog := filepath.Join(e.Dir, "initdb.log")
	initdbBin, err := pgBinary("initdb")
	if err != nil {
		return err
	}
	postgresBin, err := pgBinary("postgres")
	if err != nil {
		return err
	}
	initdb, err := startProcess("initdb", initLog, cred, nil, initdbBin, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	if err != nil {
		return err
	}
	select {
	case <-initdb.Done():
		if initdb.err != nil {
			return initdb.exited()
		}
	case <-ctx.Done():
		initdb.Kill()
		return ctx.Err()
	}
	e.PostgresAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// fsync off: this PostgreSQL is never crashed by the tests, and on a
	// loaded machine the cluster test should wait for Loom, not for disks.
	e.postgres, err = startProcess("postgres", filepath.Join(e.Dir, "postgres.log"), cred, nil, postgresBin,
		"-D", data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200")
	if err != nil {
		return err
	}
	return e.postgres.await(ctx, time.Minute, func() bool { return dialable(e.PostgresAddr) })
}

// startTemporal starts the Temporal server on PostgreSQL and waits until
// it has registered Loom's namespace.
func (e *Env) startTemporal(ctx context.Context) error {
	port, err := freeport.Pick()
	if err != nil {
		return err
	}
	ready := filepath.Join(e.Dir, "temporal.ready")
	e.TemporalAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	e.temporal, err = startProcess("temporalserver", filepath.Join(e.Dir, "temporal.log"), nil, nil, filepath.Join(e.Bin, "temporalserver"),
		"-pg", e.PostgresAddr, "-port", strconv.Itoa(port), "-namespace", e.Namespace, "-ready-file", ready)
	if err != nil {
		return err
	}
	return e.temporal.await(ctx, 2*time.Minute, func() bool { _, err := os.Stat(ready); return err == nil })
}

// credentials makes the keys file and the tokens file every replica reads,
// with loom's own admin commands.
func (e *Env) credentials(ctx context.Context) error {
	loom := filepath.Join(e.Bin, "loom")
	if out, err := exec.CommandContext(ctx, loom, "keys", "init", "-out", e.keysFile()).CombinedOutput(); err != nil {
		return fmt.Errorf("loom keys init: %v: %s", err, out)
	}
	for role, extra := range map[string][]string{
		"operator": nil, "viewer": nil, "admin": nil,
		"migrator": {"-migrations", "go-directive"},
	} {
		args := append([]string{"tokens", "create", "-subject", "cluster-" + role, "-role", role, "-add-to", e.tokensFile()}, extra...)
		cmd := exec.CommandContext(ctx, loom, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("loom tokens create -role %s: %v: %s", role, err, stderr.String())
		}
		e.Tokens[role] = strings.TrimSpace(string(out))
	}
	return nil
}

func (e *Env) keysFile() string   { return filepath.Join(e.Dir, "keys.json") }
func (e *Env) tokensFile() string { return filepath.Join(e.Dir, "tokens.json") }

// startMigrator starts the example Migrator over a generated fleet,
// announcing to and reporting through r.
func (e *Env) startMigrator(ctx context.Context, fleet int, r *Replica) error {
	listen, err := freeport.Pick()
	if err != nil {
		return err
	}
	e.Migrator, err = startProcess("example-migrator", filepath.Join(e.Dir, "migrator.log"), nil, []string{"LOOM_TOKEN=" + e.Tokens["migrator"]},
		filepath.Join(e.Bin, "example-migrator"), "-loom", r.URL, "-listen", "127.0.0.1:"+strconv.Itoa(listen),
		"-fleet", filepath.Join(e.Dir, "fleet"), "-generate", strconv.Itoa(fleet))
	if err != nil {
		return err
	}
	return e.Migrator.await(ctx, time.Minute, func() bool { return dialable("127.0.0.1:" + strconv.Itoa(listen)) })
}

// dialable reports whether something accepts connections at addr.
func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// httpOK reports whether url answers 200.
func httpOK(url string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}
