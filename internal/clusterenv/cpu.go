package clusterenv

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// cpu.go measures what each part of the environment spends: a benchmark
// says from these figures whether Loom or what it stands on is the
// bottleneck.

// CPUTimes is the CPU time (user and system) each part of the environment
// has used since it started: "loom-0"…, "temporal", "postgres" (its server
// and every backend it forked), "redis" (the nodes together), "migrator".
// A part not running is absent.
func (e *Env) CPUTimes() map[string]time.Duration {
	out := map[string]time.Duration{}
	add := func(name string, p *Process) {
		if p == nil {
			return
		}
		select {
		case <-p.Done():
			return
		default:
		}
		out[name] += procCPU(p.Pid())
	}
	for _, r := range e.Replicas {
		add(r.Name(), r.proc)
	}
	add("temporal", e.temporal)
	add("migrator", e.Migrator)
	for _, n := range e.Redis {
		add("redis", n.proc)
	}
	if e.postgres != nil {
		add("postgres", e.postgres)
		for _, pid := range children(e.postgres.Pid()) {
			out["postgres"] += procCPU(pid)
		}
	}
	return out
}

// MachineCPU is the CPU time every processor of the machine has spent
// busy (not idle, not waiting for I/O), and the processors' count: the
// machine is saturated when busy time grows as fast as wall time × count.
func MachineCPU() (busy time.Duration, cpus int) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			cpus++
			continue
		}
		var ticks int64
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			if i != 3 && i != 4 { // idle, iowait
				ticks += n
			}
		}
		busy = ticksToDuration(ticks)
	}
	return busy, cpus
}

// procCPU is pid's user and system time, with that of its children that
// ended (the Migrator's git commands, PostgreSQL's closed backends); 0
// once it is gone.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after it. utime, stime, cutime and cstime are fields 14 to 17
	// of the line.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0
	}
	var ticks int64
	for _, v := range f[11:15] {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return ticksToDuration(ticks)
}

// children are the processes whose parent is pid.
func children(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// ticksToDuration converts clock ticks of /proc: USER_HZ is 100 on every
// Linux this runs on.
func ticksToDuration(t int64) time.Duration { return time.Duration(t) * 10 * time.Millisecond }
