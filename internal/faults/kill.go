package faults

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/loomhq/loom/internal/freeport"
	"github.com/loomhq/loom/migratorsdk"
)

// MigratorKilledConfig is one Migrator crash.
type MigratorKilledConfig struct {
	Runs int
	// Work is how long each step takes the Migrator (it is killed during).
	Work time.Duration
	Log  *slog.Logger
}

// MigratorKilled starts cfg.Runs one-step Runs on a Migrator that is a
// process of its own, SIGKILLs it once it accepted every step and is
// working on them (none reported), starts it again, and counts what it
// cost: every Run must complete (its SDK asks Loom for its steps in
// progress) with no step completed twice.
func MigratorKilled(ctx context.Context, cfg MigratorKilledConfig) (Report, error) {
	if cfg.Work <= 0 {
		cfg.Work = 3 * time.Second
	}
	rep := Report{Scenario: fmt.Sprintf("the Migrator SIGKILLed with %d steps accepted and under way", cfg.Runs), Runs: cfg.Runs}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	st, err := startStack(ctx, log)
	if err != nil {
		return rep, err
	}
	defer st.stop()
	dir, err := os.MkdirTemp("", "loom-faults-migrator-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	listen, err := freeAddr()
	if err != nil {
		return rep, err
	}
	journal := filepath.Join(dir, "journal")
	env := map[string]string{
		"LOOM_FAULTS_WORK": cfg.Work.String(), "LOOM_FAULTS_STEPS": "1", "LOOM_FAULTS_CANDIDATES": strconv.Itoa(cfg.Runs),
		"LOOM_FAULTS_JOURNAL": journal, "LOOM_FAULTS_MIGRATION": "crash", "LOOM_FAULTS_LOOM_URL": st.url, "LOOM_FAULTS_LISTEN": listen,
	}
	m, err := child("migrator", env, filepath.Join(dir, "migrator.log"))
	if err != nil {
		return rep, err
	}
	a := newAPI(st.url, "")
	ids := candidateIDs(cfg.Runs)
	if err := a.waitCandidates(ctx, "crash", cfg.Runs); err != nil {
		sigkill(m)
		return rep, err
	}
	if err := a.startRuns(ctx, "crash", ids); err != nil {
		sigkill(m)
		return rep, err
	}
	for began := time.Now(); count(journal, "start") < cfg.Runs; time.Sleep(20 * time.Millisecond) {
		if time.Since(began) > time.Minute {
			sigkill(m)
			return rep, fmt.Errorf("the Migrator did not accept every step: %d of %d", count(journal, "start"), cfg.Runs)
		}
	}
	sigkill(m)
	before := count(journal, "done")
	rep.Notes = append(rep.Notes, fmt.Sprintf("killed with %d steps under way, %d done", cfg.Runs-before, before))
	back := time.Now()
	m, err = child("migrator", env, filepath.Join(dir, "migrator.log"))
	if err != nil {
		return rep, err
	}
	defer sigkill(m)
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	last, done := a.awaitCompleted(wctx, "crash", ids)
	rep.Completed, rep.Lost = done, cfg.Runs-done
	rep.Notes = append(rep.Notes, a.describeLost(ctx, a.lost)...)
	if done > 0 {
		rep.Recovery = last.Sub(back)
	}
	rep.Doubled = doubledIn(journal)
	var notes []string
	rep.EventsLost, rep.EventsDoubled, notes = a.checkHistories(ctx, "crash", ids, 1)
	rep.Notes = append(rep.Notes, notes...)
	rep.Disagree = viewsDisagree(ctx, st.temporal.HostPort(), st.temporal.Namespace(), a, "crash", ids, &rep.Notes)
	return rep, nil
}

// LoomDevKilledConfig is `loom dev` killed again and again.
type LoomDevKilledConfig struct {
	Runs, Steps, Kills int
	// Every is the time between kills; Work, how long each step takes.
	Every, Work time.Duration
}

// LoomDevKilled runs `loom dev` as a process of its own, starts cfg.Runs
// Runs on a Migrator in this process, SIGKILLs `loom dev` cfg.Kills times
// while they are in flight, starting it again each time on the same data
// directory and ports with nothing done by hand, and counts what it cost.
func LoomDevKilled(ctx context.Context, cfg LoomDevKilledConfig) (Report, error) {
	if cfg.Every <= 0 {
		cfg.Every = 3 * time.Second
	}
	if cfg.Work <= 0 {
		cfg.Work = 5 * time.Second
	}
	rep := Report{Scenario: fmt.Sprintf("loom dev SIGKILLed %d times with %d Runs of %d steps in flight", cfg.Kills, cfg.Runs, cfg.Steps), Runs: cfg.Runs}
	dir, err := os.MkdirTemp("", "loom-faults-dev-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	api, err := freeAddr()
	if err != nil {
		return rep, err
	}
	tport, err1 := freeport.Pick()
	rport, err2 := freeport.Pick()
	if err1 != nil || err2 != nil {
		return rep, fmt.Errorf("pick ports: %v %v", err1, err2)
	}
	env := map[string]string{"LOOM_FAULTS_DATA": filepath.Join(dir, "data"), "LOOM_FAULTS_ADDR": api,
		"LOOM_FAULTS_TEMPORAL_PORT": strconv.Itoa(tport), "LOOM_FAULTS_REDIS_PORT": strconv.Itoa(rport)}
	url := "http://" + api
	logPath := filepath.Join(dir, "loom-dev.log")
	start := func() (func(), error) {
		cmd, err := child("loom-dev", env, logPath)
		if err != nil {
			return nil, err
		}
		if err := awaitHTTP(ctx, url+"/healthz", 2*time.Minute); err != nil {
			sigkill(cmd)
			return nil, fmt.Errorf("loom dev did not start again: %w; its log: %s", err, tailOf(logPath))
		}
		return func() { sigkill(cmd) }, nil
	}
	kill, err := start()
	if err != nil {
		return rep, err
	}
	defer func() { kill() }()
	operator, err1 := os.ReadFile(filepath.Join(dir, "data", "operator.token"))
	migrator, err2 := os.ReadFile(filepath.Join(dir, "data", "migrator.token"))
	if err1 != nil || err2 != nil {
		return rep, fmt.Errorf("loom dev's tokens: %v %v", err1, err2)
	}

	execs := newExecutions()
	ids := candidateIDs(cfg.Runs)
	mlisten, err := freeAddr()
	if err != nil {
		return rep, err
	}
	m, err := migratorsdk.New(migratorsdk.Spec{
		Migration: migratorsdk.Migration{ID: "crashes", Name: "Crashes", Steps: stepsOf(cfg.Steps)},
		Handlers: map[string]migratorsdk.StepHandler{"work": func(ctx context.Context, d *migratorsdk.Dispatch) error {
			time.Sleep(cfg.Work)
			if err := d.Completed(ctx); err != nil {
				return err
			}
			execs.completed(key(d))
			return nil
		}},
		Discover: migratorCandidates(ids),
	}, migratorsdk.Options{LoomURL: url, Token: strings.TrimSpace(string(migrator)), ListenAddr: mlisten,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return rep, err
	}
	mctx, stopMigrator := context.WithCancel(context.Background())
	defer stopMigrator()
	go func() { _ = m.Run(mctx) }()
	a := newAPI(url, strings.TrimSpace(string(operator)))
	if err := a.waitCandidates(ctx, "crashes", cfg.Runs); err != nil {
		return rep, err
	}
	started := make(chan error, 1)
	go func() { started <- a.startRuns(ctx, "crashes", ids) }()
	for i := range cfg.Kills {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(cfg.Every):
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf("kill %d: %d of %d steps done", i+1, execs.total(), cfg.Runs*cfg.Steps))
		kill()
		if kill, err = start(); err != nil {
			return rep, fmt.Errorf("restart %d: %w", i+1, err)
		}
	}
	back := time.Now()
	if err := <-started; err != nil {
		return rep, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	last, done := a.awaitCompleted(wctx, "crashes", ids)
	rep.Completed, rep.Lost = done, cfg.Runs-done
	rep.Notes = append(rep.Notes, a.describeLost(ctx, a.lost)...)
	if done > 0 {
		rep.Recovery = max(last.Sub(back), 0)
	}
	rep.Doubled = execs.doubled()
	var notes []string
	rep.EventsLost, rep.EventsDoubled, notes = a.checkHistories(ctx, "crashes", ids, cfg.Steps)
	rep.Notes = append(rep.Notes, notes...)
	rep.Disagree = viewsDisagree(ctx, "127.0.0.1:"+strconv.Itoa(tport), "default", a, "crashes", ids, &rep.Notes)
	return rep, nil
}

// count counts the journal's lines starting with what.
func count(journal, what string) int {
	n := 0
	forLines(journal, func(w, _ string) {
		if w == what {
			n++
		}
	})
	return n
}

// doubledIn counts the steps the journal says were completed twice.
func doubledIn(journal string) int {
	done := map[string]int{}
	forLines(journal, func(w, k string) {
		if w == "done" {
			done[k]++
		}
	})
	n := 0
	for _, c := range done {
		if c > 1 {
			n++
		}
	}
	return n
}

func forLines(path string, f func(what, key string)) {
	file, err := os.Open(path)
	if err != nil {
		return
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		w, k, _ := strings.Cut(sc.Text(), " ")
		f(w, k)
	}
}

func tailOf(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
