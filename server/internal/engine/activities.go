package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/loomhq/loom/server/internal/migration"
)

// Store is where the activities read Migrations and write run views.
type Store = migration.MigrationStore

// Activities are the side effects of a Run's workflow. Their method names
// are the activity names recorded in histories: never rename one.
type Activities struct {
	Store Store
	// Migrators sends dispatches (and signs their callback tokens).
	Migrators migration.MigratorNotifier
	// Rollouts keeps rollouts' views and snapshots, and Runs starts and
	// cancels their Runs.
	Rollouts migration.RolloutStore
	Runs     RunStarter
	// Signal sends a Run's RunChange to its rollout's workflow; a rollout
	// that ended is no error. Set by Client.NewWorker.
	Signal func(ctx context.Context, t RolloutTell) error
}

// BeginRun records the start of an execution (a local activity).
func (a *Activities) BeginRun(ctx context.Context, run migration.Run) (migration.Run, error) {
	stored, err := a.Store.BeginRun(ctx, run)
	return stored, permanentIfRefused(err)
}

// SaveRun writes the run view with its events (a local activity).
// Executions that still save synchronously use only the version it
// returns.
func (a *Activities) SaveRun(ctx context.Context, in SaveInput) (migration.Run, error) {
	version, err := a.Store.SaveRun(ctx, in.Run, in.Events, in.Observations)
	return migration.Run{Version: version}, permanentIfRefused(err)
}

// WriteView writes the run view with its events (a local activity): on an
// execution's first write, it records the execution first.
//
// StartRun records the execution itself just after starting the workflow,
// so the first write is usually accepted as it is; only when it finds the
// execution not recorded yet (StartRun is slower, or its process died)
// does it record it.
func (a *Activities) WriteView(ctx context.Context, in WriteInput) (ViewWritten, error) {
	version, err := a.Store.SaveRun(ctx, in.Run, in.Events, in.Observations)
	var ref *migration.Refusal
	if in.Begin != nil && errors.As(err, &ref) && ref.Reason == migration.ReasonStaleExecution {
		if _, err := a.Store.BeginRun(ctx, *in.Begin); err != nil {
			return ViewWritten{}, permanentIfRefused(err)
		}
		version, err = a.Store.SaveRun(ctx, in.Run, in.Events, in.Observations)
	}
	if err != nil {
		return ViewWritten{}, permanentIfRefused(err)
	}
	if in.Tell != nil && a.Signal != nil {
		// After the write: a failure here retries the write (idempotent)
		// and the signal (deduplicated by its request id).
		if err := a.Signal(ctx, *in.Tell); err != nil {
			return ViewWritten{}, err
		}
	}
	return ViewWritten{Version: version}, nil
}

// DispatchInput is the input of DispatchStep: the dispatch, and whether a
// first try was made in the workflow task already (it counts as try 1).
// Dispatches recorded before it existed decode into it unchanged.
type DispatchInput struct {
	migration.Dispatch
	TriedAtOnce bool `json:",omitempty"`
}

// DispatchStep sends one step to the Migrator. It reads the Migrator's URL
// from the current Migration and the inputs from the current Candidate, so
// a re-announce moves even Runs in flight and updated inputs reach the next
// dispatch. Transient failures are retried by Temporal; a Migrator's refusal
// is not.
func (a *Activities) DispatchStep(ctx context.Context, in DispatchInput) error {
	d := in.Dispatch
	rctx, read := startSpan(ctx, "DispatchStep: read Migration and Candidate")
	m, c, err := a.Store.GetMigrationAndCandidate(rctx, d.MigrationID, d.Candidate.ID)
	read.End()
	if err != nil {
		err = fmt.Errorf("read candidate %s of migration %s: %w", d.Candidate.ID, d.MigrationID, err)
		var ref *migration.Refusal
		if errors.As(err, &ref) && !errors.Is(err, migration.ErrUnavailable) {
			return permanentIfRefused(err)
		}
		return temporal.NewApplicationErrorWithCause(err.Error(), errTypeStoreUnavailable, err)
	}
	// A running Candidate is never changed by discovery: the one read now is
	// the one the Run started with, but for its inputs, which apply from the
	// next dispatch on.
	d.Candidate, d.Inputs = c, c.Inputs
	err = a.Migrators.ExecuteStep(ctx, m.MigratorURL, d)
	logger := log.With(activity.GetLogger(ctx), "execution", d.Execution, "step", d.Step.Name, "attempt", d.Attempt)
	if errors.Is(err, migration.ErrFailedPrecondition) || errors.Is(err, migration.ErrInvalidArgument) {
		logger.Warn("the Migrator refused the step", "migrator_url", m.MigratorURL, "error", err)
		return temporal.NewNonRetryableApplicationError(err.Error(), errTypeMigratorRefused, nil)
	}
	if err != nil && ctx.Err() == nil {
		// Record each failed try, on the Run's view too: Temporal retries
		// it within the window.
		info := activity.GetInfo(ctx)
		try, next := int(info.Attempt), time.Now()
		if !info.IsLocalActivity {
			next = next.Add(retryBackoff(try))
		}
		if in.TriedAtOnce {
			try++
		}
		logger.Warn("dispatch failed; retrying", "migrator_url", m.MigratorURL, "try", try, "error", err)
		ev := migration.Event{Time: time.Now().UTC(), Kind: migration.EventDispatchFailed, MigrationID: d.MigrationID,
			CandidateID: d.Candidate.ID, RunID: d.RunID, Execution: d.Execution, Step: d.Step.Name, Attempt: d.Attempt,
			Actor: migration.ActorLoom, Details: map[string]string{"reason": err.Error(), "try": strconv.Itoa(try)}}
		if rerr := a.Store.RecordDispatchFailure(ctx, ev, next); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return err
	}
	if err == nil && (in.TriedAtOnce || activity.GetInfo(ctx).Attempt > 1) {
		// Accepted after failures: they no longer hold the step up. (The
		// next view write drops them too, should this fail.)
		if cerr := a.Store.ClearDispatchFailure(ctx, d.MigrationID, d.Candidate.ID, d.Execution, d.Step.Name); cerr != nil {
			logger.Warn("could not clear the dispatch failures", "error", cerr)
		}
	}
	return err
}

// retryBackoff is the wait before the dispatch activity's try after try
// (its RetryPolicy in startDispatch: 1 s doubling, at most a minute).
func retryBackoff(try int) time.Duration {
	return min(time.Second<<min(try-1, 6), time.Minute)
}

// startSpan starts a span for a part of an activity, under the activity's
// own span (traced by Temporal's interceptor, when tracing is on).
func startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer("github.com/loomhq/loom/server/engine").Start(ctx, name)
}

// permanentIfRefused stops Temporal from retrying a write the store refused
// for a reason a retry cannot change.
func permanentIfRefused(err error) error {
	var ref *migration.Refusal
	if errors.As(err, &ref) && !errors.Is(err, migration.ErrUnavailable) {
		return temporal.NewNonRetryableApplicationError(err.Error(), errKindPrefix+kindName(ref.Kind)+"."+ref.Reason, nil)
	}
	return err
}
