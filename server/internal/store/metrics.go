package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// metrics.go owns the figures: a Migration's dashboard and the fleet
// overview, read at a fixed cost whatever the Migration's size.

var _ migration.MetricsStore = (*Store)(nil)

// Reading metrics costs a fixed number of reads whatever the Migration's
// size: the hashes hold per-step and per-bucket fields, the failures list is
// capped, and stuck Candidates are a range of the activity index.

const (
	maxStuckListed  = 100
	hourMillis      = int64(time.Hour / time.Millisecond)
	overviewDays    = 14
	dayHours        = 24
	maxBurndownBars = 24 * 90 // hours shown at most, or days when daily
)

// MigrationMetrics reads a Migration's figures.
func (s *Store) MigrationMetrics(ctx context.Context, m string, q migration.MetricsQuery) (migration.MigrationMetrics, error) {
	cutoff := millis(q.Now.Add(-q.StuckAfter))
	pipe := s.rdb.Pipeline()
	mig := pipe.HGetAll(ctx, migrationKey(m))
	figs := pipe.HGetAll(ctx, metricsKey(m))
	burn := pipe.HGetAll(ctx, burndownKey(m))
	days := pipe.HGetAll(ctx, eventDaysKey(m))
	fails := pipe.LRange(ctx, failuresKey(m), 0, 49)
	stuckN := pipe.ZCount(ctx, activityKey(m), "-inf", strconv.FormatInt(cutoff, 10))
	stuck := pipe.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: activityKey(m), Start: "-inf", Stop: strconv.FormatInt(cutoff, 10),
		ByScore: true, Count: maxStuckListed})
	failing := pipe.ZCard(ctx, runDispatchFailingKey(m))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return migration.MigrationMetrics{}, fmt.Errorf("read metrics of %s: %w", m, err)
	}
	if len(mig.Val()) == 0 {
		return migration.MigrationMetrics{}, migration.MigrationNotFound(m)
	}
	def, err := decodeMigration(m, mig.Val())
	if err != nil {
		return migration.MigrationMetrics{}, err
	}
	out := migration.MigrationMetrics{MigrationID: m, Counts: def.Counts, StuckCount: stuckN.Val(), DispatchFailing: failing.Val()}
	cur, durs := parseFigures(figs.Val(), def.Steps)
	out.CurrentSteps = cur
	out.StepDurations = durs
	out.OpenPullRequests, out.AwaitingReview, out.Failed = attention(cur)
	out.Burndown = burndown(burn.Val(), def.CreateTime, q.Now, q.Daily)
	for _, raw := range fails.Val() {
		var f struct {
			T string `json:"t"`
			C string `json:"c"`
			S string `json:"s"`
			A any    `json:"a"`
			M string `json:"m"`
		}
		if err := json.Unmarshal([]byte(raw), &f); err != nil {
			continue
		}
		ms, _ := strconv.ParseInt(f.T, 10, 64)
		attempt, _ := strconv.Atoi(fmt.Sprint(f.A))
		out.RecentFailures = append(out.RecentFailures, migration.Failure{Time: time.UnixMilli(ms).UTC(), CandidateID: f.C, Step: f.S, Attempt: attempt, Message: f.M})
	}
	out.EventsPerDay = eventsPerDay(days.Val(), q.Now)
	for _, z := range stuck.Val() {
		out.Stuck = append(out.Stuck, migration.StuckCandidate{CandidateID: z.Member.(string), LastEventTime: time.UnixMilli(int64(z.Score)).UTC()})
	}
	return out, nil
}

// eventsPerDay reads the events-per-day hash into the last
// migration.EventDays days up to now's, zeros included.
func eventsPerDay(h map[string]string, now time.Time) []migration.DayCount {
	const day = 24 * time.Hour
	today := now.UTC().Truncate(day)
	out := make([]migration.DayCount, migration.EventDays)
	for i := range out {
		d := today.Add(-time.Duration(migration.EventDays-1-i) * day)
		n, _ := strconv.ParseInt(h[strconv.FormatInt(d.UnixMilli()/day.Milliseconds(), 10)], 10, 64)
		out[i] = migration.DayCount{Day: d, Count: n}
	}
	return out
}

