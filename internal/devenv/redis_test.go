package devenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/internal/freeport"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// A loom dev killed with SIGKILL cannot stop its redis-server: the kernel
// kills it with loom dev, so the next start finds its port free.
func TestRedisDiesWithTheProcessThatStartedIt(t *testing.T) {
	if os.Getenv("LOOM_TEST_REDIS_CHILD") != "" {
		r, err := StartRedis(context.Background(), RedisOptions{Dir: os.Getenv("LOOM_TEST_REDIS_CHILD"), Logger: quiet})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(r.cmd.Process.Pid, r.Addr())
		// Idle for a while, as Go may end idle threads meanwhile.
		time.Sleep(time.Minute)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRedisDiesWithTheProcessThatStartedIt$")
	cmd.Env = append(os.Environ(), "LOOM_TEST_REDIS_CHILD="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	var pid int
	var addr string
	if _, err := fmt.Sscan(line, &pid, &addr); err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("child: %q", line)
	}
	time.Sleep(500 * time.Millisecond)
	if !alive(pid) {
		t.Fatal("redis-server died while its parent lived")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !waitGone(pid, 5*time.Second) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("redis-server (pid %d) outlived the SIGKILLed process that started it", pid)
	}
}

// A redis-server left running on the data directory (by a loom dev of
// before this fix, or one whose kernel did not kill it) is stopped at the
// next start, whatever port either uses, and its data carries over.
func TestARedisLeftOnTheDataDirectoryIsStoppedAtStart(t *testing.T) {
	dir := t.TempDir()
	rdir := filepath.Join(dir, "redis")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		t.Fatal(err)
	}
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	stale := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", rdir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "")
	stale.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := stale.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = stale.Wait() }()
	t.Cleanup(func() { _ = stale.Process.Kill() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(10 * time.Second); !ping(addr); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stale redis-server did not start")
		}
	}
	rc := redis.NewClient(&redis.Options{Addr: addr})
	if err := rc.Set(context.Background(), "kept", "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rc.Close()

	// Same port: refused before, as the port was taken.
	r, err := StartRedis(context.Background(), RedisOptions{Dir: dir, Port: port, Logger: quiet})
	if err != nil {
		t.Fatalf("start on a directory a stale redis-server holds: %v", err)
	}
	defer r.Stop()
	if !waitGone(stale.Process.Pid, time.Second) {
		t.Fatal("the stale redis-server still runs")
	}
	rc = redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rc.Close()
	if v, err := rc.Get(context.Background(), "kept").Result(); err != nil || v != "yes" {
		t.Fatalf("data of the stale redis-server: %q, %v", v, err)
	}
	if n := countRedisOn(t, rdir); n != 1 {
		t.Fatalf("%d redis-servers run on %s", n, rdir)
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil && !waitGone(pid, 0) }

func countRedisOn(t *testing.T, dir string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if cwd == dir && strings.HasPrefix(string(comm), "redis-server") && !waitGone(atoi(e.Name()), 0) {
			n++
		}
	}
	return n
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
