package migration_test

import (
	"errors"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// runAt returns a running Run whose first of two steps is at status s,
// attempt 1.
func runAt(s migration.StepStatus) migration.Run {
	r := migration.Run{
		ID: "m__c", MigrationID: "m", CandidateID: "c", Execution: 2, Status: migration.RunRunning,
		Steps: []migration.StepDefinition{{Name: "one", Type: "t"}, {Name: "two", Type: "t"}},
	}
	r.BeginStep(0, 1, t0)
	r.Results[0].Status = s
	return r
}

func report(s migration.StepStatus) migration.StepAction {
	return migration.StepAction{Kind: migration.ActionReport, Execution: 2, Step: "one", Attempt: 1, Status: s, Actor: migration.ActorMigrator}
}

func TestStepTransitionTable(t *testing.T) {
	all := migration.StepStatuses
	legal := map[migration.StepStatus][]migration.StepStatus{
		migration.StepInProgress:     {migration.StepInProgress, migration.StepOpen, migration.StepAwaitingReview, migration.StepMerged, migration.StepCompleted, migration.StepFailed},
		migration.StepOpen:           {migration.StepOpen, migration.StepMerged, migration.StepFailed},
		migration.StepAwaitingReview: {migration.StepCompleted, migration.StepFailed},
		migration.StepFailed:         {},
	}
	for from, tos := range legal {
		for _, to := range all {
			ok := false
			for _, l := range tos {
				ok = ok || l == to
			}
			r := runAt(from)
			before := r.Clone()
			a := report(to)
			a.PRURL = "https://git.example/pr/1"
			_, err := r.Apply(a, t0.Add(time.Minute))
			if ok && err != nil {
				t.Errorf("%s → %s refused: %v", from, to, err)
			}
			if !ok {
				if !errors.Is(err, migration.ErrFailedPrecondition) {
					t.Errorf("%s → %s: got %v, want failed precondition", from, to, err)
				}
				if r.Seq != before.Seq || r.Results[0].Status != before.Results[0].Status {
					t.Errorf("%s → %s: refusal changed the step", from, to)
				}
			}
		}
	}
}

func TestDuplicateReportChangesNothing(t *testing.T) {
	r := runAt(migration.StepInProgress)
	a := report(migration.StepOpen)
	a.PRURL, a.Metadata = "https://git.example/pr/7", map[string]string{"branch": "loom/one"}
	if changed, err := r.Apply(a, t0.Add(time.Minute)); err != nil || !changed {
		t.Fatalf("first report: changed=%v err=%v", changed, err)
	}
	seq := r.Seq
	if changed, err := r.Apply(a, t0.Add(2*time.Minute)); err != nil || changed {
		t.Fatalf("duplicate report: changed=%v err=%v", changed, err)
	}
	if r.Seq != seq || !r.Results[0].UpdateTime.Equal(t0.Add(time.Minute)) {
		t.Fatal("duplicate report touched the Run")
	}
	// Same status with new data is an update.
	a.Message = "CI is green"
	if changed, err := r.Apply(a, t0.Add(3*time.Minute)); err != nil || !changed {
		t.Fatalf("open → open with a message: changed=%v err=%v", changed, err)
	}
}

func TestLateDuplicateOfAFinishedStepIsHarmless(t *testing.T) {
	r := runAt(migration.StepOpen)
	if _, err := r.Apply(report(migration.StepMerged), t0); err != nil {
		t.Fatal(err)
	}
	r.BeginStep(1, 1, t0.Add(time.Minute))
	if changed, err := r.Apply(report(migration.StepMerged), t0.Add(2*time.Minute)); err != nil || changed {
		t.Fatalf("late duplicate: changed=%v err=%v", changed, err)
	}
	// Another status for the past step is refused as not current.
	_, err := r.Apply(report(migration.StepFailed), t0.Add(2*time.Minute))
	var ref *migration.Refusal
	if !errors.As(err, &ref) || ref.Reason != migration.ReasonStepNotCurrent || ref.Metadata["current_step"] != "two" {
		t.Fatalf("got %v", err)
	}
}

func TestActionsAreRefusedWhenStale(t *testing.T) {
	cases := []struct {
		name   string
		at     migration.StepStatus
		action migration.StepAction
		reason string
	}{
		{"old execution", migration.StepInProgress, func() migration.StepAction { a := report(migration.StepOpen); a.Execution = 1; return a }(), migration.ReasonStaleExecution},
		{"old attempt", migration.StepInProgress, func() migration.StepAction { a := report(migration.StepFailed); a.Attempt = 2; return a }(), migration.ReasonStaleAttempt},
		{"other step", migration.StepInProgress, func() migration.StepAction { a := report(migration.StepFailed); a.Step = "two"; return a }(), migration.ReasonStepNotCurrent},
		{"retry of a step not failed", migration.StepOpen, migration.StepAction{Kind: migration.ActionRetry, Step: "one", Attempt: 1}, migration.ReasonTransitionNotAllowed},
		{"review of an open step", migration.StepOpen, migration.StepAction{Kind: migration.ActionFinishReview, Step: "one", Attempt: 1, Status: migration.StepCompleted}, migration.ReasonTransitionNotAllowed},
		{"merge of a step in review", migration.StepAwaitingReview, migration.StepAction{Kind: migration.ActionMarkMerged, Step: "one", Attempt: 1}, migration.ReasonTransitionNotAllowed},
		{"report after failure", migration.StepFailed, report(migration.StepInProgress), migration.ReasonTransitionNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runAt(tc.at)
			before := r.Clone()
			_, err := r.Apply(tc.action, t0.Add(time.Hour))
			var ref *migration.Refusal
			if !errors.As(err, &ref) || ref.Reason != tc.reason {
				t.Fatalf("got %v, want reason %s", err, tc.reason)
			}
			if ref.Metadata["current_step"] != "one" || ref.Metadata["current_status"] != string(tc.at) || ref.Metadata["execution"] != "2" {
				t.Fatalf("refusal metadata %v", ref.Metadata)
			}
			if r.Seq != before.Seq || r.Results[0].Status != before.Results[0].Status {
				t.Fatal("refusal changed the Run")
			}
		})
	}
}

