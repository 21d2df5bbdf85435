package migration

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Bulk actions apply one operator action (retry, cancel, finish a review,
// mark merged, update inputs) to many Candidates of a Migration in one
// request. Each Candidate is acted on through the same use case as the
// single action, so the rules, the refusals and the history events (with
// the caller as actor) are the same; each is applied whole or not at all;
// one Candidate's refusal never stops the others.

// MaxBulkCandidates is the most Candidates one bulk action may select: a
// bound on the request's time (at BulkConcurrency at a time, 10,000 engine
// calls of ~10 ms take seconds; cancels, which wait for each Run to stop,
// a minute or two) and on the size of its answer.
const MaxBulkCandidates = 10000

// BulkConcurrency is how many Candidates a bulk action acts on at a time:
// enough to act on 1,000 in a few seconds, few enough that the execution
// engine never sees a burst (thousands of calls at once make Temporal's
// answers time out).
const BulkConcurrency = 16

// bulkActionTimeout bounds the action on one Candidate. A started action is
// not cut short when the caller goes away (its outcome would be unknown);
// this bounds it instead.
const bulkActionTimeout = time.Minute

// bulkDeadlineReserve is the most time a bulk action keeps before the
// request's deadline to finish the actions in flight and answer: no new
// action starts within it.
const bulkDeadlineReserve = 2 * time.Second

// Selection names the Candidates of one Migration a bulk action applies
// to: CandidateIDs, or, when Filter is set, every Candidate matching it.
type Selection struct {
	MigrationID  string
	CandidateIDs []string
	// Filter selects by the filters of a Candidate listing; its order is
	// ignored (a filter's Candidates are acted on in id order).
	Filter *CandidateFilter
}

// BulkOutcomeKind is what a bulk action did to one Candidate.
type BulkOutcomeKind string

// The outcomes of a bulk action for one Candidate.
const (
	BulkDone         BulkOutcomeKind = "done"
	BulkRefused      BulkOutcomeKind = "refused"
	BulkNotAttempted BulkOutcomeKind = "not_attempted"
)

// BulkOutcome is what a bulk action did to one Candidate.
type BulkOutcome struct {
	CandidateID string
	Kind        BulkOutcomeKind
	// Err says why the Candidate was refused or not attempted: the error
	// the single action would have returned.
	Err error
}

// BulkReport is what a bulk action did, one outcome per selected
// Candidate, in the selection's order.
type BulkReport struct {
	Outcomes []BulkOutcome
}

// Count is the number of outcomes of kind k.
func (r BulkReport) Count(k BulkOutcomeKind) int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Kind == k {
			n++
		}
	}
	return n
}

// selectionStore is what resolving a selection reads.
type selectionStore interface {
	GetMigration(ctx context.Context, id string) (Migration, error)
	ListCandidates(ctx context.Context, migrationID string, f CandidateFilter, page PageRequest) (CandidatePage, error)
}

// resolve returns the ids of the Candidates sel selects, checked: at most
// MaxBulkCandidates, each once, of a Migration that exists. A filter is
// resolved once, now, in id order; nothing is acted on before the whole
// selection is known, so a selection too large is refused whole.
func resolve(ctx context.Context, st selectionStore, sel Selection) ([]string, error) {
	if sel.Filter == nil {
		if len(sel.CandidateIDs) == 0 {
			return nil, InvalidArgument("selection", ReasonEmptySelection, "select candidate_ids or a filter")
		}
		if n := len(sel.CandidateIDs); n > MaxBulkCandidates {
			return nil, InvalidArgument("selection.candidate_ids", ReasonSelectionTooLarge,
				"at most %d candidates per bulk action, got %d", MaxBulkCandidates, n).
				With("max", strconv.Itoa(MaxBulkCandidates))
		}
		seen := make(map[string]bool, len(sel.CandidateIDs))
		for i, id := range sel.CandidateIDs {
			if seen[id] {
				return nil, InvalidArgument(fmt.Sprintf("selection.candidate_ids[%d]", i), ReasonDuplicateCandidateID,
					"candidate id %q appears twice", id)
			}
			seen[id] = true
		}
		if _, err := st.GetMigration(ctx, sel.MigrationID); err != nil {
			return nil, err
		}
		return sel.CandidateIDs, nil
	}
	f := *sel.Filter
	f.Order, f.Descending = OrderByID, false
	if len(f.Metadata) > MaxCandidateMetadataFilters {
		return nil, InvalidArgument("selection.filter.metadata", ReasonTooManyMetadataFilters,
			"at most %d metadata pairs, got %d", MaxCandidateMetadataFilters, len(f.Metadata))
	}
	var ids []string
	for after := ""; ; {
		page, err := st.ListCandidates(ctx, sel.MigrationID, f, PageRequest{After: after, Limit: MaxCandidatePageSize})
		if err != nil {
			return nil, err
		}
		// Refuse on the first page's count, before reading thousands more.
		// (An estimated count is not a reason: the pages are.)
		if (page.Total > MaxBulkCandidates && !page.TotalIsEstimate) || len(ids)+len(page.Candidates) > MaxBulkCandidates {
			matched := max(page.Total, int64(len(ids)+len(page.Candidates)))
			return nil, InvalidArgument("selection.filter", ReasonSelectionTooLarge,
				"the filter matches %d candidates; a bulk action takes at most %d: narrow the filter (e.g. with id_prefix) and send one request per part",
				matched, MaxBulkCandidates).
				With("matched", strconv.FormatInt(matched, 10)).With("max", strconv.Itoa(MaxBulkCandidates))
		}
		for _, c := range page.Candidates {
			ids = append(ids, c.ID)
		}
		if page.Next == "" {
			return ids, nil
		}
		after = page.Next
	}
}

