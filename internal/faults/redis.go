package faults

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/loomhq/loom/internal/devenv"
	"github.com/loomhq/loom/internal/freeport"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/server"
)

// redisServer is a redis-server child process on a fixed port and data
// directory, killed and started again at will, as Loom's production Redis
// should run: append-only file, fsync on every write.
type redisServer struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedis(dir string) (*redisServer, error) {
	port, err := freeport.Pick()
	if err != nil {
		return nil, err
	}
	r := &redisServer{dir: dir, port: port}
	return r, r.start()
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisServer) start() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server is needed (apt-get install -y redis-server): %w", err)
	}
	var lastErr error
	for try := 0; try < 50; try++ { // the port may linger a moment after a kill
		r.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port), "--dir", r.dir,
			"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", filepath.Join(r.dir, "redis.log"))
		r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if lastErr = r.cmd.Start(); lastErr != nil {
			return lastErr
		}
		r.done = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(r.cmd, r.done)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if pong(r.addr()) {
				return nil
			}
			select {
			case <-r.done:
				lastErr = fmt.Errorf("redis-server exited at start")
			default:
				continue
			}
			break
		}
		r.kill()
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %d: %w", r.port, lastErr)
}

// kill SIGKILLs the server: whatever it had not written is lost.
func (r *redisServer) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

func pong(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// RedisOutageConfig is one Redis outage.
type RedisOutageConfig struct {
	Runs, Steps int
	// Outage is how long Redis stays down.
	Outage time.Duration
	// Log receives Loom's logs (nil: none).
	Log *slog.Logger
}

// RedisOutage runs cfg.Runs Runs, kills redis-server once a third of them
// started, keeps it down for cfg.Outage, starts it again on the same data,
// and counts what the outage cost.
func RedisOutage(ctx context.Context, cfg RedisOutageConfig) (Report, error) {
	rep := Report{Scenario: fmt.Sprintf("Redis SIGKILLed for %v with %d Runs of %d steps in flight", cfg.Outage, cfg.Runs, cfg.Steps), Runs: cfg.Runs}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	st, err := startStack(ctx, log)
	if err != nil {
		return rep, err
	}
	defer st.stop()
	rds, url := st.redis, st.url
	ids := candidateIDs(cfg.Runs)
	execs := newExecutions()
	mlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return rep, err
	}
	m, err := migratorsdk.New(migratorsdk.Spec{
		Migration: migratorsdk.Migration{ID: "outage", Name: "Outage", Steps: stepsOf(cfg.Steps)},
		Handlers: map[string]migratorsdk.StepHandler{"work": func(ctx context.Context, d *migratorsdk.Dispatch) error {
			time.Sleep(20 * time.Millisecond) // some work
			if err := d.Completed(ctx); err != nil {
				return err
			}
			execs.completed(key(d))
			return nil
		}},
		Discover: migratorCandidates(ids),
	}, migratorsdk.Options{LoomURL: url, ListenAddr: mlis.Addr().String(), Logger: log})
	if err != nil {
		return rep, err
	}
	mux := http.NewServeMux()
	mux.Handle(m.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(mlis) }()
	defer hs.Close()
	mctx, stopMigrator := context.WithCancel(context.Background())
	defer stopMigrator()
	if err := m.Start(mctx); err != nil {
		return rep, err
	}
	a := newAPI(url, "")
	if err := a.waitCandidates(ctx, "outage", cfg.Runs); err != nil {
		return rep, err
	}

	// A third of the Runs start, Redis dies, the rest are started during
	// the outage (StartRun answers unavailable until it is back).
	third := max(cfg.Runs/3, 1)
	if err := a.startRuns(ctx, "outage", ids[:third]); err != nil {
		return rep, err
	}
	time.Sleep(100 * time.Millisecond)
	rds.kill()
	killed := time.Now()
	startErr := make(chan error, 1)
	go func() { startErr <- a.startRuns(ctx, "outage", ids[third:]) }()
	select {
	case <-ctx.Done():
		return rep, ctx.Err()
	case <-time.After(cfg.Outage):
	}
	if err := rds.start(); err != nil {
		return rep, fmt.Errorf("start redis-server again: %w", err)
	}
	back := time.Now()
	rep.Notes = append(rep.Notes, fmt.Sprintf("redis-server down %v", back.Sub(killed).Round(100*time.Millisecond)))
	if err := <-startErr; err != nil {
		return rep, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	last, done := a.awaitCompleted(wctx, "outage", ids)
	rep.Completed, rep.Lost = done, cfg.Runs-done
	rep.Notes = append(rep.Notes, a.describeLost(ctx, a.lost)...)
	if done > 0 {
		rep.Recovery = last.Sub(back)
	}
	rep.Doubled = execs.doubled()
	var notes []string
	rep.EventsLost, rep.EventsDoubled, notes = a.checkHistories(ctx, "outage", ids, cfg.Steps)
	rep.Notes = append(rep.Notes, notes...)
	rep.Disagree = viewsDisagree(ctx, st.temporal.HostPort(), st.temporal.Namespace(), a, "outage", ids, &rep.Notes)
	return rep, nil
}

// stack is Loom in this process on a redis-server of its own and an
// embedded Temporal, with authentication off.
type stack struct {
	redis    *redisServer
	temporal *devenv.Temporal
	url      string
	stop     func()
}

func startStack(ctx context.Context, log *slog.Logger) (*stack, error) {
	dir, err := os.MkdirTemp("", "loom-faults-")
	if err != nil {
		return nil, err
	}
	var undo []func()
	st := &stack{stop: func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}}
	undo = append(undo, func() { os.RemoveAll(dir) })
	if st.redis, err = startRedis(dir); err != nil {
		st.stop()
		return nil, err
	}
	undo = append(undo, st.redis.kill)
	if st.temporal, err = devenv.StartTemporal(ctx, devenv.TemporalOptions{Logger: log}); err != nil {
		st.stop()
		return nil, err
	}
	undo = append(undo, func() { _ = st.temporal.Stop() })
	scfg := server.DefaultConfig()
	scfg.Addr, scfg.AdminAddr = "127.0.0.1:0", ""
	scfg.Redis.Addrs = []string{st.redis.addr()}
	scfg.Temporal.HostPort, scfg.Temporal.Namespace = st.temporal.HostPort(), st.temporal.Namespace()
	scfg.Security.Insecure = true
	scfg.Security.AllowMigratorNets = []string{"127.0.0.0/8"}
	scfg.Security.RateLimit = 0
	scfg.NoConsole = true
	scfg.ReconcileEvery = 0
	srv, err := server.New(ctx, scfg, log)
	if err != nil {
		st.stop()
		return nil, err
	}
	undo = append(undo, func() { _ = srv.Close() })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		st.stop()
		return nil, err
	}
	sctx, stopServer := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, lis, nil) }()
	undo = append(undo, func() { stopServer(); <-served })
	st.url = "http://" + lis.Addr().String()
	return st, nil
}
