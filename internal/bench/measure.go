package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// boundaries records, per Run, when its Migrator reported on a step and,
// when the next step's dispatch arrives, how long that took: the step
// boundary, the latency an operator feels at every step. It also records a
// Run's two ends: its start → its first dispatch, and its last report →
// its workflow completed.
type boundaries struct {
	mu      sync.Mutex
	last    map[string]time.Time // per Run: its start, then its latest report
	samples []boundary
}

// boundary is one stretch of a Run: a report → the next dispatch, or one
// of its ends.
type boundary struct {
	Kind     stretch
	RunID    string
	Step     int // the step dispatched
	Reported time.Time
	// Delivered is when the dispatch arrived (or the Run completed).
	Delivered time.Time
}

type stretch int

const (
	stepBoundary stretch = iota
	runStart             // start → first dispatch
	runEnd               // last report → completed
)

func (b boundary) gap() time.Duration { return b.Delivered.Sub(b.Reported) }

func newBoundaries() *boundaries { return &boundaries{last: map[string]time.Time{}} }

// starting notes that runID is about to be started.
func (b *boundaries) starting(runID string, at time.Time) { b.note(runID, at) }

// reporting notes that the Migrator is about to report on runID's step.
func (b *boundaries) reporting(runID string, at time.Time) { b.note(runID, at) }

func (b *boundaries) note(runID string, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last[runID] = at
}

// delivered notes the arrival of step's dispatch at the Migrator.
func (b *boundaries) delivered(runID string, step int, at time.Time) {
	kind := stepBoundary
	if step == 0 {
		kind = runStart
	}
	b.add(kind, runID, step, at)
}

// completed notes that runID's workflow completed.
func (b *boundaries) completed(runID string, at time.Time) { b.add(runEnd, runID, -1, at) }

func (b *boundaries) add(kind stretch, runID string, step int, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t, ok := b.last[runID]; ok {
		b.samples = append(b.samples, boundary{Kind: kind, RunID: runID, Step: step, Reported: t, Delivered: at})
	}
	delete(b.last, runID)
}

func (b *boundaries) take() []boundary {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.samples
	b.samples = nil
	clear(b.last)
	return out
}

// lastReports tells a Run's driver that its Migrator's last report is
// answered: from then on the Run's workflow is about to close.
type lastReports struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

func newLastReports() *lastReports { return &lastReports{ch: map[string]chan struct{}{}} }

func (l *lastReports) get(runID string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.ch[runID]
	if !ok {
		c = make(chan struct{})
		l.ch[runID] = c
	}
	return c
}

// wait returns once runID's last report is answered.
func (l *lastReports) wait(ctx context.Context, runID string) error {
	select {
	case <-l.get(runID):
		l.mu.Lock()
		delete(l.ch, runID)
		l.mu.Unlock()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *lastReports) done(runID string) { close(l.get(runID)) }

// awaitClosed waits until the workflow id has closed, once its last report
// is answered, the same way for both sides: it asks Temporal every 2 ms.
// (A long poll on the workflow's close would cost nothing while waiting,
// but Temporal's sometimes misses a close this quick and answers only when
// it expires, 20 s later: seen on a few Runs in a thousand.)
func awaitClosed(ctx context.Context, tc client.Client, last *lastReports, id string) error {
	if err := last.wait(ctx, id); err != nil {
		return err
	}
	for {
		d, err := tc.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			return err
		}
		switch st := d.GetWorkflowExecutionInfo().GetStatus(); st {
		case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
			return nil
		default:
			return fmt.Errorf("workflow %s ended %s", id, st)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// percentiles of a set of durations (nearest rank).
type percentiles struct {
	N             int
	P50, P90, P99 time.Duration
}

func percentilesOf(ds []time.Duration) percentiles {
	if len(ds) == 0 {
		return percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) time.Duration {
		i := int(p*float64(len(s)) + 0.5)
		return s[min(max(i-1, 0), len(s)-1)]
	}
	return percentiles{N: len(s), P50: at(0.50), P90: at(0.90), P99: at(0.99)}
}

// resources are the CPU time and peak memory of the processes a phase
// runs on: this one (the embedded Temporal server, Loom and both
// Migrators live in it) and the development redis-server.
type resources struct {
	cpu      time.Duration // both processes
	redisCPU time.Duration // of which redis-server's
	peakRSS  int64         // bytes
}

// meter reads the resources of this process and of the process redisPID.
type meter struct {
	redisPID int
}

// reset prepares a phase: memory the previous phase left to the garbage
// collector is returned to the OS, and both processes' peak RSS is brought
// down to their current RSS, so the phase's peak is its own.
func (m meter) reset() {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	if m.redisPID > 0 {
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", m.redisPID), []byte("5"), 0)
	}
}

func (m meter) read() resources {
	var r resources
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	r.peakRSS = statusKB("/proc/self/status", "VmHWM:") * 1024
	if m.redisPID > 0 {
		r.redisCPU = procCPU(m.redisPID)
		r.cpu += r.redisCPU
		r.peakRSS += statusKB(fmt.Sprintf("/proc/%d/status", m.redisPID), "VmHWM:") * 1024
	}
	return r
}

// procCPU is the user + system time of pid, from /proc/pid/stat (in the
// kernel's USER_HZ ticks, 100 per second on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100)
}

func statusKB(path, field string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}