// attention sums the running Runs an operator may have to act on: those
// whose current step has a pull request open, awaits review, or failed.
func attention(cur []migration.CurrentStepCount) (open, review, failed int64) {
	for _, c := range cur {
		switch c.Status {
		case migration.StepOpen:
			open += c.Count
		case migration.StepAwaitingReview:
			review += c.Count
		case migration.StepFailed:
			failed += c.Count
		}
	}
	return open, review, failed
}

// parseFigures reads the metrics hash: running Runs per current step and
// status, and per-step duration histograms, in the Migration's step order
// (steps only Candidates' own lists have come after, by name).
func parseFigures(h map[string]string, steps []migration.StepDefinition) ([]migration.CurrentStepCount, []migration.StepDurations) {
	order := map[string]int{}
	for i, s := range steps {
		order[s.Name] = i
	}
	rank := func(step string) int {
		if i, ok := order[step]; ok {
			return i
		}
		return len(order)
	}
	var cur []migration.CurrentStepCount
	type hist struct {
		n, mn, f  int64
		sk        int64
		run, mrg  []int64
		max, mmax time.Duration
	}
	hists := map[string]*hist{}
	get := func(step string) *hist {
		if hists[step] == nil {
			hists[step] = &hist{run: make([]int64, len(migration.DurationBuckets)+1), mrg: make([]int64, len(migration.DurationBuckets)+1)}
		}
		return hists[step]
	}
	for field, value := range h {
		n, _ := strconv.ParseInt(value, 10, 64)
		kind, rest, _ := strings.Cut(field, ":")
		switch kind {
		case "cur":
			i := strings.LastIndex(rest, ":")
			if i < 0 || n <= 0 {
				continue
			}
			cur = append(cur, migration.CurrentStepCount{Step: rest[:i], Status: migration.StepStatus(rest[i+1:]), Count: n})
		case "n":
			get(rest).n = n
		case "mn":
			get(rest).mn = n
		case "f":
			get(rest).f = n
		case "sk":
			get(rest).sk = n
		case "max":
			get(rest).max = time.Duration(n) * time.Millisecond
		case "mmax":
			get(rest).mmax = time.Duration(n) * time.Millisecond
		case "hn", "hm":
			i := strings.LastIndex(rest, ":")
			b, err := strconv.Atoi(rest[i+1:])
			if i < 0 || err != nil || b < 0 || b > len(migration.DurationBuckets) {
				continue
			}
			if kind == "hn" {
				get(rest[:i]).run[b] = n
			} else {
				get(rest[:i]).mrg[b] = n
			}
		}
	}
	sort.Slice(cur, func(i, j int) bool {
		if rank(cur[i].Step) != rank(cur[j].Step) {
			return rank(cur[i].Step) < rank(cur[j].Step)
		}
		if cur[i].Step != cur[j].Step {
			return cur[i].Step < cur[j].Step
		}
		return slices.Index(migration.StepStatuses, cur[i].Status) < slices.Index(migration.StepStatuses, cur[j].Status)
	})
	var durs []migration.StepDurations
	for step, h := range hists {
		durs = append(durs, migration.StepDurations{
			Step: step, Count: h.n, Max: h.max,
			P50: migration.Percentile(h.run, 0.5, h.max), P95: migration.Percentile(h.run, 0.95, h.max),
			MergedCount: h.mn, MergeMax: h.mmax, FailedCount: h.f, SkippedCount: h.sk,
			MergeP50: migration.Percentile(h.mrg, 0.5, h.mmax), MergeP95: migration.Percentile(h.mrg, 0.95, h.mmax),
		})
	}
	sort.Slice(durs, func(i, j int) bool {
		if rank(durs[i].Step) != rank(durs[j].Step) {
			return rank(durs[i].Step) < rank(durs[j].Step)
		}
		return durs[i].Step < durs[j].Step
	})
	return cur, durs
}