// applyBulk acts on each of ids with act, BulkConcurrency at a time, and
// reports each outcome in the order of ids: done when act returns nil,
// refused with act's error otherwise.
//
// Each act runs to its end under its own bound (bulkActionTimeout), even
// when ctx ends: an action cut short midway might or might not have been
// applied, and the answer could not say which. Instead, no new action
// starts once ctx ends, within bulkDeadlineReserve of its deadline, or once
// BulkConcurrency actions in a row failed with ErrUnavailable (the store or
// the engine is down: the rest would only wait and fail); the Candidates
// not reached are reported not attempted, with why.
func applyBulk(ctx context.Context, ids []string, act func(ctx context.Context, candidateID string) error) BulkReport {
	rep := BulkReport{Outcomes: make([]BulkOutcome, len(ids))}
	for i, id := range ids {
		rep.Outcomes[i] = BulkOutcome{CandidateID: id, Kind: BulkNotAttempted}
	}
	starting := ctx
	if deadline, ok := ctx.Deadline(); ok {
		reserve := min(bulkDeadlineReserve, time.Until(deadline)/5)
		var cancel context.CancelFunc
		starting, cancel = context.WithDeadline(ctx, deadline.Add(-reserve))
		defer cancel()
	}
	starting, halt := context.WithCancelCause(starting)
	defer halt(nil)
	detached := context.WithoutCancel(ctx)

	var (
		wg          sync.WaitGroup
		sem         = make(chan struct{}, BulkConcurrency)
		unavailable atomic.Int32 // failures with ErrUnavailable in a row
		next        int
	)
loop:
	for ; next < len(ids); next++ {
		select {
		case sem <- struct{}{}:
		case <-starting.Done():
			break loop
		}
		if starting.Err() != nil {
			<-sem
			break
		}
		i := next
		wg.Go(func() {
			defer func() { <-sem }()
			actx, cancel := context.WithTimeout(detached, bulkActionTimeout)
			defer cancel()
			err := act(actx, ids[i])
			if err == nil {
				rep.Outcomes[i].Kind = BulkDone
				unavailable.Store(0)
				return
			}
			rep.Outcomes[i].Kind, rep.Outcomes[i].Err = BulkRefused, err
			if !errors.Is(err, ErrUnavailable) {
				unavailable.Store(0)
			} else if unavailable.Add(1) >= BulkConcurrency {
				halt(err)
			}
		})
	}
	wg.Wait()
	if next < len(ids) {
		why := notAttempted(ctx, context.Cause(starting))
		for i := next; i < len(ids); i++ {
			rep.Outcomes[i].Err = why
		}
	}
	return rep
}

// notAttempted is the error of the Candidates a bulk action did not reach,
// given why it stopped starting actions (cause) and the request's ctx.
func notAttempted(ctx context.Context, cause error) error {
	const nothing = "nothing was done to this candidate: send the request again for it"
	switch {
	case errors.Is(cause, ErrUnavailable):
		return &Refusal{Kind: ErrUnavailable, Reason: ReasonNotAttempted,
			Message: fmt.Sprintf("not attempted: %d candidates in a row could not be acted on (the last: %v); %s, later", BulkConcurrency, cause, nothing)}
	case errors.Is(ctx.Err(), context.Canceled):
		return &Refusal{Kind: context.Canceled, Reason: ReasonNotAttempted,
			Message: "not attempted: the caller went away; " + nothing}
	default:
		return &Refusal{Kind: context.DeadlineExceeded, Reason: ReasonNotAttempted,
			Message: "not attempted: the request's deadline was near; " + nothing + " (or give it a longer deadline)"}
	}
}

