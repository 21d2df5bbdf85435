package store

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// startClusterNode starts a redis-server in cluster mode owning every slot: a
// one-node Redis Cluster. It enforces what a real cluster does to a client
// (CROSSSLOT refusals, slot routing, scripts bound to one slot), which is
// what the store must survive. (redistest starts plain servers only.)
func startClusterNode(t *testing.T) string {
	t.Helper()
	addr, _ := startNode(t)
	node := redis.NewClient(&redis.Options{Addr: addr})
	defer node.Close()
	ctx := context.Background()
	if err := node.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	awaitTrue(t, "the cluster is ok", func() bool {
		info, _ := node.ClusterInfo(ctx).Result()
		return strings.Contains(info, "cluster_state:ok")
	})
	return addr
}

// startNode starts a redis-server in cluster mode owning no slot yet, and
// returns its address and process.
func startNode(t *testing.T) (string, *os.Process) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not on PATH: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis.log"),
		"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT) // a test that failed while it was stopped
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	awaitTrue(t, "redis-server answers", func() bool { return c.Ping(context.Background()).Err() == nil })
	return addr, cmd.Process
}

// awaitTrue polls f until it reports true, failing the test after 15 s.
func awaitTrue(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The whole life of a Migration through a ClusterClient.
func TestOnRedisCluster(t *testing.T) {
	t.Parallel()
	addr := startClusterNode(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}})
	t.Cleanup(func() { _ = rdb.Close() })
	s := New(rdb)
	s.sweepBatch = 2
	ctx := context.Background()

	// The cluster really refuses cross-slot commands.
	if err := rdb.Do(ctx, "MGET", migrationKey("a"), migrationKey("b")).Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("expected a CROSSSLOT refusal, got %v", err)
	}

	for _, id := range []string{"a", "b", "c"} {
		if _, _, _, err := s.PutMigration(ctx, testMigration(id), t0); err != nil {
			t.Fatal(err)
		}
	}
	var cs []migration.Candidate
	for _, id := range ids("org/r.", 0, 9) {
		cs = append(cs, cand(id, "svc"))
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "b", Candidates: cs}, at(1))
	mustSubmit(t, s, migration.Submission{MigrationID: "b", Candidates: []migration.Candidate{cand("org/r.000", "repo")}}, at(2))
	mustSetStatus(t, s, "b", "org/r.001", migration.CandidateNotStarted, migration.CandidateRunning)
	// cs[:3] brings org/r.000 back to kind svc.
	res := mustSubmit(t, s, migration.Submission{MigrationID: "b", Candidates: cs[:3], Complete: true}, at(3))
	if len(res.NoLongerDiscovered) != 6 {
		t.Errorf("flagged %v", res.NoLongerDiscovered)
	}
	if _, err := s.UpdateCandidateInputs(ctx, "b", "org/r.001", migration.InputChange{Set: map[string]string{"k": "v"}}, at(4)); err != nil {
		t.Fatal(err)
	}
	page, err := s.ListCandidates(ctx, "b", migration.CandidateFilter{Status: migration.CandidateNotStarted, Kind: "svc"}, migration.PageRequest{Limit: 3})
	if err != nil || page.Total != 8 || len(page.Candidates) != 3 || page.Next == "" {
		t.Fatalf("list: %+v, %v", page, err)
	}
	mp, err := s.ListMigrations(ctx, migration.PageRequest{Limit: 2})
	if err != nil || len(mp.Migrations) != 2 || mp.Next != "b" || mp.Migrations[1].Counts.Total() != 9 {
		t.Fatalf("list migrations: %+v, %v", mp, err)
	}
	_, err = s.DeleteMigration(ctx, "b", time.Now())
	if !errors.Is(err, migration.ErrFailedPrecondition) {
		t.Fatalf("delete while running: %v", err)
	}
	mustSetStatus(t, s, "b", "org/r.001", migration.CandidateRunning, migration.CandidateCompleted)
	if n, err := s.DeleteMigration(ctx, "b", time.Now()); err != nil || n != 9 {
		t.Fatalf("delete: %d, %v", n, err)
	}
	var left []string
	err = rdb.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, err := node.Keys(ctx, "loom:{b}:*").Result()
		for _, k := range keys {
			if !strings.HasPrefix(k, eventsKey("b")) { // the history stays, expiring
				left = append(left, k)
			}
		}
		return err
	})
	if err != nil || len(left) != 0 {
		t.Errorf("keys left: %v, %v", left, err)
	}
	if _, err := s.GetCandidate(ctx, "b", "org/r.000"); !errors.Is(err, migration.ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
}
