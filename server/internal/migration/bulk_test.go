package migration_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

// bulkStore is a MigrationStore of one Migration, "m", in memory: only what
// bulk actions read and write (the embedded nil interface panics on the
// rest).
type bulkStore struct {
	migration.MigrationStore

	mu         sync.Mutex
	candidates map[string]migration.Candidate
	runs       map[string]migration.Run
	listed     int // ListCandidates calls
}

func newBulkStore() *bulkStore {
	return &bulkStore{candidates: map[string]migration.Candidate{}, runs: map[string]migration.Run{}}
}

// add adds a Candidate, with a Run when r is not nil.
func (s *bulkStore) add(id string, r *migration.Run) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := migration.Candidate{ID: id, MigrationID: "m", Status: migration.CandidateNotStarted}
	if r != nil {
		r.ID, r.MigrationID, r.CandidateID = migration.RunID("m", id), "m", id
		s.runs[id] = *r
		c.Status = map[migration.RunStatus]migration.CandidateStatus{migration.RunRunning: migration.CandidateRunning,
			migration.RunCompleted: migration.CandidateCompleted, migration.RunCancelled: migration.CandidateNotStarted}[r.Status]
	}
	s.candidates[id] = c
}

func (s *bulkStore) GetMigration(_ context.Context, id string) (migration.Migration, error) {
	if id != "m" {
		return migration.Migration{}, migration.MigrationNotFound(id)
	}
	return migration.Migration{ID: "m"}, nil
}

// ListCandidates filters by status and id prefix only.
func (s *bulkStore) ListCandidates(_ context.Context, m string, f migration.CandidateFilter, page migration.PageRequest) (migration.CandidatePage, error) {
	if m != "m" {
		return migration.CandidatePage{}, migration.MigrationNotFound(m)
	}
	if f.Order != migration.OrderByID && f.Order != "" || f.Descending {
		return migration.CandidatePage{}, fmt.Errorf("a selection listed in order %q (descending %v), not by id", f.Order, f.Descending)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listed++
	var ids []string
	for id, c := range s.candidates {
		if (f.Status == "" || c.Status == f.Status) && strings.HasPrefix(id, f.IDPrefix) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := migration.CandidatePage{Total: int64(len(ids))}
	for _, id := range ids {
		if id > page.After && len(out.Candidates) < page.Limit {
			out.Candidates = append(out.Candidates, s.candidates[id])
		}
	}
	if n := len(out.Candidates); n == page.Limit && out.Candidates[n-1].ID != ids[len(ids)-1] {
		out.Next = out.Candidates[n-1].ID
	}
	return out, nil
}

func (s *bulkStore) GetCandidate(_ context.Context, m, id string) (migration.Candidate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.candidates[id]
	if !ok {
		return migration.Candidate{}, migration.CandidateNotFound(m, id)
	}
	return c, nil
}

func (s *bulkStore) GetRun(_ context.Context, m, id string) (migration.Run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runs[id]
	if !ok {
		return migration.Run{}, migration.NotFound(migration.ReasonRunNotFound, "run %s not found", migration.RunID(m, id))
	}
	return r.Clone(), nil
}

func (s *bulkStore) UpdateCandidateInputs(_ context.Context, m, id string, change migration.InputChange, _ time.Time) (migration.Candidate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.candidates[id]
	if !ok {
		return migration.Candidate{}, migration.CandidateNotFound(m, id)
	}
	c.Inputs = maps.Clone(c.Inputs)
	if c.Inputs == nil {
		c.Inputs = map[string]string{}
	}
	for _, k := range change.Remove {
		delete(c.Inputs, k)
	}
	maps.Copy(c.Inputs, change.Set)
	s.candidates[id] = c
	return c, nil
}

// bulkEngine applies actions to the store's views as the workflow would,
// after a delay, counting the calls in flight; refuse, when set, answers
// instead.
type bulkEngine struct {
	store  *bulkStore
	delay  time.Duration
	refuse func(runID string) error
	// inspect, when set, says where a Run stands in the engine; else the
	// engine has what the store has.
	inspect func(runID string) (migration.EngineRun, error)

	inFlight, maxInFlight atomic.Int32
	mu                    sync.Mutex
	acted                 []migration.StepAction
	cancelled             []string
}

func (e *bulkEngine) enter() func() {
	n := e.inFlight.Add(1)
	for {
		m := e.maxInFlight.Load()
		if n <= m || e.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(e.delay)
	return func() { e.inFlight.Add(-1) }
}

func (e *bulkEngine) Act(_ context.Context, runID string, a migration.StepAction) (migration.Acted, error) {
	defer e.enter()()
	e.mu.Lock()
	e.acted = append(e.acted, a)
	e.mu.Unlock()
	if e.refuse != nil {
		if err := e.refuse(runID); err != nil {
			return migration.Acted{}, err
		}
	}
	_, id, _ := migration.ParseRunID(runID)
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	r := e.store.runs[id]
	if _, err := r.Apply(a, t0); err != nil {
		return migration.Acted{}, err
	}
	e.store.runs[id] = r
	return migration.Acted{Run: r, Step: *r.Current(), Changed: true}, nil
}

func (e *bulkEngine) CancelRun(_ context.Context, runID, reason, _ string) error {
	defer e.enter()()
	if e.refuse != nil {
		if err := e.refuse(runID); err != nil {
			return err
		}
	}
	_, id, _ := migration.ParseRunID(runID)
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	r := e.store.runs[id]
	r.Finish(migration.RunCancelled, reason, t0)
	e.store.runs[id] = r
	e.mu.Lock()
	e.cancelled = append(e.cancelled, runID)
	e.mu.Unlock()
	return nil
}

func (e *bulkEngine) StartRun(context.Context, migration.Manifest) error { panic("not used") }

func (e *bulkEngine) Inspect(_ context.Context, runID string) (migration.EngineRun, error) {
	if e.inspect != nil {
		return e.inspect(runID)
	}
	_, id, _ := migration.ParseRunID(runID)
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	r, ok := e.store.runs[id]
	if !ok {
		return migration.EngineRun{}, migration.ErrRunNotActive
	}
	return migration.EngineRun{State: migration.EngineRunning, Run: &r}, nil
}

func (e *bulkEngine) calls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.acted) + len(e.cancelled)
}

func newBulkRuns() (*migration.Runs, *bulkStore, *bulkEngine) {
	st := newBulkStore()
	eng := &bulkEngine{store: st}
	return &migration.Runs{Store: st, Engine: eng, Now: func() time.Time { return t0 }}, st, eng
}

// failedRun is a running Run whose first step failed at attempt 1.
func failedRun() *migration.Run {
	r := runAt(migration.StepFailed)
	return &r
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("c%05d", i)
	}
	return out
}

