package migratorsdk

import (
	"context"
	"errors"
	"fmt"
	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// StepHandler executes one step type. It runs in the background: Loom's
// dispatch has already been answered when it starts, so it may take minutes.
// It reports through d (Progress, Opened, AwaitingReview, Completed, Failed).
//
// What its return means:
//   - nil, having reported nothing final or waiting: the SDK reports
//     Completed;
//   - nil after Opened or AwaitingReview: the step stays there (a merge is
//     reported later, see Spec.CheckMerged; a review by an operator or by
//     d.Completed);
//   - an error: the SDK reports Failed with the error's message, which is
//     the reason an operator reads before retrying the step;
//   - a panic is recovered and reported as Failed.
//
// A report that did not reach Loom is not the handler's failure: Loom
// unreachable or failing past the SDK's retries, or answering
// STEP_NOT_CURRENT for the step it dispatched (Loom restarted between
// dispatching a step and recording the end of the step before it). When
// the handler returns that report's error (or nil), the SDK keeps the
// report and sends it again when Loom dispatches the step again (once it
// has caught up, or when the step's lease runs out); a handler cut short by
// such a Progress runs again on that dispatch.
//
// ctx ends when the Migrator stops. A handler must be idempotent: after a
// Migrator restart, or when Loom retries a dispatch whose answer it did not
// get, the same (Run, execution, step, attempt) can arrive again (duplicates
// while the Migrator runs are filtered for you).
type StepHandler func(ctx context.Context, d *Dispatch) error

// Dispatch is one step to execute, as Loom sent it, and the way to report
// on it.
type Dispatch struct {
	RunID       string
	Execution   int64
	MigrationID string
	Step        Step
	// StepIndex is the step's position in the Run, from 0.
	StepIndex int
	// Attempt is 1, then one more after each retry an operator asked for.
	Attempt   int
	Candidate Candidate
	// Inputs are the operator's inputs at the time of this dispatch.
	Inputs map[string]string

	client        *Client
	log           *slog.Logger
	callbackToken string
	mu            sync.Mutex
	last          StepStatus
	// lastReport is the last report the handler made (or tried to make),
	// finished is set once the handler returned: a dispatch of the same
	// step arriving then sends lastReport again (see resend).
	lastReport *Report
	finished   bool
	// undelivered is set while the last report has not landed for a reason
	// that is no judgement of it: Loom unreachable, failing, or not yet at
	// this step (STEP_NOT_CURRENT after a restart). It is kept, and sent
	// again when Loom dispatches the step again.
	undelivered bool
}

// ReportOption adds to a report.
type ReportOption func(*Report)

// WithMetadata attaches key-value pairs to the step (they replace earlier
// ones), e.g. the branch a pull request comes from.
func WithMetadata(m map[string]string) ReportOption { return func(r *Report) { r.Metadata = m } }

// WithMessage sets the message operators read on the step.
func WithMessage(msg string) ReportOption { return func(r *Report) { r.Message = msg } }

// Progress reports that the step is under way, with a message.
func (d *Dispatch) Progress(ctx context.Context, message string, opts ...ReportOption) error {
	return d.report(ctx, StatusInProgress, "", message, opts)
}

// Opened reports the pull request the step opened: the step is open until
// the pull request is merged (Merged, or Spec.CheckMerged).
func (d *Dispatch) Opened(ctx context.Context, prURL string, opts ...ReportOption) error {
	return d.report(ctx, StatusOpen, prURL, "", opts)
}

// Merged reports that the step's pull request was merged: the Run moves on.
func (d *Dispatch) Merged(ctx context.Context, opts ...ReportOption) error {
	return d.report(ctx, StatusMerged, "", "", opts)
}

// AwaitingReview reports that the step waits for a person, with what they
// should check; an operator finishes it in Loom (or the Migrator, with
// Completed or Failed).
func (d *Dispatch) AwaitingReview(ctx context.Context, instructions string, opts ...ReportOption) error {
	return d.report(ctx, StatusAwaitingReview, "", instructions, opts)
}

// Completed reports that the step is done: the Run moves on.
func (d *Dispatch) Completed(ctx context.Context, opts ...ReportOption) error {
	return d.report(ctx, StatusCompleted, "", "", opts)
}

// Failed reports that the step failed, with a reason a person can act on.
// The Run holds until an operator retries the step.
func (d *Dispatch) Failed(ctx context.Context, reason string, opts ...ReportOption) error {
	return d.report(ctx, StatusFailed, "", reason, opts)
}

// report sends a report, retrying while Loom is unreachable. A refusal
// (the Run moved on, was cancelled, or the transition is not allowed) is
// returned at once: see IsRefused.
func (d *Dispatch) report(ctx context.Context, s StepStatus, prURL, message string, opts []ReportOption) error {
	r := Report{RunID: d.RunID, Execution: d.Execution, Step: d.Step.Name, Attempt: d.Attempt, Status: s, PRURL: prURL, Message: message,
		CallbackToken: d.callbackToken}
	for _, o := range opts {
		o(&r)
	}
	// Loom refuses longer messages; a refused Failed would leave the step
	// in progress, so cut rather than lose the report.
	r.Message = truncate(r.Message, maxMessage)
	return d.send(ctx, r)
}

// send sends r as the dispatch's latest report.
func (d *Dispatch) send(ctx context.Context, r Report) error {
	d.mu.Lock()
	d.lastReport = &r
	d.mu.Unlock()
	err := retry(ctx, func() error {
		_, err := d.client.ReportStep(ctx, r)
		return err
	}, func(err error, wait time.Duration) {
		d.log.Warn("report to Loom failed; retrying", "status", string(r.Status), "retry_in", wait, "error", err)
	})
	d.mu.Lock()
	// STEP_NOT_CURRENT is not a judgement of the report: either the Run
	// moved on, or Loom dispatched the step and then restarted before the
	// previous step's end was recorded.
	d.undelivered = err != nil && (!IsRefused(err) || RefusalReason(err) == loomv1.ErrorReason_STEP_NOT_CURRENT)
	undelivered := d.undelivered
	if err == nil {
		d.last = r.Status
	}
	d.mu.Unlock()
	if err != nil {
		return &reportError{status: r.Status, err: err, undelivered: undelivered}
	}
	return nil
}

// reportError is a report that did not land. undelivered says it was not
// Loom's judgement of the report (see Dispatch.undelivered).
type reportError struct {
	status      StepStatus
	err         error
	undelivered bool
}

func (e *reportError) Error() string { return fmt.Sprintf("report %s: %v", e.status, e.err) }
func (e *reportError) Unwrap() error { return e.err }

func (d *Dispatch) lastStatus() StepStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

func (d *Dispatch) key() string {
	return d.RunID + "\x00" + strconv.FormatInt(d.Execution, 10) + "\x00" + d.Step.Name + "\x00" + strconv.Itoa(d.Attempt)
}

// maxMessage is the longest message Loom takes (ReportStepStatusRequest).
const maxMessage = 4000

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len(" […]")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + " […]"
}

