package store

import (
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// startMasterAndReplica starts a Redis Cluster of one master, owning every
// slot, and its replica, in sync.
func startMasterAndReplica(t *testing.T) (master, replica string, replicaProc *os.Process) {
	t.Helper()
	master, _ = startNode(t)
	if err := redis.NewClient(&redis.Options{Addr: master}).Do(context.Background(), "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	replica, replicaProc = attachReplica(t, master)
	return master, replica, replicaProc
}

// attachReplica starts a node that joins master's cluster as its replica,
// and waits until it is in sync.
func attachReplica(t *testing.T, master string) (replica string, replicaProc *os.Process) {
	t.Helper()
	ctx := context.Background()
	replica, replicaProc = startNode(t)
	m := redis.NewClient(&redis.Options{Addr: master})
	defer m.Close()
	r := redis.NewClient(&redis.Options{Addr: replica})
	defer r.Close()
	host, port, _ := net.SplitHostPort(master)
	if err := r.ClusterMeet(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	id, err := m.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	awaitTrue(t, "the replica knows the master", func() bool {
		nodes, _ := r.ClusterNodes(ctx).Result()
		return strings.Contains(nodes, id)
	})
	if err := r.Do(ctx, "CLUSTER", "REPLICATE", id).Err(); err != nil {
		t.Fatal(err)
	}
	awaitTrue(t, "the replica is in sync and the cluster ok", func() bool {
		info, _ := m.Info(ctx, "replication").Result()
		cinfo, _ := r.ClusterInfo(ctx).Result()
		return strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online") &&
			strings.Contains(cinfo, "cluster_state:ok")
	})
	return replica, replicaProc
}

// openWaiting opens a store on master and replica that waits for one
// replica up to timeout, and warms it (the cluster's slots known, scripts
// loaded); reported says the shortfalls it reported so far.
func openWaiting(t *testing.T, master, replica string, timeout time.Duration) (s *Store, reported func() []ReplicaShortfall) {
	t.Helper()
	s, err := Open(context.Background(), Options{Addrs: []string{master, replica}, WaitReplicas: 1, WaitTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var mu sync.Mutex
	var got []ReplicaShortfall
	s.OnReplicaShortfall(func(sf ReplicaShortfall) {
		mu.Lock()
		got = append(got, sf)
		mu.Unlock()
	})
	mustPut(t, s, "warm")
	return s, func() []ReplicaShortfall {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// replicaReader reads the replica itself (READONLY), not its master.
func replicaReader(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, OnConnect: func(ctx context.Context, cn *redis.Conn) error {
		return cn.ReadOnly(ctx).Err()
	}})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// pauseReplica stops the replica's process (SIGSTOP) for d: it receives
// nothing and acknowledges nothing meanwhile. The returned function waits
// until it runs again.
func pauseReplica(t *testing.T, p *os.Process, d time.Duration) (resumed func()) {
	t.Helper()
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(d)
		_ = p.Signal(syscall.SIGCONT)
	})
	return wg.Wait
}

// A write through the store on Redis Cluster (several addresses: WAIT for
// one replica by default) is answered only once the replica has it: with
// the replica stopped, the write waits until it runs again, and the
// replica holds the write when the store answers. Reads do not wait.
func TestWritesWaitForTheReplica(t *testing.T) {
	t.Parallel()
	master, replica, proc := startMasterAndReplica(t)
	ctx := context.Background()
	s, err := Open(ctx, Options{Addrs: []string{master, replica}, WaitReplicas: -1, WaitTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if s.WaitsForReplicas() != 1 {
		t.Fatalf("waits for %d replicas on Redis Cluster, want 1 by default", s.WaitsForReplicas())
	}
	mustPut(t, s, "warm") // the cluster's slots known, scripts loaded
	onReplica := replicaReader(t, replica)

	const pause = 400 * time.Millisecond
	for i, tc := range []struct {
		name  string
		write func(id string) error
		key   func(id string) string
	}{
		{"a script (one command)", func(id string) error {
			_, _, _, err := s.PutMigration(ctx, testMigration(id), t0)
			return err
		}, migrationKey},
		{"a pipeline", func(id string) error {
			_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.HGet(ctx, migrationKey("warm"), "def")
				p.HSet(ctx, migrationKey(id), "def", "x")
				return nil
			})
			return err
		}, migrationKey},
		{"a transaction followed by a script (CreateRollout's order)", func(id string) error {
			// The transaction is not waited for itself (see wait.go); the
			// script after it, on the same node, waits for both.
			if _, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.RPush(ctx, rolloutIDsKey(id, "r"), "a", "b")
				return nil
			}); err != nil {
				return err
			}
			_, _, _, err := s.PutMigration(ctx, testMigration(id), t0)
			return err
		}, func(id string) string { return rolloutIDsKey(id, "r") }},
	} {
		id := fmt.Sprintf("w%d", i)
		resumed := pauseReplica(t, proc, pause)
		began := time.Now()
		err := tc.write(id)
		took := time.Since(began)
		resumed()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if took < pause*3/4 {
			t.Errorf("%s answered after %v, with the replica stopped for %v: it did not wait for the replica", tc.name, took, pause)
		}
		// Read at once, with no wait of the test's own: the replica has
		// the write because the store answered after the replica had it.
		if n, err := onReplica.Exists(ctx, tc.key(id)).Result(); err != nil || n != 1 {
			t.Errorf("%s: the replica does not hold %s when the store answered: %d, %v", tc.name, tc.key(id), n, err)
		}
		t.Logf("%s waited %v for the replica stopped %v", tc.name, took.Round(time.Millisecond), pause)
	}
	if n := s.ReplicaShortfalls(); n != 0 {
		t.Errorf("%d shortfalls, want none: every replica acknowledged within the timeout", n)
	}

	// Reads answer at once though the replica is stopped: a read-only
	// script, a plain read, a read in a transaction (GetMigration).
	resumed := pauseReplica(t, proc, 2*time.Second)
	began := time.Now()
	if _, err := s.GetRun(ctx, "warm", "nobody"); err == nil {
		t.Error("GetRun of no Run: no error")
	}
	if _, err := s.GetMigration(ctx, "warm"); err != nil {
		t.Error(err)
	}
	if _, err := s.ListMigrations(ctx, migration.PageRequest{Limit: 10}); err != nil {
		t.Error(err)
	}
	// A listing writes its scratch set unreplicated: nothing to wait for.
	if _, err := s.ListCandidates(ctx, "warm", migration.CandidateFilter{Kind: "service", Metadata: map[string]string{"team": "a"}},
		migration.PageRequest{Limit: 10}); err != nil {
		t.Error(err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("reads took %v with the replica stopped: they waited for it", took)
	}
	resumed()
}

// A write the replica does not acknowledge within the timeout stands: it
// is answered done after the timeout, counted as a shortfall and reported.
func TestWriteWithoutReplicaAcknowledgement(t *testing.T) {
	t.Parallel()
	master, replica, proc := startMasterAndReplica(t)
	ctx := context.Background()
	const timeout = 250 * time.Millisecond
	s, reported := openWaiting(t, master, replica, timeout)

	resumed := pauseReplica(t, proc, 1500*time.Millisecond)
	began := time.Now()
	_, _, _, err := s.PutMigration(ctx, testMigration("short"), t0)
	took := time.Since(began)
	resumed()
	if err != nil {
		t.Fatalf("a write the replica did not acknowledge: %v, want it answered done", err)
	}
	if took < timeout || took > timeout+time.Second {
		t.Errorf("answered after %v, want about the timeout, %v", took, timeout)
	}
	// PutMigration is its script, then the index's ZADD: two writes.
	if got := reported(); s.ReplicaShortfalls() != 2 || len(got) != 2 || got[0] != (ReplicaShortfall{Addr: master, Acked: 0, Want: 1}) {
		t.Fatalf("shortfalls %d, reported %+v; want 2, of %s acked 0 of 1", s.ReplicaShortfalls(), got, master)
	}
	if m, err := s.GetMigration(ctx, "short"); err != nil || m.ID != "short" {
		t.Fatalf("the write stands: %+v, %v", m, err)
	}
}

// One address is a single server: no WAIT unless asked (it may have no
// replica, and WAIT would then hold every write for the timeout).
func TestSingleServerWaitsForNoReplicaByDefault(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	addr := s.rdb.(*redis.Client).Options().Addr
	o, err := Open(context.Background(), Options{Addrs: []string{addr}, WaitReplicas: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.WaitsForReplicas() != 0 {
		t.Fatalf("waits for %d replicas on a single server by default", o.WaitsForReplicas())
	}
}

// A master whose replica is gone (not slow: no replica connected) cannot
// meet WAIT: after the first write finds it so, its writes go without
// waiting, each a shortfall saying so, instead of each taking the whole
// timeout; once a replica is connected again, writes wait for it again.
func TestWritesToAMasterWithoutReplicaDoNotWait(t *testing.T) {
	t.Parallel()
	master, replica, proc := startMasterAndReplica(t)
	ctx := context.Background()
	const timeout = time.Second
	s, reported := openWaiting(t, master, replica, timeout)

	m := redis.NewClient(&redis.Options{Addr: master})
	t.Cleanup(func() { _ = m.Close() })
	if err := proc.Kill(); err != nil {
		t.Fatal(err)
	}
	awaitTrue(t, "the master has no replica connected", func() bool {
		info, _ := m.Info(ctx, "replication").Result()
		return strings.Contains(info, "connected_slaves:0")
	})
	const writes = 20
	began := time.Now()
	for i := range writes {
		if _, _, _, err := s.PutMigration(ctx, testMigration(fmt.Sprintf("alone-%d", i)), t0); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(began)
	// The first write waits the timeout and finds the master alone; the
	// others do not wait (20 s without that).
	if took > timeout+time.Second {
		t.Fatalf("%d writes to a master without replica took %v: they waited for it", writes, took)
	}
	if n := s.ReplicaShortfalls(); n < writes {
		t.Errorf("%d shortfalls for %d writes no replica acknowledged", n, writes)
	}
	if got := reported(); len(got) < 2 || got[0].NoReplica || !got[len(got)-1].NoReplica {
		t.Errorf("shortfalls %+v: want a timed-out WAIT, then writes that did not wait", got)
	}
	t.Logf("%d writes without a replica took %v", writes, took.Round(time.Millisecond))

	// A replica again: within replicaRecheck, writes wait for it (a write
	// it acknowledges adds no shortfall).
	_, proc2 := attachReplica(t, master)
	awaitTrue(t, "a write is acknowledged by the new replica", func() bool {
		before := s.ReplicaShortfalls()
		mustPut(t, s, "again")
		return s.ReplicaShortfalls() == before
	})
	before := s.ReplicaShortfalls()
	resumed := pauseReplica(t, proc2, 600*time.Millisecond)
	began = time.Now()
	if _, _, _, err := s.PutMigration(ctx, testMigration("waited"), t0); err != nil {
		t.Fatal(err)
	}
	took = time.Since(began)
	resumed()
	if took < 400*time.Millisecond {
		t.Errorf("a write with the new replica stopped for 600ms answered after %v: it did not wait for it", took)
	}
	if n := s.ReplicaShortfalls(); n != before {
		t.Errorf("%d shortfalls once the replica is back, want none", n-before)
	}
}

// The scripts declared read-only call no command but reads: were one to
// write, its write would not be waited for.
func TestReadOnlyScriptsOnlyRead(t *testing.T) {
	if len(readOnlySources) == 0 {
		t.Fatal("no read-only scripts")
	}
	call := regexp.MustCompile(`redis\.p?call\(\s*'([A-Za-z]+)'`)
	for i, src := range readOnlySources {
		calls := call.FindAllStringSubmatch(src, -1)
		if len(calls) == 0 || strings.Count(src, "redis.call(")+strings.Count(src, "redis.pcall(") != len(calls) {
			t.Errorf("read-only script %d: every redis.call must name its command literally", i)
		}
		for _, c := range calls {
			if name := strings.ToLower(c[1]); !noWait[name] {
				t.Errorf("read-only script %d calls %s, which is not a read", i, c[1])
			}
		}
	}
}

// The scripts declared unreplicated turn replication off, once and for
// good, before anything in them that may write: were one to write before,
// its write would reach replicas without being waited for.
func TestUnreplicatedScriptsWriteNothingReplicated(t *testing.T) {
	if len(unreplicatedSources) == 0 {
		t.Fatal("no unreplicated scripts")
	}
	const off = "redis.set_repl(redis.REPL_NONE)"
	call := regexp.MustCompile(`redis\.p?call\(\s*('([A-Za-z]+)')?`)
	for i, src := range unreplicatedSources {
		if strings.Count(src, "set_repl(") != 1 || strings.Count(src, off) != 1 {
			t.Errorf("unreplicated script %d: want exactly one set_repl, %s", i, off)
			continue
		}
		at := strings.Index(src, off)
		for _, c := range call.FindAllStringSubmatchIndex(src, -1) {
			name := ""
			if c[4] >= 0 {
				name = strings.ToLower(src[c[4]:c[5]])
			}
			if c[0] < at && !noWait[name] {
				t.Errorf("unreplicated script %d: %q may write before %s", i, src[c[0]:c[1]], off)
			}
		}
	}
}

// The cost of WAIT, one write at a time, on this machine: the same writes
// with and without waiting for the replica (logged; no bound asserted).
func TestWaitLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("measures latency")
	}
	master, replica, _ := startMasterAndReplica(t)
	ctx := context.Background()
	const n = 300
	per := map[int]time.Duration{}
	for _, replicas := range []int{0, 1, 0, 1} {
		s, err := Open(ctx, Options{Addrs: []string{master, replica}, WaitReplicas: replicas})
		if err != nil {
			t.Fatal(err)
		}
		mustPut(t, s, "lat")
		began := time.Now()
		for i := range n {
			if err := s.rdb.HSet(ctx, migrationKey("lat"), "k", i).Err(); err != nil {
				t.Fatal(err)
			}
		}
		per[replicas] = time.Since(began) / n // the second round of each counts
		_ = s.Close()
	}
	t.Logf("one HSET at a time on loopback: %v without WAIT, %v with WAIT 1 (+%v per write)",
		per[0], per[1], per[1]-per[0])
}
