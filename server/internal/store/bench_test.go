package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

// BenchmarkListCandidatesPairs reads the first page (100 rows) of the two
// costliest pairs of filters of the scale bench (internal/bench, "page,
// pairs") in a Migration of 100,000 Candidates of 4 kinds and 20 teams
// spread independently of their ids: last-change order + a team (the
// walk examines ~20 Candidates per row), and a kind + a team (an estimated
// total, then a walk of the team checking the kind); and, to compare, the
// order and the team alone. A hundred Candidates running, as in the scale
// bench, to make the status sets real.
func BenchmarkListCandidatesPairs(b *testing.B) {
	s, rdb := newStore(b)
	const n, m = 100_000, "pairs"
	kinds := []string{"service", "repository", "topic", "library"}
	ctx := context.Background()
	mustPut(b, s, m)
	hash := func(i int) uint64 { return uint64(i)*0x9E3779B97F4A7C15 ^ uint64(i)>>7 }
	for start := 0; start < n; start += migration.MaxSubmitCandidates {
		cs := make([]migration.Candidate, 0, migration.MaxSubmitCandidates)
		for i := start; i < min(start+migration.MaxSubmitCandidates, n); i++ {
			h := hash(i)
			id := fmt.Sprintf("org-%d/svc-%06d", i%10, i)
			cs = append(cs, migration.Candidate{ID: id, Kind: kinds[h%4],
				Metadata: map[string]string{"team": fmt.Sprintf("team-%02d", (h>>16)%20), "repo": "git@git.example:" + id + ".git"}})
		}
		if _, err := s.SubmitCandidates(ctx, migration.Submission{MigrationID: m, Candidates: cs}, t0.Add(time.Duration(start)*time.Millisecond)); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		if err := s.SetCandidateStatus(ctx, m, fmt.Sprintf("org-%d/svc-%06d", (i*997)%10, i*997), migration.CandidateNotStarted, migration.CandidateRunning, t0); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		f    func(call int) migration.CandidateFilter
	}{
		{"change", func(call int) migration.CandidateFilter {
			return migration.CandidateFilter{Order: migration.OrderByLastChange}
		}},
		{"team", func(call int) migration.CandidateFilter {
			return migration.CandidateFilter{Metadata: map[string]string{"team": fmt.Sprintf("team-%02d", call%20)}}
		}},
		{"change+team", func(call int) migration.CandidateFilter {
			return migration.CandidateFilter{Order: migration.OrderByLastChange, Metadata: map[string]string{"team": fmt.Sprintf("team-%02d", call%20)}}
		}},
		{"kind+team", func(call int) migration.CandidateFilter {
			return migration.CandidateFilter{Kind: kinds[call%4], Metadata: map[string]string{"team": fmt.Sprintf("team-%02d", call%20)}}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			call := 0
			rdb.ConfigSet(ctx, "slowlog-log-slower-than", "0")
			rdb.ConfigSet(ctx, "slowlog-max-len", "10000")
			rdb.SlowLogReset(ctx)
			cpu0 := redisCPU(b, rdb)
			for b.Loop() {
				p, err := s.ListCandidates(ctx, m, bc.f(call), migration.PageRequest{Limit: 100})
				if err != nil {
					b.Fatal(err)
				}
				if len(p.Candidates) != 100 {
					b.Fatalf("page of %d", len(p.Candidates))
				}
				call++
			}
			// Redis's own CPU per page, and the script's time as Redis
			// logs it: what the script costs, whatever else the machine
			// runs (the client's time per page is not).
			b.ReportMetric(float64((redisCPU(b, rdb)-cpu0).Microseconds())/float64(b.N), "redis-µs/op")
			logs, _ := rdb.SlowLogGet(ctx, 10000).Result()
			var ds []time.Duration
			for _, l := range logs {
				if len(l.Args) > 0 && strings.EqualFold(l.Args[0], "evalsha") {
					ds = append(ds, l.Duration)
				}
			}
			slices.Sort(ds)
			if len(ds) > 0 {
				b.ReportMetric(float64(ds[len(ds)/10].Microseconds()), "p10-µs")
				b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
			}
		})
	}
}

// redisCPU is the CPU time the Redis of rdb has used in its main thread.
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, l := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(l, ":")
		if k == "used_cpu_user_main_thread" || k == "used_cpu_sys_main_thread" {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return time.Duration(sum * float64(time.Second))
}
