package server_test

import (
	"testing"

	"connectrpc.com/connect"

	migratorv1 "github.com/loomhq/loom/gen/loom/migrator/v1"
	loomv1 "github.com/loomhq/loom/gen/loom/v1"
)

// An operator skips the steps of one Run, which moves on and completes,
// and adopts an existing pull request for another, which waits for its
// merge like a step the Migrator opened; both are in the history with the
// operator's name, and the Migrator cannot do either.
func TestSkipAStepAndAdoptAPullRequest(t *testing.T) {
	w, operator, migrator, history := bulkWorld(t, "skip-me", "adopt-me")
	start := func(id string) *migratorv1.ExecuteStepRequest {
		t.Helper()
		if _, err := operator.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "go-upgrade", CandidateId: id,
			Inputs: map[string]string{"target_version": "1.23"}})); err != nil {
			t.Fatal(err)
		}
		return w.dispatchOf(func(d *migratorv1.ExecuteStepRequest) bool { return d.GetCandidate().GetId() == id })
	}
	events := func(kind loomv1.EventKind, id string) []*loomv1.Event {
		t.Helper()
		res, err := history.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "go-upgrade", CandidateId: id,
			Kinds: []loomv1.EventKind{kind}}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.Events
	}

	// Skip: the failed first step, then the review; the Run completes.
	const skipRun = "go-upgrade__skip-me"
	d := start("skip-me")
	migrator.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_FAILED, signed(d), func(r *loomv1.ReportStepStatusRequest) { r.Message = "go.mod is vendored" })
	skip := &loomv1.SkipStepRequest{RunId: skipRun, StepName: "bump-go", Attempt: 1, Reason: "bumped by hand in #12"}
	_, err := migrator.runs.SkipStep(ctx, connect.NewRequest(skip))
	wantCode(t, err, connect.CodePermissionDenied, "")
	_, err = operator.runs.SkipStep(ctx, connect.NewRequest(&loomv1.SkipStepRequest{RunId: skipRun, StepName: "bump-go", Attempt: 1}))
	wantCode(t, err, connect.CodeInvalidArgument, "")
	_, err = operator.runs.SkipStep(ctx, connect.NewRequest(&loomv1.SkipStepRequest{RunId: skipRun, StepName: "review", Attempt: 1, Reason: "r"}))
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_STEP_NOT_CURRENT)
	skipped, err := operator.runs.SkipStep(ctx, connect.NewRequest(skip))
	if err != nil {
		t.Fatal(err)
	}
	if s := skipped.Msg.Run.StepResults[0]; s.Status != loomv1.StepStatus_STEP_STATUS_SKIPPED || s.Message != "bumped by hand in #12" || s.Actor != "alice" {
		t.Fatalf("skipped step %v", s)
	}
	// Sent again, it changes nothing.
	if _, err := operator.runs.SkipStep(ctx, connect.NewRequest(skip)); err != nil {
		t.Fatalf("the same skip again: %v", err)
	}
	d2 := w.dispatchOf(func(d *migratorv1.ExecuteStepRequest) bool { return d.GetCandidate().GetId() == "skip-me" })
	if d2.Step.Name != "review" {
		t.Fatalf("dispatch after the skip: %v", d2)
	}
	// The Migrator's word on the skipped step comes too late.
	_, err = migrator.report(t, d, loomv1.StepStatus_STEP_STATUS_OPEN, signed(d))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition && connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("report on the skipped step: %v", err)
	}
	migrator.mustReport(t, d2, loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW, signed(d2))
	if _, err := operator.runs.SkipStep(ctx, connect.NewRequest(&loomv1.SkipStepRequest{RunId: skipRun, StepName: "review", Attempt: 1, Reason: "no reviewer needed"})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the skipped Run completed", func() bool {
		return operator.getRun(t, skipRun).Status == loomv1.RunStatus_RUN_STATUS_COMPLETED
	})
	if c := operator.candidate(t, "skip-me"); c.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_COMPLETED {
		t.Fatalf("candidate %v", c.Status)
	}
	// The same skip once the Run completed still changes nothing.
	if _, err := operator.runs.SkipStep(ctx, connect.NewRequest(skip)); err != nil {
		t.Fatalf("the same skip after the Run completed: %v", err)
	}
	evs := events(loomv1.EventKind_EVENT_KIND_STEP_SKIPPED, "skip-me")
	if len(evs) != 2 || evs[0].Step != "review" || evs[1].Step != "bump-go" || evs[1].Actor != "alice" || evs[1].Details["reason"] != "bumped by hand in #12" {
		t.Fatalf("step_skipped events %v", evs)
	}

	// Adopt: the step is open with the pull request; the Migrator's merged
	// report moves the Run on.
	const adoptRun = "go-upgrade__adopt-me"
	const pr = "https://git.example/acme/adopt-me/pull/9"
	d = start("adopt-me")
	const why = "opened by hand: the Migrator's push was refused"
	adopt := &loomv1.AdoptPullRequestRequest{RunId: adoptRun, StepName: "bump-go", Attempt: 1, PrUrl: pr, Note: why}
	_, err = migrator.runs.AdoptPullRequest(ctx, connect.NewRequest(adopt))
	wantCode(t, err, connect.CodePermissionDenied, "")
	_, err = operator.runs.AdoptPullRequest(ctx, connect.NewRequest(&loomv1.AdoptPullRequestRequest{RunId: adoptRun, StepName: "bump-go", Attempt: 1, PrUrl: "git@git.example:pull/9"}))
	wantCode(t, err, connect.CodeInvalidArgument, "")
	_, err = operator.runs.AdoptPullRequest(ctx, connect.NewRequest(&loomv1.AdoptPullRequestRequest{RunId: adoptRun, StepName: "bump-go", Attempt: 2, PrUrl: pr}))
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_STALE_ATTEMPT)
	adopted, err := operator.runs.AdoptPullRequest(ctx, connect.NewRequest(adopt))
	if err != nil {
		t.Fatal(err)
	}
	if r := adopted.Msg.Run; r.CurrentStepStatus != loomv1.StepStatus_STEP_STATUS_OPEN || r.StepResults[0].PrUrl != pr || r.StepResults[0].Actor != "alice" ||
		r.StepResults[0].Message != why {
		t.Fatalf("adopted %v", r)
	}
	if _, err := operator.runs.AdoptPullRequest(ctx, connect.NewRequest(adopt)); err != nil {
		t.Fatalf("the same adoption again: %v", err)
	}
	_, err = operator.runs.AdoptPullRequest(ctx, connect.NewRequest(&loomv1.AdoptPullRequestRequest{RunId: adoptRun, StepName: "bump-go", Attempt: 1, PrUrl: pr + "0"}))
	wantCode(t, err, connect.CodeFailedPrecondition, loomv1.ErrorReason_TRANSITION_NOT_ALLOWED)
	eventually(t, "the adopted step open in the view", func() bool {
		r := operator.getRun(t, adoptRun)
		return r.CurrentStepStatus == loomv1.StepStatus_STEP_STATUS_OPEN && r.StepResults[0].PrUrl == pr
	})
	migrator.mustReport(t, d, loomv1.StepStatus_STEP_STATUS_MERGED, signed(d))
	d2 = w.dispatchOf(func(d *migratorv1.ExecuteStepRequest) bool { return d.GetCandidate().GetId() == "adopt-me" })
	migrator.mustReport(t, d2, loomv1.StepStatus_STEP_STATUS_COMPLETED, signed(d2))
	eventually(t, "the adopted Run completed", func() bool {
		return operator.getRun(t, adoptRun).Status == loomv1.RunStatus_RUN_STATUS_COMPLETED
	})
	if s := operator.getRun(t, adoptRun).StepResults[0]; s.Status != loomv1.StepStatus_STEP_STATUS_MERGED || s.PrUrl != pr {
		t.Fatalf("adopted step after its merge %v", s)
	}
	evs = events(loomv1.EventKind_EVENT_KIND_PR_ADOPTED, "adopt-me")
	if len(evs) != 1 || evs[0].Actor != "alice" || evs[0].Details["pr_url"] != pr || evs[0].Details["note"] != why || evs[0].Step != "bump-go" {
		t.Fatalf("pr_adopted events %v", evs)
	}
}