// burndown turns the hourly counters into buckets from the Migration's
// announce to now: by hour, or by day when daily.
func burndown(h map[string]string, since, now time.Time, daily bool) []migration.BurndownPoint {
	first := since.UnixMilli() / hourMillis
	last := now.UnixMilli() / hourMillis
	step := int64(1)
	if daily {
		step = dayHours
		first -= first % dayHours
	}
	if (last-first)/step > maxBurndownBars {
		first = last - maxBurndownBars*step
	}
	var out []migration.BurndownPoint
	for b := first; b <= last; b += step {
		p := migration.BurndownPoint{Start: time.UnixMilli(b * hourMillis).UTC()}
		for hr := b; hr < b+step; hr++ {
			k := strconv.FormatInt(hr, 10)
			s, _ := strconv.ParseInt(h["s:"+k], 10, 64)
			c, _ := strconv.ParseInt(h["c:"+k], 10, 64)
			p.Started += s
			p.Completed += c
		}
		out = append(out, p)
	}
	return out
}

// FleetOverview pages through the Migrations with their headline figures.
func (s *Store) FleetOverview(ctx context.Context, page migration.PageRequest, now time.Time) (migration.FleetPage, error) {
	migs, err := s.ListMigrations(ctx, page)
	if err != nil {
		return migration.FleetPage{}, err
	}
	pipe := s.rdb.Pipeline()
	figs := make([]*redis.MapStringStringCmd, len(migs.Migrations))
	burns := make([]*redis.SliceCmd, len(migs.Migrations))
	failing := make([]*redis.IntCmd, len(migs.Migrations))
	lastHour := now.UnixMilli() / hourMillis
	var fields []string
	for d := overviewDays - 1; d >= 0; d-- {
		for h := 0; h < dayHours; h++ {
			fields = append(fields, "c:"+strconv.FormatInt(lastHour-int64(d*dayHours+dayHours-1-h), 10))
		}
	}
	for i, m := range migs.Migrations {
		figs[i] = pipe.HGetAll(ctx, metricsKey(m.ID))
		burns[i] = pipe.HMGet(ctx, burndownKey(m.ID), fields...)
		failing[i] = pipe.ZCard(ctx, runDispatchFailingKey(m.ID))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return migration.FleetPage{}, fmt.Errorf("read the fleet overview: %w", err)
	}
	out := migration.FleetPage{Next: migs.Next}
	for i, m := range migs.Migrations {
		sum := migration.MigrationSummary{Migration: m, CompletedLastDays: make([]int64, overviewDays), DispatchFailing: failing[i].Val()}
		cur, _ := parseFigures(figs[i].Val(), m.Steps)
		sum.OpenPullRequests, sum.AwaitingReview, sum.Failed = attention(cur)
		for j, v := range burns[i].Val() {
			if sv, ok := v.(string); ok {
				n, _ := strconv.ParseInt(sv, 10, 64)
				sum.CompletedLastDays[j/dayHours] += n
			}
		}
		out.Migrations = append(out.Migrations, sum)
	}
	return out, nil
}

// RunCounts returns, for every Migration, how many of its Runs are in each
// status: one ZCARD per Migration and status, pipelined. It is what a
// Prometheus scrape reads, so it costs O(Migrations), never O(Candidates).
func (s *Store) RunCounts(ctx context.Context) (map[string]map[migration.RunStatus]int64, error) {
	ids, err := s.rdb.ZRange(ctx, migrationsKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("count runs: %w", err)
	}
	cmds := make([][]*redis.IntCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			for _, st := range migration.RunStatuses {
				cmds[i] = append(cmds[i], p.ZCard(ctx, runStatusIndexKey(id, string(st))))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count runs: %w", err)
	}
	out := make(map[string]map[migration.RunStatus]int64, len(ids))
	for i, id := range ids {
		counts := make(map[migration.RunStatus]int64, len(migration.RunStatuses))
		for j, st := range migration.RunStatuses {
			counts[st] = cmds[i][j].Val()
		}
		out[id] = counts
	}
	return out, nil
}
