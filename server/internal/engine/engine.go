// Package engine is the ExecutionEngine on Temporal: one workflow execution
// per Run execution (workflow id = RunID), its activities, the worker that
// runs them, and the client side that starts, updates and cancels Runs. It
// is the only package that imports the Temporal SDK.
package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/loomhq/loom/server/internal/migration"
)

// DefaultTaskQueue is the task queue of Runs when none is configured.
const DefaultTaskQueue = "loom-runs"

// Options configure the engine.
type Options struct {
	TaskQueue string
	// DispatchWindow is how long a dispatch retries an unreachable Migrator.
	DispatchWindow time.Duration
	// DispatchLease is how long an accepted dispatch may go without a report
	// before it is dispatched again, when the Migration sets none.
	DispatchLease time.Duration
	// CancelWait bounds how long CancelRun waits for the Run to stop.
	CancelWait time.Duration
}

// Engine implements migration.ExecutionEngine with a Temporal client.
type Engine struct {
	client client.Client
	opts   Options
}

var _ migration.ExecutionEngine = (*Engine)(nil)

// New returns an engine over c.
func New(c client.Client, opts Options) *Engine {
	if opts.TaskQueue == "" {
		opts.TaskQueue = DefaultTaskQueue
	}
	if opts.DispatchWindow <= 0 {
		opts.DispatchWindow = time.Hour
	}
	if opts.CancelWait <= 0 {
		opts.CancelWait = 30 * time.Second
	}
	return &Engine{client: c, opts: opts}
}

// NewWorker returns the Temporal worker that executes Runs; the caller
// starts and stops it.
func NewWorker(c client.Client, taskQueue string, acts *Activities) worker.Worker {
	if taskQueue == "" {
		taskQueue = DefaultTaskQueue
	}
	w := worker.New(c, taskQueue, worker.Options{})
	Register(w, acts)
	return w
}

var workflowRegisterOptions = workflow.RegisterOptions{Name: WorkflowName}

// Register registers the workflow and activities of Runs on r.
func Register(r worker.Registry, acts *Activities) {
	r.RegisterWorkflowWithOptions(RunWorkflow, workflowRegisterOptions)
	r.RegisterWorkflowWithOptions(RolloutWorkflow, workflow.RegisterOptions{Name: RolloutWorkflowName})
	r.RegisterActivity(acts)
}

// StartRun starts the workflow of one Run execution.
func (e *Engine) StartRun(ctx context.Context, m migration.Manifest) error {
	_, err := e.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        m.RunID,
		TaskQueue: e.opts.TaskQueue,
		// A Run id is reused by every start after a cancel; only one
		// execution may run at a time.
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("Run %s, execution %d", m.RunID, m.Execution),
	}, WorkflowName, RunInput{Manifest: m, DispatchWindow: e.opts.DispatchWindow,
		DispatchLease: e.opts.DispatchLease, Version: CurrentVersion})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return fmt.Errorf("run %s: %w", m.RunID, migration.ErrAlreadyExists)
	}
	return engineError(err)
}

// Act sends a step action to the running execution of runID and waits for
// its answer: refused by the workflow's validator, or applied.
//
// An update can be aborted before the workflow saw it when the workflow task
// carrying it fails for reasons of the worker, not of the action: typically
// right after a server restart, when the task went to the sticky queue of a
// worker that is gone. Temporal answers WorkflowNotReady then, and the action
// is sent again under the same update id, so it is applied at most once.
func (e *Engine) Act(ctx context.Context, runID string, a migration.StepAction) (migration.Acted, error) {
	// An operator's action is answered at once when Temporal is down (see
	// reachable); a Migrator's reports and redispatches, the hot path, are
	// not checked first: the SDK retries them anyway.
	if a.Kind != migration.ActionReport && a.Kind != migration.ActionRedispatch {
		if err := e.reachable(ctx); err != nil {
			return migration.Acted{}, err
		}
	}
	opts := client.UpdateWorkflowOptions{
		UpdateID:     uuid.NewString(),
		WorkflowID:   runID,
		UpdateName:   UpdateStepAction,
		Args:         []any{a},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	}
	var res ActionResult
	err := e.update(ctx, opts, &res)
	if step, ok := unchanged(err); ok {
		return migration.Acted{Step: step}, nil
	}
	if err != nil {
		return migration.Acted{}, decodeError(err)
	}
	return res.acted(a), nil
}

