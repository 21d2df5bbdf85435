package clusterenv_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReplicaKilledAndRedisFailedOver drives Runs as TestRunsAcrossReplicas
// does (started and driven through A, reported through B, watched through
// C), started one after another while, in turn: replica B is SIGKILLed
// (its worker's workflow tasks and activities in flight, the Migrator's
// reports refused) and started again 2 s later, as an orchestrator would;
// the replica of the Redis master serving the Migration's keys is failed
// over by hand (CLUSTER FAILOVER); then that new master is SIGKILLed and
// its replica promoted by the cluster. Every Run must complete, each event
// be recorded and delivered once, and the callers of A and C see at most
// unavailable.
func TestReplicaKilledAndRedisFailedOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	const fleet = 56 // 45 Candidates
	env := start(ctx, t, fleet)
	a, b, c := env.Replicas[0], env.Replicas[1], env.Replicas[2]
	op := newClient(a.URL, env.Tokens["operator"])
	watcher := newClient(c.URL, env.Tokens["viewer"])
	ids := waitCandidates(ctx, t, watcher, candidatesOf(fleet))
	cs := &calls{}
	feeds := watchFeeds(ctx, t, cs, watcher, op, ids[0])

	// Runs start 150 ms apart and the operator takes 300 ms to act on
	// each step: about 8 Runs are under way whenever a fault comes.
	var wg sync.WaitGroup
	var started, completed atomic.Int32
	errs := make([]error, len(ids))
	go func() {
		for i, id := range ids {
			started.Add(1)
			wg.Go(func() {
				if errs[i] = drive(ctx, cs, op, watcher, id, 300*time.Millisecond); errs[i] == nil {
					completed.Add(1)
				}
			})
			time.Sleep(150 * time.Millisecond)
		}
	}()
	progress := func() string {
		return fmt.Sprintf("%d Runs started, %d completed", started.Load(), completed.Load())
	}
	pause := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}

	pause(1500 * time.Millisecond)
	t.Logf("SIGKILL %s (the Migrator's) with %s", b.Name(), progress())
	b.Kill()
	pause(2 * time.Second)
	began := time.Now()
	if err := b.Start(ctx); err != nil {
		t.Fatalf("start %s again: %v", b.Name(), err)
	}
	t.Logf("%s ready again %v after its restart", b.Name(), time.Since(began).Round(10*time.Millisecond))

	pause(time.Second)
	master, replica, err := env.MasterOf(ctx, "loom:{"+migration+"}:migration")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CLUSTER FAILOVER on %s, replica of %s, the master of the Migration's keys, with %s", replica.Addr, master.Addr, progress())
	began = time.Now()
	if err := replica.Failover(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s is master after %v", replica.Addr, time.Since(began).Round(10*time.Millisecond))

	pause(1500 * time.Millisecond)
	t.Logf("SIGKILL %s, now the master of the Migration's keys, with %s", replica.Addr, progress())
	replica.Kill()
	began = time.Now()
	if err := env.AwaitMaster(ctx, master, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s promoted master %v after the kill", master.Addr, time.Since(began).Round(10*time.Millisecond))
	// Back, the killed node rejoins as a replica.
	if err := replica.Start(ctx); err != nil {
		t.Fatalf("start %s again: %v", replica.Addr, err)
	}

	for started.Load() < int32(len(ids)) && ctx.Err() == nil {
		pause(100 * time.Millisecond)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Runs that did not complete (%s):\n%v", progress(), err)
	}
	t.Logf("%s; unavailable answers to the callers of %s and %s: %s", progress(), a.Name(), c.Name(), cs)
	checkRuns(ctx, t, env, ids)
	checkHistories(ctx, t, watcher, ids)
	feeds.check(ctx, t)
	t.Logf("steps dispatched by each replica's worker: %s", dispatchesByReplica(t, env))
}