// outcomes renders a report as "id:kind:reason" items.
func outcomes(rep migration.BulkReport) []string {
	var out []string
	for _, o := range rep.Outcomes {
		s := o.CandidateID + ":" + string(o.Kind)
		var ref *migration.Refusal
		if errors.As(o.Err, &ref) {
			s += ":" + ref.Reason
		} else if o.Err != nil {
			s += ":" + o.Err.Error()
		}
		out = append(out, s)
	}
	return out
}

func TestBulkRetryOfAThousandRunsIsBounded(t *testing.T) {
	u, st, eng := newBulkRuns()
	eng.delay = time.Millisecond
	all := ids(1000)
	for _, id := range all {
		st.add(id, failedRun())
	}
	rep, err := u.BulkRetry(context.Background(), migration.Selection{MigrationID: "m", CandidateIDs: all}, "", "flaky CI fixed", "ada")
	if err != nil {
		t.Fatal(err)
	}
	if n := rep.Count(migration.BulkDone); n != 1000 {
		t.Fatalf("%d done: %v", n, outcomes(rep)[:5])
	}
	for i, o := range rep.Outcomes {
		if o.CandidateID != all[i] {
			t.Fatalf("outcome %d is %s, want the selection's order", i, o.CandidateID)
		}
	}
	if m := eng.maxInFlight.Load(); m > migration.BulkConcurrency || m < 2 {
		t.Errorf("%d engine calls in flight at most, want 2..%d", m, migration.BulkConcurrency)
	}
	// Each action names what the view showed, and the caller.
	for _, a := range eng.acted {
		if a.Kind != migration.ActionRetry || a.Execution != 2 || a.Step != "one" || a.Attempt != 1 || a.Actor != "ada" || a.Message != "flaky CI fixed" {
			t.Fatalf("engine asked %+v", a)
		}
	}
	if r, _ := st.GetRun(context.Background(), "m", all[999]); r.Current().Attempt != 2 || r.Current().Status != migration.StepInProgress {
		t.Errorf("after retry: %+v", r.Current())
	}
}

