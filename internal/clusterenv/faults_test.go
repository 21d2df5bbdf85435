// The fault scenarios of the cluster test, part of make test (make
// cluster-faults runs them alone): with 45 Runs under way, a replica is
// SIGKILLed and a Redis master failed over by hand, or a Redis master is
// SIGKILLed. Each takes about a minute here, half of it starting the
// topology. They found three problems of Loom, fixed since
// (docs/production.md, "Several replicas"): a Redis master's crash lost
// the writes its replica had not received (Loom now waits for a replica's
// acknowledgement, WAIT); a replica killed inside a workflow task left a
// Run's view ahead of Temporal, and an action on it was refused
// failed_precondition (now unavailable while the Run catches up); and the
// events of a change saved by a task that died were recorded again when
// the change was saved once more (each event now carries its change's
// seq). Their assertions are the acceptance of issue 19: every Run
// completes, nothing is lost or doubled, the callers of the surviving
// replicas see at most unavailable.

package clusterenv_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loomhq/loom/internal/clusterenv"
)

// TestReplicaKilledAndRedisFailedOver drives Runs as TestRunsAcrossReplicas
// does (started and driven through A, reported through B, watched through
// C), started one after another while, in turn: replica B is SIGKILLed
// (its worker's workflow tasks and activities in flight, the Migrator's
// reports refused) and started again 2 s later, as an orchestrator would;
// then the replica of the Redis master serving the Migration's keys is
// failed over by hand (CLUSTER FAILOVER, as for maintenance). Every Run
// must complete, each event be recorded and delivered once, and the
// callers of A and C see at most unavailable.
func TestReplicaKilledAndRedisFailedOver(t *testing.T) {
	underFaults(t, func(ctx context.Context, t *testing.T, env *clusterenv.Env, progress func() string) {
		b := env.Replicas[1]
		t.Logf("SIGKILL %s (the Migrator's) with %s", b.Name(), progress())
		b.Kill()
		pause(ctx, 2*time.Second)
		began := time.Now()
		if err := b.Start(ctx); err != nil {
			t.Fatalf("start %s again: %v", b.Name(), err)
		}
		t.Logf("%s ready again %v after its restart", b.Name(), time.Since(began).Round(10*time.Millisecond))
		pause(ctx, time.Second)
		master, replica := masterOfTheMigration(ctx, t, env)
		t.Logf("CLUSTER FAILOVER on %s, replica of %s, the master of the Migration's keys, with %s", replica.Addr, master.Addr, progress())
		began = time.Now()
		if err := replica.Failover(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s is master after %v", replica.Addr, time.Since(began).Round(10*time.Millisecond))
	})
}

// TestRedisMasterKilled does the same while the Redis master serving the
// Migration's keys is SIGKILLed, and its replica promoted by the cluster
// (about 3-4 s with a node timeout of 2 s), then started again as a
// replica.
//
// Redis replicates asynchronously: writes the master acknowledged but had
// not yet sent to its replica when it died are lost. This test fails when
// that window held a write of Loom's (a Run's history then misses events
// its watchers were sent), as it should until Loom waits for a replica's
// acknowledgement of its writes.
func TestRedisMasterKilled(t *testing.T) {
	underFaults(t, func(ctx context.Context, t *testing.T, env *clusterenv.Env, progress func() string) {
		master, replica := masterOfTheMigration(ctx, t, env)
		t.Logf("SIGKILL %s, the master of the Migration's keys, with %s", master.Addr, progress())
		master.Kill()
		began := time.Now()
		if err := env.AwaitMaster(ctx, replica, time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s promoted master %v after the kill", replica.Addr, time.Since(began).Round(10*time.Millisecond))
		// Back, the killed node rejoins as a replica.
		if err := master.Start(ctx); err != nil {
			t.Fatalf("start %s again: %v", master.Addr, err)
		}
	})
}

// underFaults starts the environment and 45 Runs, 150 ms apart, the
// operator taking 300 ms to act on each step (about 8 Runs under way at
// any time); 1.5 s in it calls faults, then waits for every Run and checks
// what TestRunsAcrossReplicas checks, the callers of A and C having been
// allowed unavailable answers (tried again and counted).
func underFaults(t *testing.T, faults func(ctx context.Context, t *testing.T, env *clusterenv.Env, progress func() string)) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	const fleet = 56 // 45 Candidates
	env := start(ctx, t, fleet)
	a, c := env.Replicas[0], env.Replicas[2]
	op := newClient(a.URL, env.Tokens["operator"])
	watcher := newClient(c.URL, env.Tokens["viewer"])
	ids := waitCandidates(ctx, t, watcher, candidatesOf(fleet))
	cs := &calls{}
	feeds := watchFeeds(ctx, t, cs, watcher, op, ids[0])

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
			pause(ctx, 150*time.Millisecond)
		}
	}()
	progress := func() string {
		return fmt.Sprintf("%d Runs started, %d completed", started.Load(), completed.Load())
	}
	pause(ctx, 1500*time.Millisecond)
	faults(ctx, t, env, progress)

	for started.Load() < int32(len(ids)) && ctx.Err() == nil {
		pause(ctx, 100*time.Millisecond)
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

// masterOfTheMigration is the Redis node serving the Migration's keys (all
// share its hash tag) and its replica.
func masterOfTheMigration(ctx context.Context, t *testing.T, env *clusterenv.Env) (master, replica *clusterenv.RedisNode) {
	t.Helper()
	master, replica, err := env.MasterOf(ctx, "loom:{"+migration+"}:migration")
	if err != nil {
		t.Fatal(err)
	}
	return master, replica
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
