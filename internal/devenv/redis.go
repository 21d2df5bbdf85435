package devenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/loomhq/loom/internal/freeport"
)

// RedisOptions configure the development Redis.
type RedisOptions struct {
	// Dir holds the redis-server's data (Dir/redis).
	Dir string
	// Port is the port to listen on; 0 picks a free one.
	Port int
	// Binary is the redis-server to run; "" looks it up on PATH.
	// "none" forces the in-memory fallback.
	Binary string
	Logger *slog.Logger
}

// Redis is the development Redis: a redis-server child process persisted
// with an append-only file, or, when none is installed, an in-process
// Redis-compatible server that keeps nothing.
type Redis struct {
	addr   string
	cmd    *exec.Cmd
	exited chan error
	mini   *miniredis.Miniredis
}

// StartRedis starts the development Redis.
func StartRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	bin := o.Binary
	if bin == "" {
		bin, _ = exec.LookPath("redis-server")
	}
	if bin == "" || bin == "none" {
		return startMiniredis(o)
	}
	dir := filepath.Join(o.Dir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// A loom dev killed without its cleanup (SIGKILL, a crash) may have left
	// its redis-server running on this directory: two on one append-only
	// file would corrupt it, and the old one holds the port.
	if err := stopStale(dir, o.Logger); err != nil {
		return nil, err
	}
	port := o.Port
	if port == 0 {
		var err error
		if port, err = freeport.Pick(); err != nil {
			return nil, err
		}
	} else if err := checkPortFree(port); err != nil {
		return nil, fmt.Errorf("redis port %d: %w", port, err)
	}
	logPath := filepath.Join(dir, "redis.log")
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(port),
		"--dir", dir,
		"--appendonly", "yes",
		"--appendfsync", "always",
		"--save", "",
		// Candidates' hashes and history streams stay compact (see
		// store.CheckSettings).
		"--hash-max-ziplist-value", "1024",
		"--stream-node-max-bytes", "512",
		"--logfile", logPath,
		"--pidfile", filepath.Join(dir, "redis.pid"),
	)
	// Its own process group: a Ctrl-C in the terminal reaches `loom dev`,
	// which then stops Redis last, after the server has stopped writing.
	// Killed with loom dev should loom dev die without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r := &Redis{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, exited: make(chan error, 1)}
	if err := startLocked(cmd, r.exited); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !ping(r.addr) {
		select {
		case err := <-r.exited:
			return nil, fmt.Errorf("redis-server exited: %v; see %s: %s", err, logPath, tail(logPath))
		case <-ctx.Done():
			r.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("redis-server did not answer within 15s; see %s", logPath)
		}
	}
	return r, nil
}

// startLocked starts cmd from a goroutine locked to its OS thread, which
// then waits for the child on that thread: the kernel sends Pdeathsig when
// the thread that started the child ends, and Go may end an idle thread
// long before the process. exited receives the child's end.
func startLocked(cmd *exec.Cmd, exited chan<- error) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread ends with this goroutine, after the
		// child has.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	return <-started
}

// stopStale stops every redis-server working in dir (its current directory,
// which redis-server moves to): one left by a loom dev that died without its
// cleanup. SIGTERM lets it flush its append-only file; SIGKILL after 10 s.
func stopStale(dir string, log *slog.Logger) error {
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil // not Linux: nothing to find this way
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || cwd != want {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if !strings.HasPrefix(strings.TrimSpace(string(comm)), "redis-server") {
			continue
		}
		log.Warn("stopping a redis-server an earlier loom dev left running on this data directory", "pid", pid, "dir", dir)
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			continue
		}
		if !waitGone(pid, 10*time.Second) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			if !waitGone(pid, 5*time.Second) {
				return fmt.Errorf("a redis-server (pid %d) still runs on %s and does not stop", pid, dir)
			}
		}
	}
	return nil
}

// waitGone waits until pid has exited (or is a zombie).
func waitGone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			return true
		}
	}
	return false
}

func startMiniredis(o RedisOptions) (*Redis, error) {
	m := miniredis.NewMiniRedis()
	addr := "127.0.0.1:" + strconv.Itoa(o.Port)
	if o.Port == 0 {
		addr = "127.0.0.1:0"
	}
	if err := m.StartAddr(addr); err != nil {
		return nil, fmt.Errorf("start the in-memory redis: %w", err)
	}
	o.Logger.Warn("redis-server is not installed: using an IN-MEMORY Redis-compatible server, and Temporal in memory too. " +
		"NOTHING SURVIVES A RESTART of loom-dev. Install redis-server (e.g. apt-get install redis-server) to keep state.")
	return &Redis{addr: m.Addr(), mini: m}, nil
}

// Addr is the address clients dial.
func (r *Redis) Addr() string { return r.addr }

// Persistent reports whether the data survives a restart.
func (r *Redis) Persistent() bool { return r.mini == nil }

// Stop stops Redis: the child process gets SIGTERM (it then flushes its
// append-only file) and, after 10 s, SIGKILL.
func (r *Redis) Stop() {
	if r.mini != nil {
		r.mini.Close()
		return
	}
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
}

func ping(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	// A server still loading its append-only file answers -LOADING.
	return err == nil && strings.HasPrefix(line, "+PONG")
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}

// ErrLocked says another `loom dev` uses the data directory.
var ErrLocked = errors.New("another loom-dev is using this data directory")

// Lock takes the data directory for this process: a second `loom dev` on
// the same directory would fight the first over Temporal's file and Redis.
// The lock is released by release, or when the process dies.
func Lock(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "loom.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("%w (%s, held by pid %s)", ErrLocked, dir, strings.TrimSpace(string(owner)))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