// candidateOf turns the refusal of a Run never started into the refusal of
// an unknown Candidate when the Migration has no such Candidate: a bulk
// action's selection may name ids that do not exist.
func candidateOf(ctx context.Context, st CandidateStore, migrationID, candidateID string, err error) error {
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Reason != ReasonRunNotFound {
		return err
	}
	if _, cerr := st.GetCandidate(ctx, migrationID, candidateID); cerr != nil && errors.Is(cerr, ErrNotFound) {
		return cerr
	}
	return err
}

// BulkRetry retries, as RetryStep does, the failed current step of the Run
// of each Candidate sel selects, at its next attempt, with note; when step
// is not empty, only a current step of that name.
func (u *Runs) BulkRetry(ctx context.Context, sel Selection, step, note, actor string) (BulkReport, error) {
	return u.bulkStepAction(ctx, sel, StepAction{Kind: ActionRetry, Step: step, Message: note, Actor: actor})
}

// BulkFinishReview finishes, as FinishReview does, the step awaiting review
// of the Run of each Candidate sel selects, with outcome (completed or
// failed) and note.
func (u *Runs) BulkFinishReview(ctx context.Context, sel Selection, step string, outcome StepStatus, note, actor string) (BulkReport, error) {
	if step == "" {
		return BulkReport{}, InvalidArgument("step_name", ReasonMissingStepName, "name the step whose reviews to finish")
	}
	if outcome != StepCompleted && outcome != StepFailed {
		return BulkReport{}, InvalidArgument("outcome", ReasonInvalidOutcome, "a review finishes %s or %s, not %q", StepCompleted, StepFailed, outcome)
	}
	return u.bulkStepAction(ctx, sel, StepAction{Kind: ActionFinishReview, Step: step, Status: outcome, Message: note, Actor: actor})
}

// BulkMarkMerged records, as MarkStepMerged does, that the open pull
// request of step of the Run of each Candidate sel selects was merged.
func (u *Runs) BulkMarkMerged(ctx context.Context, sel Selection, step, note, actor string) (BulkReport, error) {
	if step == "" {
		return BulkReport{}, InvalidArgument("step_name", ReasonMissingStepName, "name the step whose pull requests were merged")
	}
	return u.bulkStepAction(ctx, sel, StepAction{Kind: ActionMarkMerged, Step: step, Message: note, Actor: actor})
}

// bulkStepAction applies action to the current step of the Run of each
// Candidate sel selects. Each Run's view names the execution, step (unless
// action names one) and attempt acted on, and judges the action first, so
// Runs the view shows it cannot apply to are refused without a call to the
// engine (which, across thousands of Runs, would mostly be refusals); the
// engine then judges the others against the Run's true state, so a view
// behind the Run never lets an action through that the Run forbids.
func (u *Runs) bulkStepAction(ctx context.Context, sel Selection, action StepAction) (BulkReport, error) {
	ids, err := resolve(ctx, u.Store, sel)
	if err != nil {
		return BulkReport{}, err
	}
	return applyBulk(ctx, ids, func(ctx context.Context, candidateID string) error {
		view, err := u.Store.GetRun(ctx, sel.MigrationID, candidateID)
		if err != nil {
			return candidateOf(ctx, u.Store, sel.MigrationID, candidateID, err)
		}
		a := action
		a.Execution = view.Execution
		if c := view.Current(); c != nil {
			if a.Step == "" {
				a.Step = c.StepName
			}
			a.Attempt = c.Attempt
		}
		probe := view.Clone()
		if _, err := probe.Apply(a, u.Now()); err != nil {
			return err
		}
		_, err = u.Act(ctx, view.ID, a)
		return err
	}), nil
}

// BulkCancel cancels, as CancelRun does, the running Run of each Candidate
// sel selects, with reason.
func (u *Runs) BulkCancel(ctx context.Context, sel Selection, reason, actor string) (BulkReport, error) {
	ids, err := resolve(ctx, u.Store, sel)
	if err != nil {
		return BulkReport{}, err
	}
	return applyBulk(ctx, ids, func(ctx context.Context, candidateID string) error {
		_, err := u.CancelRun(ctx, RunID(sel.MigrationID, candidateID), reason, actor)
		return candidateOf(ctx, u.Store, sel.MigrationID, candidateID, err)
	}), nil
}

// BulkUpdateInputs applies change, as UpdateInputs does, to each Candidate
// sel selects.
func (d *Discovery) BulkUpdateInputs(ctx context.Context, sel Selection, change InputChange) (BulkReport, error) {
	if len(change.Set) == 0 && len(change.Remove) == 0 {
		return BulkReport{}, InvalidArgument("inputs", ReasonEmptyInputChange, "set inputs or remove_inputs")
	}
	ids, err := resolve(ctx, d.Store, sel)
	if err != nil {
		return BulkReport{}, err
	}
	return applyBulk(ctx, ids, func(ctx context.Context, candidateID string) error {
		_, err := d.UpdateInputs(ctx, sel.MigrationID, candidateID, change)
		return err
	}), nil
}
