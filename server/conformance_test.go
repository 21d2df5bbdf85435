package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	migratorv1 "github.com/loomhq/loom/gen/loom/migrator/v1"
	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/migratorsdk/migratortest"
)

// Migrator authors test against migratortest, the SDK's fake Loom: it must
// judge a Migrator's reports as Loom does. The same reports, sent to both
// from every status a step can be in (including after it ended), are
// accepted (changed or not) or refused alike: same code, same reason.
func TestMigratortestJudgesReportsLikeLoom(t *testing.T) {
	const (
		inProgress = loomv1.StepStatus_STEP_STATUS_IN_PROGRESS
		open       = loomv1.StepStatus_STEP_STATUS_OPEN
		merged     = loomv1.StepStatus_STEP_STATUS_MERGED
		review     = loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW
		completed  = loomv1.StepStatus_STEP_STATUS_COMPLETED
		failed     = loomv1.StepStatus_STEP_STATUS_FAILED
		// Set by operators only: both refuse it from a Migrator.
		skipped = loomv1.StepStatus_STEP_STATUS_SKIPPED
	)
	statuses := []loomv1.StepStatus{inProgress, open, merged, review, completed, failed, skipped}
	var scenarios [][]loomv1.StepStatus
	for _, before := range [][]loomv1.StepStatus{{}, {inProgress}, {open}, {review}, {open, merged}, {completed}, {failed}} {
		for _, last := range statuses {
			scenarios = append(scenarios, append(append([]loomv1.StepStatus{}, before...), last))
		}
	}
	// A report repeated with other data, and an open step without pr_url.
	scenarios = append(scenarios, []loomv1.StepStatus{open, open}, []loomv1.StepStatus{review, review})

	w := newWorld(t)
	real := w.startLoom()
	var ids []string
	var cands []migratorsdk.Candidate
	for i := range scenarios {
		ids = append(ids, fmt.Sprintf("svc-%02d", i))
		cands = append(cands, migratorsdk.Candidate{ID: ids[i], Kind: "service"})
	}
	real.setup(t, w.migrator.url, ids...)
	fake := migratortest.New(t)
	fake.Register(migratorsdk.Migration{ID: "go-upgrade", Name: "Upgrade Go",
		Steps:  []migratorsdk.Step{{Name: "bump-go", Type: "open-pr"}, {Name: "review", Type: "manual-review"}},
		Inputs: []migratorsdk.Input{{Name: "target_version"}},
	}, w.migrator.url, cands...)
	fakeEvents := loomv1connect.NewEventServiceClient(http.DefaultClient, fake.URL())
	inputs := map[string]string{"target_version": "1.23"}

	for i, sc := range scenarios {
		id := ids[i]
		if _, err := real.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "go-upgrade", CandidateId: id, Inputs: inputs})); err != nil {
			t.Fatal(err)
		}
		realD := w.dispatchOf(func(d *migratorv1.ExecuteStepRequest) bool {
			return d.GetCandidate().GetId() == id && !fromFake(d)
		})
		if _, err := fake.Dispatch(ctx, "go-upgrade", "bump-go", id, inputs); err != nil {
			t.Fatal(err)
		}
		fakeD := w.dispatchOf(func(d *migratorv1.ExecuteStepRequest) bool { return d.GetCandidate().GetId() == id && fromFake(d) })

		for k, status := range sc {
			// The second of two reports of a status carries other data.
			data := fmt.Sprintf("report %d", k)
			got := map[string]string{}
			for name, target := range map[string]struct {
				events loomv1connect.EventServiceClient
				d      *migratorv1.ExecuteStepRequest
			}{"Loom": {real.events, realD}, "migratortest": {fakeEvents, fakeD}} {
				req := &loomv1.ReportStepStatusRequest{RunId: target.d.RunId, Execution: target.d.Execution, StepName: target.d.Step.Name,
					Attempt: target.d.Attempt, Status: status, Message: data, CallbackToken: target.d.CallbackToken}
				if status == open {
					req.PrUrl = "https://git.example/pull/" + data[len(data)-1:]
				}
				res, err := target.events.ReportStepStatus(ctx, connect.NewRequest(req))
				got[name] = outcome(res, err)
			}
			if got["Loom"] != got["migratortest"] {
				t.Errorf("%v, report %d (%v): Loom answers %s, migratortest %s", sc, k+1, status, got["Loom"], got["migratortest"])
			}
		}
	}
}

// outcome is what a Migrator can tell of a report's answer.
func outcome(res *connect.Response[loomv1.ReportStepStatusResponse], err error) string {
	if err == nil {
		return fmt.Sprintf("accepted (changed %v)", res.Msg.GetChanged())
	}
	return fmt.Sprintf("refused %v %s", connect.CodeOf(err), migratorsdk.RefusalReason(err))
}

// fromFake tells migratortest's dispatches (its callback tokens say so)
// from Loom's, which name their Runs the same way.
func fromFake(d *migratorv1.ExecuteStepRequest) bool {
	return strings.HasPrefix(d.GetCallbackToken(), "test.")
}

// dispatchOf waits for the dispatch that match says is the one, passing
// over the others (the next steps of Runs that moved on).
func (w *world) dispatchOf(match func(*migratorv1.ExecuteStepRequest) bool) *migratorv1.ExecuteStepRequest {
	w.t.Helper()
	for {
		if d := w.nextDispatch(); match(d) {
			return d
		}
	}
}
