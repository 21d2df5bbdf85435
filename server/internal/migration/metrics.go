package migration

import (
	"context"
	"time"
)

// MigrationMetrics are a Migration's figures, kept up to date as events
// happen (never computed by scanning Candidates or events).
type MigrationMetrics struct {
	MigrationID      string
	Counts           CandidateCounts
	CurrentSteps     []CurrentStepCount
	OpenPullRequests int64
	AwaitingReview   int64
	Failed           int64
	Burndown         []BurndownPoint
	StepDurations    []StepDurations
	RecentFailures   []Failure
	Stuck            []StuckCandidate
	StuckCount       int64
	// EventsPerDay counts lifecycle events per UTC day over the last
	// EventDays days, oldest first, zeros included.
	EventsPerDay []DayCount
	// DispatchFailing counts the running Runs whose current step Loom
	// cannot hand to its Migrator now.
	DispatchFailing int64
}

// EventDays is how many days MigrationMetrics.EventsPerDay covers.
const EventDays = 30

// DayCount is a count for the UTC day starting at Day.
type DayCount struct {
	Day   time.Time
	Count int64
}

// CurrentStepCount is how many running Runs are at one step in one status.
type CurrentStepCount struct {
	Step   string
	Status StepStatus
	Count  int64
}

// BurndownPoint is one bucket of Runs started and completed.
type BurndownPoint struct {
	Start     time.Time
	Started   int64
	Completed int64
}

// StepDurations summarizes one step's successful attempts.
type StepDurations struct {
	Step                         string
	Count                        int64
	P50, P95, Max                time.Duration
	MergedCount                  int64
	MergeP50, MergeP95, MergeMax time.Duration
	// FailedCount is how many attempts of the step failed.
	FailedCount int64
	// SkippedCount is how many attempts of the step an operator skipped
	// (not in Count: a skipped step is not measured).
	SkippedCount int64
}

// Failure is one step failure.
type Failure struct {
	Time        time.Time
	CandidateID string
	Step        string
	Attempt     int
	Message     string
}

// StuckCandidate is a running Candidate without an event for a while.
type StuckCandidate struct {
	CandidateID   string
	LastEventTime time.Time
}

// MetricsQuery shapes a metrics read.
type MetricsQuery struct {
	// StuckAfter: a running Candidate silent for longer is stuck.
	StuckAfter time.Duration
	// Daily buckets the burndown by day instead of by hour.
	Daily bool
	Now   time.Time
}

// MigrationSummary is a Migration's headline figures.
type MigrationSummary struct {
	Migration         Migration
	OpenPullRequests  int64
	AwaitingReview    int64
	Failed            int64
	CompletedLastDays []int64
	DispatchFailing   int64
}

// FleetPage is one page of the fleet overview.
type FleetPage struct {
	Migrations []MigrationSummary
	Next       string
}

// MetricsStore reads the figures the store keeps.
type MetricsStore interface {
	MigrationMetrics(ctx context.Context, migrationID string, q MetricsQuery) (MigrationMetrics, error)
	FleetOverview(ctx context.Context, page PageRequest, now time.Time) (FleetPage, error)
}

// DurationBuckets are the upper bounds of the fixed histogram buckets of
// step durations; a duration above the last falls in an open last bucket.
var DurationBuckets = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
	2 * 24 * time.Hour, 4 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 30 * 24 * time.Hour,
}

// BucketOf is the index of d's bucket (len(DurationBuckets) for the open one).
func BucketOf(d time.Duration) int {
	for i, b := range DurationBuckets {
		if d <= b {
			return i
		}
	}
	return len(DurationBuckets)
}

// Percentile returns the upper bound of the bucket holding quantile q of
// counts (per bucket), capped at max.
func Percentile(counts []int64, q float64, max time.Duration) time.Duration {
	var total int64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := int64(q*float64(total) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			if i >= len(DurationBuckets) || DurationBuckets[i] > max {
				return max
			}
			return DurationBuckets[i]
		}
	}
	return max
}
