// Package redistest starts a real redis-server for tests, on a free loopback
// port, in a temporary directory, and stops it when the test ends.
//
// redis-server must be on PATH (Debian: apt-get install -y redis-server;
// .ci/run installs it). A missing binary fails the test: it never skips.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loomhq/loom/internal/freeport"
)

// Server is a redis-server child process.
type Server struct {
	t    testing.TB
	dir  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error // receives the process's Wait result
}

// Start starts a redis-server for the test and registers its stop.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not on PATH (install it: apt-get install -y redis-server): %v", err)
	}
	s := &Server{t: t, dir: t.TempDir()}
	// A port picked free can be taken by someone else before redis binds it:
	// try a few.
	for try := 0; ; try++ {
		s.port = freePort(t)
		if err = s.start(bin); err == nil {
			break
		}
		if try == 4 {
			t.Fatalf("start redis-server: %v", err)
		}
	}
	t.Cleanup(s.Stop)
	return s
}

// Addr is the host:port clients dial.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Stop kills the server; data in memory is lost. Safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart stops the server and starts a new, empty one on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	// Empty: not even what a Down saved.
	if err := os.Remove(filepath.Join(s.dir, dumpFile)); err != nil && !os.IsNotExist(err) {
		s.t.Fatalf("restart redis-server: %v", err)
	}
	s.startAgain()
}

// Down stops the server as an operator's maintenance stop does, keeping its
// data: SHUTDOWN SAVE writes every write it acknowledged to a snapshot and
// exits, in one command, so none falls between the two. Clients see the
// port refuse connections until Up.
func (s *Server) Down() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	if err := command(s.Addr(), "SHUTDOWN SAVE"); err != nil {
		s.t.Fatalf("redis-server SHUTDOWN SAVE: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		s.t.Fatalf("redis-server did not exit within 10s of SHUTDOWN SAVE; log: %s", tail(filepath.Join(s.dir, "redis.log")))
	}
	s.cmd = nil
	if _, err := os.Stat(filepath.Join(s.dir, dumpFile)); err != nil {
		s.t.Fatalf("redis-server saved no snapshot at SHUTDOWN SAVE: %v", err)
	}
}

// Up starts the server stopped by Down again on the same port, with the
// data it had.
func (s *Server) Up() {
	s.t.Helper()
	s.startAgain()
}

// dumpFile is redis-server's default snapshot, in its --dir, read at start.
const dumpFile = "dump.rdb"

func (s *Server) startAgain() {
	s.t.Helper()
	bin, _ := exec.LookPath("redis-server")
	var err error
	for try := 0; try < 50; try++ { // the port may linger briefly
		if err = s.start(bin); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restart redis-server: %v", err)
}

func (s *Server) start(bin string) error {
	logPath := filepath.Join(s.dir, "redis.log")
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--hash-max-ziplist-value", "1024", // as docs/production.md asks
		"--stream-node-max-bytes", "512",

		"--logfile", logPath,
	)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server exited: %v; log: %s", err, tail(logPath))
		default:
		}
		if ping(s.Addr()) {
			s.mu.Lock()
			s.cmd, s.exited = cmd, exited
			s.mu.Unlock()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	return fmt.Errorf("redis-server did not answer PING within 10s; log: %s", tail(logPath))
}

// command sends one inline command and waits for the server to answer or
// close the connection (SHUTDOWN answers nothing when it succeeds).
func command(addr, cmd string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return nil // closed: the server exited
	}
	if strings.HasPrefix(line, "-") {
		return fmt.Errorf("%s", strings.TrimSpace(line))
	}
	return nil
}

func ping(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

func freePort(t testing.TB) int {
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
