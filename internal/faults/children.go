package faults

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/loomhq/loom/internal/devenv"
	"github.com/loomhq/loom/migratorsdk"
)

// Scenarios SIGKILL real processes: the Migrator and `loom dev` run as
// children, the very binary running the scenario started again in a child
// mode named by this variable (see Child).
const childEnv = "LOOM_FAULTS_CHILD"

// Child runs this process as a scenario's child when it was started as
// one, and then reports true: the caller must exit. A binary running the
// scenarios (cmd/loom-faults, this package's tests) calls it first thing.
func Child() bool {
	var err error
	switch os.Getenv(childEnv) {
	case "":
		return false
	case "migrator":
		err = migratorChild()
	case "loom-dev":
		err = loomDevChild()
	default:
		err = fmt.Errorf("unknown child %q", os.Getenv(childEnv))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loom-faults child:", err)
		os.Exit(1)
	}
	return true
}

// child starts this binary again as the child mode, with env added.
func child(mode string, env map[string]string, logTo string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if logTo != "" {
		f, err := os.OpenFile(logTo, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = f, f
	}
	// Killed with the scenario should the scenario die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, cmd.Start()
}

// sigkill kills the child and waits for it.
func sigkill(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// migratorChild is a Migrator whose every step takes LOOM_FAULTS_WORK and
// notes, in LOOM_FAULTS_JOURNAL, each step it starts and completes.
func migratorChild() error {
	work, _ := time.ParseDuration(os.Getenv("LOOM_FAULTS_WORK"))
	steps, _ := strconv.Atoi(os.Getenv("LOOM_FAULTS_STEPS"))
	n, _ := strconv.Atoi(os.Getenv("LOOM_FAULTS_CANDIDATES"))
	journal, err := os.OpenFile(os.Getenv("LOOM_FAULTS_JOURNAL"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	note := func(what, k string) { _, _ = fmt.Fprintf(journal, "%s %s\n", what, k) }
	m, err := migratorsdk.New(migratorsdk.Spec{
		Migration: migratorsdk.Migration{ID: os.Getenv("LOOM_FAULTS_MIGRATION"), Name: "Faults", Steps: stepsOf(steps)},
		Handlers: map[string]migratorsdk.StepHandler{"work": func(ctx context.Context, d *migratorsdk.Dispatch) error {
			note("start", key(d))
			select {
			case <-time.After(work):
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := d.Completed(ctx); err != nil {
				return err
			}
			note("done", key(d))
			return nil
		}},
		Discover: migratorCandidates(candidateIDs(n)),
	}, migratorsdk.Options{LoomURL: os.Getenv("LOOM_FAULTS_LOOM_URL"), Token: os.Getenv("LOOM_FAULTS_TOKEN"),
		ListenAddr: os.Getenv("LOOM_FAULTS_LISTEN"), Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return m.Run(ctx)
}

// loomDevChild is `loom dev` on LOOM_FAULTS_DATA, its API, Temporal and
// Redis on fixed ports, so that it comes back where it was.
func loomDevChild() error {
	port := func(k string) int { p, _ := strconv.Atoi(os.Getenv(k)); return p }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return devenv.Run(ctx, devenv.Config{
		DataDir:      os.Getenv("LOOM_FAULTS_DATA"),
		Addr:         os.Getenv("LOOM_FAULTS_ADDR"),
		TemporalPort: port("LOOM_FAULTS_TEMPORAL_PORT"),
		RedisPort:    port("LOOM_FAULTS_REDIS_PORT"),
		NoConsole:    true,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, func(devenv.Env) { fmt.Println("ready") })
}

// awaitHTTP waits until something answers HTTP at url.
func awaitHTTP(ctx context.Context, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		res, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("nothing answers at %s after %v", url, within)
}

// freeAddr is a loopback address with a port nobody listens on.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