// update sends an update and waits for its answer into out, sending it
// again under its update id while Temporal answers WorkflowNotReady (see
// Act); the error is Temporal's, for the caller to decode.
func (e *Engine) update(ctx context.Context, opts client.UpdateWorkflowOptions, out any) error {
	for wait := 50 * time.Millisecond; ; wait *= 2 {
		h, err := e.client.UpdateWorkflow(ctx, opts)
		if err == nil {
			err = h.Get(ctx, out)
		}
		var notReady *serviceerror.WorkflowNotReady
		if !errors.As(err, &notReady) || wait > 2*time.Second {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// unchanged reads the answer of a repeated report the validator answered
// itself (see runFlow.validate): the step as it stands, nothing changed.
func unchanged(err error) (migration.StepResult, bool) {
	var appErr *temporal.ApplicationError
	if err == nil || !errors.As(err, &appErr) || appErr.Type() != errTypeUnchanged {
		return migration.StepResult{}, false
	}
	var step migration.StepResult
	if appErr.HasDetails() {
		_ = appErr.Details(&step)
	}
	return step, true
}

// CancelRun cancels the running execution of runID and waits until its
// workflow has recorded the cancel and ended.
func (e *Engine) CancelRun(ctx context.Context, runID, reason, actor string) error {
	if err := e.reachable(ctx); err != nil {
		return err
	}
	err := e.client.SignalWorkflow(ctx, runID, "", SignalCancel, CancelRequest{Reason: reason, Actor: actor})
	if err != nil {
		return decodeError(err)
	}
	if err := e.client.CancelWorkflow(ctx, runID, ""); err != nil {
		return decodeError(err)
	}
	wctx, cancel := context.WithTimeout(ctx, e.opts.CancelWait)
	defer cancel()
	return e.awaitClosed(wctx, runID)
}

// awaitClosed waits until the workflow runID has closed, asking every 50 ms
// rather than long-polling its close: Temporal's long poll sometimes misses
// the close of a workflow that ends quickly and answers only when it
// expires, 20 s later (seen with loom-bench).
func (e *Engine) awaitClosed(ctx context.Context, runID string) error {
	for {
		desc, err := e.client.DescribeWorkflowExecution(ctx, runID, "")
		if err != nil {
			return decodeError(err)
		}
		if desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return nil
		}
		select {
		case <-ctx.Done():
			return engineError(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Inspect says where the latest execution of runID stands: running (with
// the Run the workflow holds), completed (with its final Run), cancelled,
// failed (with why), or missing.
func (e *Engine) Inspect(ctx context.Context, runID string) (migration.EngineRun, error) {
	desc, err := e.client.DescribeWorkflowExecution(ctx, runID, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return migration.EngineRun{State: migration.EngineMissing}, nil
	}
	if err != nil {
		return migration.EngineRun{}, engineError(err)
	}
	switch st := desc.GetWorkflowExecutionInfo().GetStatus(); st {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		out := migration.EngineRun{State: migration.EngineRunning}
		if v, err := e.client.QueryWorkflow(ctx, runID, "", QueryRun); err == nil {
			var r migration.Run
			if v.Get(&r) == nil {
				out.Run = &r
			}
		}
		return out, nil
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		var r *migration.Run
		_ = e.client.GetWorkflow(ctx, runID, "").Get(ctx, &r)
		return migration.EngineRun{State: migration.EngineCompleted, Run: r}, nil
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return migration.EngineRun{State: migration.EngineCancelled}, nil
	default:
		reason := strings.ToLower(strings.TrimPrefix(st.String(), "WORKFLOW_EXECUTION_STATUS_"))
		if err := e.client.GetWorkflow(ctx, runID, "").Get(ctx, nil); err != nil {
			reason += ": " + err.Error()
		}
		return migration.EngineRun{State: migration.EngineFailed, Reason: reason}, nil
	}
}

// StartRollout starts a rollout's workflow.
func (e *Engine) StartRollout(ctx context.Context, r migration.Rollout) error {
	_, err := e.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       RolloutWorkflowID(r.MigrationID, r.ID),
		TaskQueue:                                e.opts.TaskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("Rollout %s of %s: %d candidates", r.ID, r.MigrationID, r.Progress.Planned),
	}, RolloutWorkflowName, RolloutInput{Rollout: r})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return fmt.Errorf("rollout %s: %w", r.ID, migration.ErrAlreadyExists)
	}
	return engineError(err)
}

// ControlRollout sends an operator's action to a running rollout and waits
// until it took effect (resent while Temporal answers WorkflowNotReady: see
// update).
func (e *Engine) ControlRollout(ctx context.Context, m, r string, c migration.RolloutControl) (migration.Controlled, error) {
	if err := e.reachable(ctx); err != nil {
		return migration.Controlled{}, err
	}
	var res ControlResult
	err := e.update(ctx, client.UpdateWorkflowOptions{
		UpdateID:     uuid.NewString(),
		WorkflowID:   RolloutWorkflowID(m, r),
		UpdateName:   UpdateRolloutControl,
		Args:         []any{c},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	}, &res)
	if err != nil {
		return migration.Controlled{}, decodeError(err)
	}
	return migration.Controlled{Rollout: res.Rollout, CancelledRuns: res.CancelledRuns}, nil
}

// reachWait bounds how long reachable waits for Temporal's answer.
const reachWait = 5 * time.Second

// reachable answers unavailable at once when Temporal cannot be reached
// (its health check fails), before anything is sent: an update's own
// retries would hold an operator's call for the client's whole retry
// window, a minute, before answering the same.
func (e *Engine) reachable(ctx context.Context) error {
	hctx, cancel := context.WithTimeout(ctx, reachWait)
	defer cancel()
	_, err := e.client.CheckHealth(hctx, &client.CheckHealthRequest{})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return migration.Unavailable(migration.ReasonExecutionEngineFailure, "the execution engine is unavailable: %v", err)
	}
}

// decodeError turns what the Temporal client returns into the domain's
// errors: the workflow's refusals back into migration.Refusal, a missing or
// closed execution into ErrRunNotActive.
func decodeError(err error) error {
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && strings.HasPrefix(appErr.Type(), errKindPrefix) {
		kind, reason, _ := strings.Cut(strings.TrimPrefix(appErr.Type(), errKindPrefix), ".")
		ref := &migration.Refusal{Kind: kindByName(kind), Reason: reason, Message: appErr.Message()}
		if appErr.HasDetails() {
			if appErr.Details(&ref.Metadata, &ref.Field) != nil {
				_ = appErr.Details(&ref.Metadata) // a refusal of an older Loom: no field
			}
		}
		return ref
	}
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return fmt.Errorf("%w: %v", migration.ErrRunNotActive, err)
	}
	return engineError(err)
}

// engineError marks failures to reach Temporal as unavailable.
func engineError(err error) error {
	if err == nil {
		return nil
	}
	var unavailable *serviceerror.Unavailable
	var deadline *serviceerror.DeadlineExceeded
	var notReady *serviceerror.WorkflowNotReady
	if errors.As(err, &unavailable) || errors.As(err, &deadline) || errors.As(err, &notReady) || errors.Is(err, context.DeadlineExceeded) {
		return migration.Unavailable(migration.ReasonExecutionEngineFailure, "the execution engine is unavailable: %v", err)
	}
	return err
}

var kinds = map[string]error{
	"not_found":           migration.ErrNotFound,
	"already_exists":      migration.ErrAlreadyExists,
	"failed_precondition": migration.ErrFailedPrecondition,
	"invalid_argument":    migration.ErrInvalidArgument,
	"unavailable":         migration.ErrUnavailable,
}

func kindName(kind error) string {
	for name, k := range kinds {
		if k == kind {
			return name
		}
	}
	return "failed_precondition"
}

func kindByName(name string) error {
	if k, ok := kinds[name]; ok {
		return k
	}
	return migration.ErrFailedPrecondition
}
