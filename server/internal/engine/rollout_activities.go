package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"go.temporal.io/sdk/activity"

	"github.com/loomhq/loom/server/internal/migration"
)

// RunStarter starts, reads and cancels Runs for rollouts: the Runs use
// case, so a rollout's Runs pass the same checks as any.
type RunStarter interface {
	Start(ctx context.Context, req migration.StartRequest) (migration.Run, error)
	GetRun(ctx context.Context, runID string) (migration.Run, error)
	CancelRun(ctx context.Context, runID, reason, actor string) (migration.Run, error)
}

// StartBatchInput is the input of StartRolloutRuns.
type StartBatchInput struct {
	MigrationID, RolloutID string
	// Offset and Count place the batch in the rollout's snapshot.
	Offset, Count int
	DefaultInputs map[string]string `json:",omitempty"`
	// Actor starts the Runs: the rollout's creator.
	Actor string
}

// StartBatchResult says what StartRolloutRuns did with the first Processed
// Candidates of its batch; the others are for the next batch.
type StartBatchResult struct {
	Processed  int
	Started    int
	Skipped    int
	SkipReason string `json:",omitempty"`
}

// StartRolloutRuns starts the Runs of a batch of a rollout's Candidates
// (a local activity), migration.BulkConcurrency at a time. A Candidate
// StartRun refuses is skipped, unless the refusal shows a Run this rollout
// started already (an earlier try of this batch): that one counts as
// started. When the store or engine fails, the batch stops at the first
// Candidate whose outcome is unknown; with none processed it fails, and
// Temporal retries it.
func (a *Activities) StartRolloutRuns(ctx context.Context, in StartBatchInput) (StartBatchResult, error) {
	ids, err := a.Rollouts.RolloutCandidates(ctx, in.MigrationID, in.RolloutID, in.Offset, in.Count)
	if err != nil {
		return StartBatchResult{}, err
	}
	type outcome struct {
		started bool
		skip    string
		err     error
	}
	outs := make([]outcome, len(ids))
	sctx := migration.WithActor(ctx, in.Actor)
	var (
		wg     sync.WaitGroup
		sem    = make(chan struct{}, migration.BulkConcurrency)
		failed atomic.Bool
	)
	for i, id := range ids {
		sem <- struct{}{}
		if failed.Load() {
			<-sem
			outs[i].err = errors.New("not tried: an earlier start failed")
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			_, err := a.Runs.Start(sctx, migration.StartRequest{MigrationID: in.MigrationID, CandidateID: id,
				DefaultInputs: in.DefaultInputs, RolloutID: in.RolloutID})
			var ref *migration.Refusal
			switch {
			case err == nil:
				outs[i].started = true
			case errors.As(err, &ref) && !errors.Is(err, migration.ErrUnavailable):
				run, gerr := a.Runs.GetRun(ctx, migration.RunID(in.MigrationID, id))
				switch {
				case gerr == nil && run.RolloutID == in.RolloutID:
					outs[i].started = true
				case gerr != nil && errors.Is(gerr, migration.ErrUnavailable):
					outs[i].err = gerr
					failed.Store(true)
				default:
					outs[i].skip = id + ": " + ref.Reason
				}
			default:
				outs[i].err = err
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	var res StartBatchResult
	for _, o := range outs {
		if o.err != nil {
			if res.Processed == 0 {
				return res, fmt.Errorf("start the runs of rollout %s: %w", in.RolloutID, o.err)
			}
			break
		}
		res.Processed++
		if o.started {
			res.Started++
		} else {
			res.Skipped++
			res.SkipReason = o.skip
		}
	}
	return res, nil
}

// WriteRolloutInput is the input of WriteRollout.
type WriteRolloutInput struct {
	Rollout migration.Rollout
	Events  []migration.Event `json:",omitempty"`
}

// WriteRollout writes a rollout's view with its events (a local activity).
func (a *Activities) WriteRollout(ctx context.Context, in WriteRolloutInput) error {
	_, err := a.Rollouts.SaveRollout(ctx, in.Rollout, in.Events)
	return permanentIfRefused(err)
}

// CountOpenPRs counts the running Runs of a Migration whose current step
// has its pull request open (a local activity).
func (a *Activities) CountOpenPRs(ctx context.Context, migrationID string) (int, error) {
	page, err := a.Store.ListRuns(ctx, migrationID, migration.RunFilter{Status: migration.RunRunning, CurrentStepStatus: migration.StepOpen},
		migration.PageRequest{Limit: 1})
	return int(page.Total), permanentIfRefused(err)
}

// CancelRunsInput is the input of CancelRolloutRuns.
type CancelRunsInput struct {
	MigrationID, RolloutID string
	// Upto is how many Candidates of the snapshot had their turn.
	Upto          int
	Reason, Actor string
}

// CancelRolloutRuns cancels the running Runs a rollout started, reading
// its snapshot a page at a time, migration.BulkConcurrency cancels at a
// time. Returns how many it cancelled. Idempotent: a Run cancelled
// already is no longer running.
func (a *Activities) CancelRolloutRuns(ctx context.Context, in CancelRunsInput) (int, error) {
	const page = 500
	var cancelled atomic.Int64
	cctx := migration.WithActor(ctx, in.Actor)
	for off := 0; off < in.Upto; off += page {
		ids, err := a.Rollouts.RolloutCandidates(ctx, in.MigrationID, in.RolloutID, off, min(page, in.Upto-off))
		if err != nil {
			return 0, err
		}
		var (
			wg   sync.WaitGroup
			sem  = make(chan struct{}, migration.BulkConcurrency)
			mu   sync.Mutex
			errs []error
		)
		for _, id := range ids {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				runID := migration.RunID(in.MigrationID, id)
				run, err := a.Runs.GetRun(ctx, runID)
				if err != nil || run.RolloutID != in.RolloutID || run.Status != migration.RunRunning {
					if err != nil && errors.Is(err, migration.ErrUnavailable) {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
					return
				}
				_, err = a.Runs.CancelRun(cctx, runID, in.Reason, in.Actor)
				var ref *migration.Refusal
				switch {
				case err == nil:
					cancelled.Add(1)
				case errors.As(err, &ref) && !errors.Is(err, migration.ErrUnavailable):
					// Ended meanwhile.
				default:
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			return int(cancelled.Load()), errors.Join(errs...)
		}
		activity.RecordHeartbeat(ctx, off)
	}
	return int(cancelled.Load()), nil
}
