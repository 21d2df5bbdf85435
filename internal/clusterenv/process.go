package clusterenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// Process is a child process of the environment: its output goes to a log
// file, it is killed with the environment's process should that die first
// (Pdeathsig), and it can be stopped, killed and awaited.
type Process struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProcess starts bin with args, its output appended to logPath. cred,
// when not nil, runs it as another user (PostgreSQL refuses to run as root).
func startProcess(name, logPath string, cred *syscall.Credential, env []string, bin string, args ...string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	// Its own process group, so that a Ctrl-C in a terminal reaches the
	// environment's command, which stops the children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	p := &Process{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	// The kernel sends Pdeathsig when the thread that started the child
	// ends, and Go may end an idle thread long before the process: start
	// and wait on a thread kept for the child's life.
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	if err := <-started; err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM, and SIGKILL after grace.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// exited describes how the process ended, with the end of its log.
func (p *Process) exited() error {
	return fmt.Errorf("%s exited (%v); the end of %s:\n%s", p.Name, p.err, p.Log, tail(p.Log))
}

// await polls ready until it reports true, failing when the process exits,
// ctx ends or within passes.
func (p *Process) await(ctx context.Context, within time.Duration, ready func() bool) error {
	deadline := time.Now().Add(within)
	for !ready() {
		select {
		case <-p.done:
			return p.exited()
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v; the end of %s:\n%s", p.Name, within, p.Log, tail(p.Log))
		}
	}
	return nil
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const n = 3000
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
