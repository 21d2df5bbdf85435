package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

var benchKinds = []string{"service", "repository", "topic"}

func benchID(i int) string { return fmt.Sprintf("acme/repo-%06d", i) }

func benchCandidate(i int, rev string) migration.Candidate {
	return migration.Candidate{
		ID:       benchID(i),
		Kind:     benchKinds[i%len(benchKinds)],
		Metadata: map[string]string{"team": fmt.Sprintf("team-%d", i%50), "repo": "git@git.example:" + benchID(i) + ".git", "rev": rev},
		Files: []migration.FileGroup{{Name: "charts", Files: []migration.FileRef{
			{Path: "charts/app/Chart.yaml", URL: "https://git.example/" + benchID(i) + "/charts/app/Chart.yaml"},
		}}},
	}
}

// loadMigration announces m and submits n Candidates in batches of
// migration.MaxSubmitCandidates, a few batches at a time.
func loadMigration(b *testing.B, s *Store, m string, n int) {
	b.Helper()
	mustPut(b, s, m)
	batches := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for start := range batches {
				cs := make([]migration.Candidate, 0, migration.MaxSubmitCandidates)
				for i := start; i < min(start+migration.MaxSubmitCandidates, n); i++ {
					cs = append(cs, benchCandidate(i, "0"))
				}
				if _, err := s.SubmitCandidates(context.Background(), migration.Submission{MigrationID: m, Candidates: cs}, t0); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for start := 0; start < n; start += migration.MaxSubmitCandidates {
		batches <- start
	}
	close(batches)
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// BenchmarkListCandidatesPage reads a page of 100 Candidates from the middle
// of a Migration of 100,000 (the scale target is ≤ 10 ms).
func BenchmarkListCandidatesPage(b *testing.B) {
	s, _ := newStore(b)
	const n = 100_000
	loadMigration(b, s, "big", n)
	ctx := context.Background()
	// A third of the Candidates running, to make the filtered indexes real.
	for i := 0; i < n; i += 300 {
		for j := i; j < i+100; j++ {
			if err := s.SetCandidateStatus(ctx, "big", benchID(j), migration.CandidateNotStarted, migration.CandidateRunning, t0); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, bc := range []struct {
		name string
		f    migration.CandidateFilter
	}{
		{"all", migration.CandidateFilter{}},
		{"status+kind", migration.CandidateFilter{Status: migration.CandidateNotStarted, Kind: "service"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			page := migration.PageRequest{After: benchID(n / 2), Limit: 100}
			for b.Loop() {
				p, err := s.ListCandidates(ctx, "big", bc.f, page)
				if err != nil {
					b.Fatal(err)
				}
				if len(p.Candidates) != 100 || p.Next == "" {
					b.Fatalf("page of %d, next %q", len(p.Candidates), p.Next)
				}
			}
		})
	}
}

// BenchmarkSubmitOne re-discovers one Candidate with changed metadata (an
// update: def rewritten, indexes untouched) in Migrations of 1,000 and
// 100,000 Candidates: the cost must not depend on the size.
func BenchmarkSubmitOne(b *testing.B) {
	s, _ := newStore(b)
	sizes := []int{1_000, 100_000}
	for _, n := range sizes {
		loadMigration(b, s, fmt.Sprint("m", n), n)
	}
	ctx := context.Background()
	for _, n := range sizes {
		b.Run(fmt.Sprint("candidates=", n), func(b *testing.B) {
			m := fmt.Sprint("m", n)
			i := 0
			for b.Loop() {
				i++
				res, err := s.SubmitCandidates(ctx, migration.Submission{MigrationID: m, Candidates: []migration.Candidate{benchCandidate(n/2, fmt.Sprint(i))}}, t0)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Updated) != 1 {
					b.Fatalf("%+v", res)
				}
			}
		})
	}
}

// BenchmarkMigrationMetrics reads the figures of a Migration of 100 and of
// 100,000 Candidates, each with a running Run on one of two steps: the cost
// must not grow with the Migration.
func BenchmarkMigrationMetrics(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		b.Run(fmt.Sprintf("candidates=%d", n), func(b *testing.B) {
			s, _ := newStore(b)
			m := fmt.Sprintf("metrics-%d", n)
			loadMigration(b, s, m, n)
			ctx := context.Background()
			// Start a Run for a tenth of them, at most 1,000: enough to fill
			// every figure; the figures' size does not depend on the count.
			for i := 0; i < min(n/10, 1000); i++ {
				r := newRun(m, benchID(i), 1, t0)
				if _, err := s.BeginRun(ctx, r); err != nil {
					b.Fatal(err)
				}
				r.BeginStep(i%2, 1, t0)
				if _, err := s.SaveRun(ctx, r, []migration.Event{r.DispatchedEvent(t0)}, nil); err != nil {
					b.Fatal(err)
				}
			}
			q := migration.MetricsQuery{StuckAfter: time.Hour, Now: t0.Add(24 * time.Hour)}
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.MigrationMetrics(ctx, m, q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendEvent measures the history's write path: one event, as a
// dispatch failure records it.
func BenchmarkAppendEvent(b *testing.B) {
	s, _ := newStore(b)
	mustPut(b, s, "events")
	ctx := context.Background()
	e := migration.Event{Time: t0, Kind: migration.EventDispatchFailed, MigrationID: "events", CandidateID: "c", RunID: "events__c",
		Execution: 1, Step: "s", Attempt: 1, Actor: "loom", Details: map[string]string{"reason": "connection refused"}}
	b.ResetTimer()
	for b.Loop() {
		if err := s.AppendEvents(ctx, "events", []migration.Event{e}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListCandidatesFiltered reads the first page (50 rows) of a
// Candidate table in last-change order, newest first, in Migrations of 100
// and 10,000 Candidates: with a combined filter (status, kind, metadata:
// a few matches, the smallest set decides the cost), and with a broad one
// (kind: a third of the Migration matches and is sorted).
func BenchmarkListCandidatesFiltered(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		s, _ := newStore(b)
		m := fmt.Sprintf("table-%d", n)
		loadMigration(b, s, m, n)
		ctx := context.Background()
		// A tenth changed later, each at its own time.
		for i := 0; i < n; i += 10 {
			if _, err := s.UpdateCandidateInputs(ctx, m, benchID(i), migration.InputChange{Set: map[string]string{"tag": "v2"}}, t0.Add(time.Duration(i)*time.Second)); err != nil {
				b.Fatal(err)
			}
		}
		for _, bc := range []struct {
			name string
			f    migration.CandidateFilter
		}{
			{"combined", migration.CandidateFilter{Status: migration.CandidateNotStarted, Kind: "service", Metadata: map[string]string{"team": "team-3"}}},
			{"kind", migration.CandidateFilter{Kind: "service"}},
		} {
			bc.f.Order, bc.f.Descending = migration.OrderByLastChange, true
			b.Run(fmt.Sprintf("%s/candidates=%d", bc.name, n), func(b *testing.B) {
				for b.Loop() {
					p, err := s.ListCandidates(ctx, m, bc.f, migration.PageRequest{Limit: 50})
					if err != nil {
						b.Fatal(err)
					}
					if len(p.Candidates) == 0 || p.Total == 0 {
						b.Fatalf("empty page: %+v", p)
					}
				}
			})
		}
	}
}