// resend sends the last report of a dispatch whose handler finished again:
// Loom dispatched the step again, so it did not get (or could not apply)
// that report. Loom answers a report it has already applied unchanged.
func (d *Dispatch) resend(ctx context.Context) {
	d.mu.Lock()
	r := d.lastReport
	d.mu.Unlock()
	if r == nil {
		return
	}
	if err := d.send(ctx, *r); err != nil && ctx.Err() == nil {
		d.log.Error("could not send the step's last report again", "status", string(r.Status), "error", err)
	}
}

// state says whether the handler is at rest (it returned, or reported a
// status it stays in until someone else acts: open, awaiting review, a
// final one), and whether it reported.
func (d *Dispatch) state() (atRest, reported bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	reported = d.lastReport != nil
	return d.finished || reported && d.lastReport.Status != StatusInProgress, reported
}

// execute runs the handler and reports what its return means.
func (d *Dispatch) execute(ctx context.Context, h StepHandler) {
	defer func() {
		d.mu.Lock()
		d.finished = true
		d.mu.Unlock()
	}()
	err := callHandler(ctx, h, d)

	// A report that did not land is no failure of the step: the work it
	// reports is done (or, for a Progress, under way). Unless the handler
	// failed on its own account, keep that report for the next dispatch of
	// the step, which Loom makes once it is back, caught up, or past the
	// step's lease.
	d.mu.Lock()
	undelivered, intent := d.undelivered, d.lastReport
	var re *reportError
	own := err != nil && !(errors.As(err, &re) && re.undelivered)
	keep := undelivered && !own
	if keep && intent.Status == StatusInProgress {
		// The handler stopped on that Progress, so its work is not done:
		// the next dispatch runs it again.
		d.lastReport = nil
	}
	d.mu.Unlock()
	if keep {
		if intent.Status != StatusInProgress && ctx.Err() != nil {
			// Stopping: one more try, on a context of its own.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if d.send(rctx, *intent) == nil {
				return
			}
		}
		d.log.Warn("the step's report did not reach Loom: kept, and sent again when Loom dispatches the step again",
			"status", string(intent.Status), "error", err)
		return
	}
	if ctx.Err() != nil && d.lastStatus() != StatusOpen && d.lastStatus() != StatusAwaitingReview && !d.lastStatus().final() {
		// The Migrator is stopping and cut the handler off: say so, on a
		// context of its own, so the step does not wait forever in progress.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if rerr := d.Failed(rctx, "interrupted: the Migrator stopped while executing the step; retry it"); rerr != nil {
			d.log.Error("could not report the interrupted step", "error", rerr)
		}
		return
	}
	switch last := d.lastStatus(); {
	case err != nil:
		d.log.Warn("step handler failed: reporting the step failed", "error", err)
		if rerr := d.Failed(ctx, err.Error()); rerr != nil {
			d.log.Error("could not report the step failed", "reason", err, "error", rerr)
		}
	case last == "" || last == StatusInProgress:
		if rerr := d.Completed(ctx); rerr != nil {
			d.log.Error("could not report the step completed", "error", rerr)
		}
	}
}

func callHandler(ctx context.Context, h StepHandler, d *Dispatch) (err error) {
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("step handler panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("the Migrator's handler for step type %q panicked: %v", d.Step.Type, p)
		}
	}()
	return h(ctx, d)
}

// seenDispatches remembers recent dispatches, so that a duplicate of one
// running or recently done is not executed twice.
type seenDispatches struct {
	mu    sync.Mutex
	at    map[string]seen
	order []string
	max   int
	ttl   time.Duration
}

type seen struct {
	at time.Time
	d  *Dispatch
}

func newSeenDispatches() *seenDispatches {
	return &seenDispatches{at: map[string]seen{}, max: 10000, ttl: 24 * time.Hour}
}

// claim records d under its key and returns nil when it is new; otherwise
// it returns the dispatch seen before under that key. replace, when set,
// makes d the one recorded in any case.
func (s *seenDispatches) claim(d *Dispatch, now time.Time, replace bool) *Dispatch {
	key := d.key()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.order) > 0 && (len(s.order) >= s.max || now.Sub(s.at[s.order[0]].at) > s.ttl) {
		delete(s.at, s.order[0])
		s.order = s.order[1:]
	}
	prev, ok := s.at[key]
	if ok && !replace {
		return prev.d
	}
	if !ok {
		s.order = append(s.order, key)
	}
	s.at[key] = seen{at: now, d: d}
	return nil
}
