package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

// Many writers at once: submitters send overlapping batches (changing kinds
// and metadata, some completing a discovery round) while flippers move
// Candidates between statuses with SetCandidateStatus. Afterwards every
// index and counter must agree with the Candidate hashes, and no submitted
// Candidate may be missing.
func TestConcurrentSubmitsAndStatusChanges(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	s.sweepBatch = 16
	ctx := context.Background()
	mustPut(t, s, "m")

	const (
		nIDs        = 300
		submitters  = 8
		flippers    = 6
		submissions = 40
		flips       = 400
	)
	all := ids("org/repo.", 0, nIDs)
	kinds := []string{"svc", "repo", "topic"}
	var submitted sync.Map // id -> true once a submission including it succeeded
	var moves, refusals atomic.Int64

	var wg sync.WaitGroup
	errs := make(chan error, submitters+flippers)
	for w := range submitters {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range submissions {
				start := r.IntN(nIDs)
				n := 1 + r.IntN(60)
				var cs []migration.Candidate
				for j := range n {
					id := all[(start+j)%nIDs]
					cs = append(cs, cand(id, kinds[r.IntN(len(kinds))], "w", fmt.Sprint(w), "i", fmt.Sprint(r.IntN(3))))
				}
				sub := migration.Submission{MigrationID: "m", Candidates: cs}
				if i%10 == 9 {
					sub.Complete = true
					if w%2 == 0 {
						sub.Round = fmt.Sprintf("w%d-%d", w, i)
					}
				}
				res, err := s.SubmitCandidates(ctx, sub, at(i))
				if err != nil {
					errs <- fmt.Errorf("submitter %d: %w", w, err)
					return
				}
				if got := len(res.Added) + len(res.Updated) + len(res.Unchanged) + len(res.LeftAlone); got != n {
					errs <- fmt.Errorf("submitter %d: %d outcomes for %d candidates", w, got, n)
					return
				}
				for _, c := range cs {
					submitted.Store(c.ID, true)
				}
			}
		})
	}
	statuses := migration.CandidateStatuses
	for f := range flippers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(f), 2))
			for range flips {
				id := all[r.IntN(nIDs)]
				c, err := s.GetCandidate(ctx, "m", id)
				if errors.Is(err, migration.ErrNotFound) {
					continue // not discovered yet
				}
				if err != nil {
					errs <- fmt.Errorf("flipper %d: %w", f, err)
					return
				}
				to := statuses[r.IntN(len(statuses))]
				// Half the time use a stale "from" on purpose.
				from := c.Status
				if r.IntN(2) == 0 {
					from = statuses[r.IntN(len(statuses))]
				}
				err = s.SetCandidateStatus(ctx, "m", id, from, to, at(100))
				switch {
				case err == nil:
					moves.Add(1)
				case errors.Is(err, migration.ErrFailedPrecondition):
					refusals.Add(1)
				default:
					errs <- fmt.Errorf("flipper %d: %w", f, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if moves.Load() == 0 || refusals.Load() == 0 {
		t.Errorf("the test exercised too little: %d moves, %d refusals", moves.Load(), refusals.Load())
	}

	got := checkInvariants(t, rdb, "m")
	var want []string
	submitted.Range(func(k, _ any) bool { want = append(want, k.(string)); return true })
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%d candidates stored, %d submitted", len(got), len(want))
	}
	m, err := s.GetMigration(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	if m.Counts.Total() != int64(len(want)) {
		t.Errorf("counts %+v add up to %d, want %d", m.Counts, m.Counts.Total(), len(want))
	}
	t.Logf("%d candidates, counts %+v, %d status moves, %d refused", len(got), m.Counts, moves.Load(), refusals.Load())
}

// Announces and deletes of the same ids race; whatever the interleaving, a
// Migration that exists is in the global index once it is quiet (the index
// entry of a deleted one may only linger after a crash, not a race).
func TestConcurrentPutAndDeleteKeepTheIndex(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	migs := []string{"m0", "m1", "m2", "m3"}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 3))
			for i := range 150 {
				id := migs[r.IntN(len(migs))]
				var err error
				if (w+i)%2 == 0 {
					// Refused while a delete of the id sweeps its keys away.
					if _, _, _, err = s.PutMigration(ctx, testMigration(id), at(i)); isRefusal(err, migration.ReasonMigrationBeingDeleted) {
						err = nil
					}
				} else if _, err = s.DeleteMigration(ctx, id, time.Now()); errors.Is(err, migration.ErrNotFound) {
					err = nil
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	indexed := zmembers(t, rdb, migrationsKey())
	for _, id := range migs {
		exists := rdb.Exists(ctx, migrationKey(id)).Val() == 1
		if exists != slices.Contains(indexed, id) {
			t.Errorf("%s: exists %v, indexed %v", id, exists, slices.Contains(indexed, id))
		}
	}
}

// The race the global index update must survive, replayed deterministically:
// a PutMigration runs between DeleteMigration's script and its ZREM. It is
// refused (the Migration is being deleted) and changes nothing; once the
// delete is done, it creates the Migration again, indexed.
func TestPutBetweenDeleteScriptAndUnindex(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	s.afterDeleteScript = func(id string) {
		if _, _, _, err := s.PutMigration(ctx, testMigration(id), at(1)); !isRefusal(err, migration.ReasonMigrationBeingDeleted) {
			t.Errorf("put during delete: %v", err)
		}
	}
	if _, err := s.DeleteMigration(ctx, "m", time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := zmembers(t, rdb, migrationsKey()); len(got) != 0 {
		t.Errorf("index %v after the delete", got)
	}
	if _, created, _, err := s.PutMigration(ctx, testMigration("m"), at(2)); err != nil || !created {
		t.Fatalf("put after the delete: created %v, %v", created, err)
	}
	if got := zmembers(t, rdb, migrationsKey()); !slices.Equal(got, []string{"m"}) {
		t.Errorf("index %v, want [m]: the re-created migration is unlisted", got)
	}
	page, err := s.ListMigrations(ctx, migration.PageRequest{})
	if err != nil || len(page.Migrations) != 1 {
		t.Errorf("list: %+v, %v", page, err)
	}
}

// isRefusal reports whether err is a migration.Refusal for reason.
func isRefusal(err error, reason string) bool {
	var r *migration.Refusal
	return errors.As(err, &r) && r.Reason == reason
}