func TestBulkRetryJudgesEachCandidateAlone(t *testing.T) {
	u, st, eng := newBulkRuns()
	st.add("failed", failedRun())
	inProgress := runAt(migration.StepInProgress)
	st.add("in-progress", &inProgress)
	cancelled := runAt(migration.StepFailed)
	cancelled.Finish(migration.RunCancelled, "", t0)
	st.add("cancelled", &cancelled)
	st.add("never-started", nil)
	// The view says failed at attempt 1; the Run itself moved on (its view
	// is behind): the engine's refusal is the answer.
	st.add("behind", failedRun())
	eng.refuse = func(runID string) error {
		if runID == "m__behind" {
			return migration.FailedPrecondition(migration.ReasonStaleAttempt, "attempt 1 is not the current one (2)")
		}
		return nil
	}
	eng.inspect = func(runID string) (migration.EngineRun, error) {
		r := *failedRun()
		r.Seq += 2 // the engine is ahead of the view
		return migration.EngineRun{State: migration.EngineRunning, Run: &r}, nil
	}
	sel := migration.Selection{MigrationID: "m", CandidateIDs: []string{"in-progress", "failed", "ghost", "cancelled", "never-started", "behind"}}
	rep, err := u.BulkRetry(context.Background(), sel, "", "", "ada")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"in-progress:refused:TRANSITION_NOT_ALLOWED", "failed:done", "ghost:refused:CANDIDATE_NOT_FOUND",
		"cancelled:refused:RUN_NOT_RUNNING", "never-started:refused:RUN_NOT_FOUND", "behind:refused:STALE_ATTEMPT",
	}
	if got := outcomes(rep); !slices.Equal(got, want) {
		t.Fatalf("outcomes\n got %v\nwant %v", got, want)
	}
	// Refusals the view shows never reach the engine.
	if n := eng.calls(); n != 2 {
		t.Errorf("%d engine calls, want 2 (failed, behind)", n)
	}
	// Refusals say where the Run stands.
	if md := rep.Outcomes[0].Err.(*migration.Refusal).Metadata; md["current_status"] != "in_progress" || md["current_step"] != "one" {
		t.Errorf("refusal metadata %v", md)
	}
	if !errors.Is(rep.Outcomes[2].Err, migration.ErrNotFound) || !errors.Is(rep.Outcomes[0].Err, migration.ErrFailedPrecondition) {
		t.Errorf("kinds: %v, %v", rep.Outcomes[2].Err, rep.Outcomes[0].Err)
	}

	// Naming the step retries only Runs failed at it.
	two := runAt(migration.StepFailed)
	two.BeginStep(1, 1, t0)
	two.Results[1].Status = migration.StepFailed
	st.add("at-two", &two)
	st.add("at-one", failedRun())
	rep, err = u.BulkRetry(context.Background(), migration.Selection{MigrationID: "m", CandidateIDs: []string{"at-one", "at-two"}}, "two", "", "ada")
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(rep); !slices.Equal(got, []string{"at-one:refused:STEP_NOT_CURRENT", "at-two:done"}) {
		t.Fatalf("retry of step two: %v", got)
	}
}

