package server_test

import (
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
)

// DeleteMigration answers once the Migration is gone from every read; its
// keys are swept in the background at once (not at the sweeper's next
// minute), after which its id may be announced again.
func TestADeleteIsSweptInTheBackgroundAtOnce(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	var ids []string
	for i := range 600 {
		ids = append(ids, fmt.Sprintf("svc-%03d", i))
	}
	l.setup(t, w.migrator.url, ids...)
	rdb := redis.NewClient(&redis.Options{Addr: w.redis.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })

	res, err := l.registry.DeleteMigration(ctx, connect.NewRequest(&loomv1.DeleteMigrationRequest{MigrationId: "go-upgrade"}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.DeletedCandidates != 600 {
		t.Fatalf("deleted %d Candidates, want 600", res.Msg.DeletedCandidates)
	}
	_, err = l.registry.GetMigration(ctx, connect.NewRequest(&loomv1.GetMigrationRequest{MigrationId: "go-upgrade"}))
	wantCode(t, err, connect.CodeNotFound, loomv1.ErrorReason_MIGRATION_NOT_FOUND)
	_, err = l.discovery.GetCandidate(ctx, connect.NewRequest(&loomv1.GetCandidateRequest{MigrationId: "go-upgrade", CandidateId: ids[0]}))
	wantCode(t, err, connect.CodeNotFound, loomv1.ErrorReason_MIGRATION_NOT_FOUND)

	began := time.Now()
	for rdb.Exists(ctx, "loom:{go-upgrade}:deleting").Val() == 1 {
		if time.Since(began) > 20*time.Second {
			t.Fatal("the deleted Migration's keys were not swept within 20 s: the sweeper was not woken")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := rdb.Exists(ctx, "loom:{go-upgrade}:c:"+ids[599]).Val(); n != 0 {
		t.Fatal("a Candidate's hash is left after the sweep")
	}
	t.Logf("swept %d Candidates %v after the answer", len(ids), time.Since(began).Round(time.Millisecond))
	// The id is free again.
	l.setup(t, w.migrator.url, ids[:3]...)
}