// A retry starts the next attempt clean: the failed attempt's pull
// request, metadata and message are its own (its events keep them).
func TestRetryStartsTheNextAttempt(t *testing.T) {
	r := runAt(migration.StepInProgress)
	opened := report(migration.StepOpen)
	opened.PRURL, opened.Metadata = "https://git.example/pr/9", map[string]string{"branch": "loom/one"}
	if _, err := r.Apply(opened, t0); err != nil {
		t.Fatal(err)
	}
	a := report(migration.StepFailed)
	a.Message = "tests failed"
	if _, err := r.Apply(a, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(migration.StepAction{Kind: migration.ActionRetry, Step: "one", Attempt: 1, Actor: "alice"}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c := r.Current()
	if c.Attempt != 2 || c.Status != migration.StepInProgress || c.Actor != "alice" || c.Message != "" || c.PRURL != "" ||
		c.Metadata != nil || !c.OpenTime.IsZero() || !c.StartTime.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after retry: %+v", *c)
	}
	// A second retry naming the old attempt is refused: two operators retrying
	// at once start one attempt.
	if _, err := r.Apply(migration.StepAction{Kind: migration.ActionRetry, Step: "one", Attempt: 1}, t0.Add(time.Hour)); err == nil {
		t.Fatal("second retry of attempt 1 accepted")
	}
}

func TestOperatorOverrides(t *testing.T) {
	r := runAt(migration.StepAwaitingReview)
	if _, err := r.Apply(migration.StepAction{Kind: migration.ActionFinishReview, Step: "one", Attempt: 1, Status: migration.StepCompleted, Message: "LGTM", Actor: "bob"}, t0); err != nil {
		t.Fatal(err)
	}
	if c := r.Current(); c.Status != migration.StepCompleted || c.Message != "LGTM" || c.Actor != "bob" || !c.EndTime.Equal(t0) {
		t.Fatalf("after review: %+v", *c)
	}
	r = runAt(migration.StepOpen)
	if _, err := r.Apply(migration.StepAction{Kind: migration.ActionMarkMerged, Step: "one", Attempt: 1, Actor: "carol"}, t0); err != nil {
		t.Fatal(err)
	}
	if c := r.Current(); c.Status != migration.StepMerged || c.Actor != "carol" {
		t.Fatalf("after mark merged: %+v", *c)
	}
}

func TestNothingIsAcceptedOnceTheRunEnded(t *testing.T) {
	r := runAt(migration.StepInProgress)
	r.Finish(migration.RunCancelled, "wrong target", t0)
	_, err := r.Apply(report(migration.StepOpen), t0)
	var ref *migration.Refusal
	if !errors.As(err, &ref) || ref.Reason != migration.ReasonRunNotRunning {
		t.Fatalf("got %v", err)
	}
}

func TestRunIDRoundTrip(t *testing.T) {
	id := migration.RunID("go-upgrade", "acme/pay__ments")
	m, c, ok := migration.ParseRunID(id)
	if !ok || m != "go-upgrade" || c != "acme/pay__ments" {
		t.Fatalf("ParseRunID(%q) = %q, %q, %v", id, m, c, ok)
	}
	if _, _, ok := migration.ParseRunID("no-separator"); ok {
		t.Fatal("parsed an id without __")
	}
}

func TestARepeatedReportOfAWaitingOrFailedStepIsHarmless(t *testing.T) {
	for _, s := range []migration.StepStatus{migration.StepAwaitingReview, migration.StepFailed} {
		r := runAt(migration.StepInProgress)
		a := report(s)
		a.Message = "look at the canary"
		if changed, err := r.Apply(a, t0); err != nil || !changed {
			t.Fatalf("%s: changed=%v err=%v", s, changed, err)
		}
		if changed, err := r.Apply(a, t0.Add(time.Minute)); err != nil || changed {
			t.Fatalf("repeated %s: changed=%v err=%v", s, changed, err)
		}
		a.Message = "something else"
		if _, err := r.Apply(a, t0.Add(time.Minute)); err == nil {
			t.Fatalf("%s with other data was accepted", s)
		}
	}
}

// The operator's skip and adoption, from every status: skip from in
// progress, open, awaiting review and failed; adoption from in progress and
// failed. Everything else is refused as a transition not allowed.
func TestSkipAndAdoptTransitionTable(t *testing.T) {
	skipFrom := []migration.StepStatus{migration.StepInProgress, migration.StepOpen, migration.StepAwaitingReview, migration.StepFailed}
	adoptFrom := []migration.StepStatus{migration.StepInProgress, migration.StepFailed}
	contains := func(ss []migration.StepStatus, s migration.StepStatus) bool {
		for _, x := range ss {
			if x == s {
				return true
			}
		}
		return false
	}
	for _, from := range migration.StepStatuses {
		t.Run(string(from), func(t *testing.T) {
			r := runAt(from)
			r.Results[0].PRURL = ""
			if from == migration.StepOpen {
				r.Results[0].PRURL = "https://git.example/pr/1"
			}
			before := r.Clone()
			changed, err := r.Apply(migration.StepAction{Kind: migration.ActionSkip, Step: "one", Attempt: 1, Message: "done by hand", Actor: "alice"}, t0.Add(time.Minute))
			if contains(skipFrom, from) {
				c := r.Current()
				if err != nil || !changed || c.Status != migration.StepSkipped || c.Message != "done by hand" || c.Actor != "alice" ||
					!c.EndTime.Equal(t0.Add(time.Minute)) || r.Seq != before.Seq+1 || !c.Status.Succeeded() {
					t.Fatalf("skip from %s: changed=%v err=%v step %+v", from, changed, err, *c)
				}
			} else {
				var ref *migration.Refusal
				if !errors.As(err, &ref) || ref.Reason != migration.ReasonTransitionNotAllowed || r.Seq != before.Seq {
					t.Fatalf("skip from %s: changed=%v err=%v", from, changed, err)
				}
			}

			r = before.Clone()
			changed, err = r.Apply(migration.StepAction{Kind: migration.ActionAdoptPR, Step: "one", Attempt: 1, PRURL: "https://git.example/pr/2", Actor: "bob"}, t0.Add(time.Minute))
			if contains(adoptFrom, from) {
				c := r.Current()
				if err != nil || !changed || c.Status != migration.StepOpen || c.PRURL != "https://git.example/pr/2" || c.Actor != "bob" ||
					c.Message != "" || !c.OpenTime.Equal(t0.Add(time.Minute)) || r.Seq != before.Seq+1 {
					t.Fatalf("adopt from %s: changed=%v err=%v step %+v", from, changed, err, *c)
				}
			} else {
				var ref *migration.Refusal
				if !errors.As(err, &ref) || ref.Reason != migration.ReasonTransitionNotAllowed || r.Seq != before.Seq {
					t.Fatalf("adopt from %s: changed=%v err=%v", from, changed, err)
				}
			}
		})
	}
}

// A skip or adoption sent again changes nothing, before and after the Run
// moved on; with other values it is refused.
func TestSkipAndAdoptRepeatsChangeNothing(t *testing.T) {
	r := runAt(migration.StepFailed)
	skip := migration.StepAction{Kind: migration.ActionSkip, Step: "one", Attempt: 1, Message: "done by hand", Actor: "alice"}
	if changed, err := r.Apply(skip, t0); err != nil || !changed {
		t.Fatalf("skip: changed=%v err=%v", changed, err)
	}
	if changed, err := r.Apply(skip, t0.Add(time.Minute)); err != nil || changed {
		t.Fatalf("repeated skip: changed=%v err=%v", changed, err)
	}
	r.BeginStep(1, 1, t0.Add(time.Minute))
	if changed, err := r.Apply(skip, t0.Add(2*time.Minute)); err != nil || changed || !r.IsRepeat(skip) {
		t.Fatalf("repeated skip after the Run moved on: changed=%v err=%v", changed, err)
	}
	other := skip
	other.Message = "another reason"
	var ref *migration.Refusal
	if _, err := r.Apply(other, t0.Add(2*time.Minute)); !errors.As(err, &ref) || ref.Reason != migration.ReasonStepNotCurrent {
		t.Fatalf("skip of a past step with another reason: %v", err)
	}
	// The Migrator's report on the skipped step is refused too.
	if _, err := r.Apply(report(migration.StepCompleted), t0.Add(2*time.Minute)); !errors.As(err, &ref) || ref.Reason != migration.ReasonStepNotCurrent {
		t.Fatalf("report on a skipped step: %v", err)
	}

	r = runAt(migration.StepInProgress)
	adopt := migration.StepAction{Kind: migration.ActionAdoptPR, Step: "one", Attempt: 1, PRURL: "https://git.example/pr/2", Actor: "bob",
		Message: "opened by hand"}
	if changed, err := r.Apply(adopt, t0); err != nil || !changed {
		t.Fatalf("adopt: changed=%v err=%v", changed, err)
	}
	// The operator's note is the open step's message and in the history.
	if c := r.Current(); c.Message != "opened by hand" {
		t.Fatalf("adopted step's message %q", c.Message)
	}
	if ev := r.ActionEvents(adopt, t0); len(ev) != 1 || ev[0].Details["note"] != "opened by hand" || ev[0].Details["pr_url"] != adopt.PRURL {
		t.Fatalf("adopt events %+v", ev)
	}
	if changed, err := r.Apply(adopt, t0.Add(time.Minute)); err != nil || changed {
		t.Fatalf("repeated adopt: changed=%v err=%v", changed, err)
	}
	another := adopt
	another.PRURL = "https://git.example/pr/3"
	if _, err := r.Apply(another, t0.Add(time.Minute)); !errors.As(err, &ref) || ref.Reason != migration.ReasonTransitionNotAllowed {
		t.Fatalf("adopt of another pull request: %v", err)
	}
	// The Migrator's merged report finishes the adopted step.
	if changed, err := r.Apply(report(migration.StepMerged), t0.Add(time.Hour)); err != nil || !changed || r.Current().Status != migration.StepMerged {
		t.Fatalf("merged after adopt: changed=%v err=%v", changed, err)
	}
	if obs := r.Observations(t0.Add(time.Hour)); len(obs) != 2 || obs[1].Duration != time.Hour {
		t.Fatalf("observations %+v", obs)
	}
}

func TestSkipAndAdoptNeedTheirValues(t *testing.T) {
	r := runAt(migration.StepInProgress)
	for field, a := range map[string]migration.StepAction{
		"reason": {Kind: migration.ActionSkip, Step: "one", Attempt: 1},
		"pr_url": {Kind: migration.ActionAdoptPR, Step: "one", Attempt: 1},
	} {
		_, err := r.Apply(a, t0)
		var ref *migration.Refusal
		if !errors.Is(err, migration.ErrInvalidArgument) || !errors.As(err, &ref) || ref.Field != field {
			t.Fatalf("%s: %v", a.Kind, err)
		}
	}
}