func TestBulkFinishReviewAndMarkMergedNameTheirStep(t *testing.T) {
	u, st, _ := newBulkRuns()
	review := runAt(migration.StepAwaitingReview)
	st.add("review", &review)
	open := runAt(migration.StepOpen)
	st.add("open", &open)
	sel := migration.Selection{MigrationID: "m", CandidateIDs: []string{"review", "open"}}
	ctx := context.Background()

	rep, err := u.BulkFinishReview(ctx, sel, "one", migration.StepCompleted, "looks good", "ada")
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(rep); !slices.Equal(got, []string{"review:done", "open:refused:TRANSITION_NOT_ALLOWED"}) {
		t.Fatalf("finish reviews: %v", got)
	}
	if r, _ := st.GetRun(ctx, "m", "review"); r.Results[0].Status != migration.StepCompleted || r.Results[0].Message != "looks good" || r.Results[0].Actor != "ada" {
		t.Errorf("reviewed: %+v", r.Results[0])
	}
	rep, err = u.BulkMarkMerged(ctx, sel, "one", "merged by hand", "ada")
	if err != nil {
		t.Fatal(err)
	}
	// The review already finished is refused, never acted on again.
	if got := outcomes(rep); !slices.Equal(got, []string{"review:refused:TRANSITION_NOT_ALLOWED", "open:done"}) {
		t.Fatalf("mark merged: %v", got)
	}
	for name, call := range map[string]func() error{
		"finish without a step": func() error {
			_, err := u.BulkFinishReview(ctx, sel, "", migration.StepCompleted, "", "ada")
			return err
		},
		"finish as merged": func() error {
			_, err := u.BulkFinishReview(ctx, sel, "one", migration.StepMerged, "", "ada")
			return err
		},
		"merge without a step": func() error { _, err := u.BulkMarkMerged(ctx, sel, "", "", "ada"); return err },
	} {
		if err := call(); !errors.Is(err, migration.ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestBulkCancelAndInputs(t *testing.T) {
	u, st, eng := newBulkRuns()
	st.add("running", failedRun())
	done := runAt(migration.StepCompleted)
	done.Finish(migration.RunCompleted, "", t0)
	st.add("completed", &done)
	ctx := context.Background()
	rep, err := u.BulkCancel(ctx, migration.Selection{MigrationID: "m", CandidateIDs: []string{"running", "completed", "ghost"}}, "wrong version", "ada")
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(rep); !slices.Equal(got, []string{"running:done", "completed:refused:RUN_NOT_RUNNING", "ghost:refused:CANDIDATE_NOT_FOUND"}) {
		t.Fatalf("cancel: %v", got)
	}
	if r, _ := st.GetRun(ctx, "m", "running"); r.Status != migration.RunCancelled || r.CancelReason != "wrong version" || len(eng.cancelled) != 1 {
		t.Errorf("cancelled: %+v", r)
	}

	d := &migration.Discovery{Store: st, Now: func() time.Time { return t0 }}
	rep, err = d.BulkUpdateInputs(ctx, migration.Selection{MigrationID: "m", Filter: &migration.CandidateFilter{IDPrefix: "r"}},
		migration.InputChange{Set: map[string]string{"tag": "v2"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(rep); !slices.Equal(got, []string{"running:done"}) {
		t.Fatalf("inputs: %v", got)
	}
	if c, _ := st.GetCandidate(ctx, "m", "running"); c.Inputs["tag"] != "v2" {
		t.Errorf("inputs %v", c.Inputs)
	}
	if _, err := d.BulkUpdateInputs(ctx, migration.Selection{MigrationID: "m", Filter: &migration.CandidateFilter{}}, migration.InputChange{}); !errors.Is(err, migration.ErrInvalidArgument) {
		t.Errorf("an empty change: %v", err)
	}
}

func TestSelections(t *testing.T) {
	u, st, eng := newBulkRuns()
	ctx := context.Background()
	for _, id := range ids(2500) {
		st.add(id, failedRun())
	}
	st.add("other", nil)

	// A filter is resolved page by page, in id order, whatever order it asks.
	rep, err := u.BulkRetry(ctx, migration.Selection{MigrationID: "m",
		Filter: &migration.CandidateFilter{Status: migration.CandidateRunning, Order: migration.OrderByLastChange, Descending: true}}, "", "", "ada")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(migration.BulkDone) != 2500 || len(rep.Outcomes) != 2500 || rep.Outcomes[0].CandidateID != "c00000" || rep.Outcomes[2499].CandidateID != "c02499" {
		t.Fatalf("filter selection: %d done of %d", rep.Count(migration.BulkDone), len(rep.Outcomes))
	}

	refused := func(sel migration.Selection) *migration.Refusal {
		t.Helper()
		before, listed := eng.calls(), st.listed
		_, err := u.BulkRetry(ctx, sel, "", "", "ada")
		var ref *migration.Refusal
		if !errors.As(err, &ref) {
			t.Fatalf("%+v: %v, want a refusal", sel, err)
		}
		if eng.calls() != before {
			t.Fatal("a refused selection acted on candidates")
		}
		if st.listed-listed > 1 {
			t.Errorf("a refused selection read %d pages", st.listed-listed)
		}
		return ref
	}
	for i := range migration.MaxBulkCandidates - 2500 + 1 {
		st.add(fmt.Sprintf("d%05d", i), nil)
	}
	ref := refused(migration.Selection{MigrationID: "m", Filter: &migration.CandidateFilter{}})
	if ref.Field != "selection.filter" || ref.Reason != migration.ReasonSelectionTooLarge || ref.Metadata["matched"] != "10002" || ref.Metadata["max"] != "10000" {
		t.Errorf("a filter matching too many: %+v", ref)
	}
	if !errors.Is(ref, migration.ErrInvalidArgument) {
		t.Errorf("kind %v", ref.Kind)
	}
	ref = refused(migration.Selection{MigrationID: "m", CandidateIDs: append(ids(migration.MaxBulkCandidates), "one-more")})
	if ref.Field != "selection.candidate_ids" || ref.Reason != migration.ReasonSelectionTooLarge {
		t.Errorf("too many ids: %+v", ref)
	}
	ref = refused(migration.Selection{MigrationID: "m", CandidateIDs: []string{"a", "b", "a"}})
	if ref.Field != "selection.candidate_ids[2]" {
		t.Errorf("a duplicate id: %+v", ref)
	}
	ref = refused(migration.Selection{MigrationID: "m"})
	if ref.Field != "selection" {
		t.Errorf("an empty selection: %+v", ref)
	}
	for _, sel := range []migration.Selection{
		{MigrationID: "x", CandidateIDs: []string{"a"}},
		{MigrationID: "x", Filter: &migration.CandidateFilter{}},
	} {
		if ref := refused(sel); ref.Reason != migration.ReasonMigrationNotFound {
			t.Errorf("unknown migration: %+v", ref)
		}
	}
}

func TestBulkStopsStartingButFinishesWhatItStarted(t *testing.T) {
	all := ids(1000)
	setup := func() (*migration.Runs, *bulkEngine) {
		u, st, eng := newBulkRuns()
		for _, id := range all {
			st.add(id, failedRun())
		}
		return u, eng
	}
	sel := migration.Selection{MigrationID: "m", CandidateIDs: all}
	// checkWhole checks that every candidate the engine saw is done and
	// every other one not attempted (none refused, none cut halfway), and
	// returns the error of the first not attempted.
	checkWhole := func(rep migration.BulkReport, eng *bulkEngine) error {
		t.Helper()
		done, not := rep.Count(migration.BulkDone), rep.Count(migration.BulkNotAttempted)
		if done == 0 || not == 0 || done+not != len(all) || done != eng.calls() {
			t.Fatalf("%d done, %d not attempted, %d engine calls", done, not, eng.calls())
		}
		o := rep.Outcomes[done]
		var ref *migration.Refusal
		if o.Kind != migration.BulkNotAttempted || !errors.As(o.Err, &ref) || ref.Reason != migration.ReasonNotAttempted {
			t.Fatalf("outcome after the last done: %+v", o)
		}
		return o.Err
	}

	t.Run("deadline", func(t *testing.T) {
		u, eng := setup()
		eng.delay = 20 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		rep, err := u.BulkRetry(ctx, sel, "", "", "ada")
		if err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Error("the answer came after the deadline")
		}
		if err := checkWhole(rep, eng); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("not attempted: %v", err)
		}
	})
	t.Run("caller gone", func(t *testing.T) {
		u, eng := setup()
		eng.delay = 5 * time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		rep, err := u.BulkRetry(ctx, sel, "", "", "ada")
		if err != nil {
			t.Fatal(err)
		}
		if err := checkWhole(rep, eng); !errors.Is(err, context.Canceled) {
			t.Errorf("not attempted: %v", err)
		}
	})
	t.Run("engine down", func(t *testing.T) {
		u, eng := setup()
		eng.refuse = func(string) error {
			return migration.Unavailable(migration.ReasonExecutionEngineFailure, "the execution engine is unavailable")
		}
		rep, err := u.BulkRetry(context.Background(), sel, "", "", "ada")
		if err != nil {
			t.Fatal(err)
		}
		refused, not := rep.Count(migration.BulkRefused), rep.Count(migration.BulkNotAttempted)
		if refused < migration.BulkConcurrency || refused > 3*migration.BulkConcurrency || refused+not != len(all) {
			t.Fatalf("%d refused, %d not attempted", refused, not)
		}
		if o := rep.Outcomes[len(all)-1]; !errors.Is(o.Err, migration.ErrUnavailable) || !strings.Contains(o.Err.Error(), "in a row") {
			t.Errorf("the last: %+v", o)
		}
	})
}
