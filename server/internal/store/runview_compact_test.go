package store

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

// encodeRunV1 is the view as written before runViewRecord (version 1).
func encodeRunV1(t testing.TB, r migration.Run) string {
	t.Helper()
	rec := runRecord{V: recordVersion, Execution: r.Execution, Status: string(r.Status), Steps: stepRecords(r.Steps),
		Inputs: r.Inputs, StartTime: optMillis(r.StartTime), UpdateTime: optMillis(r.UpdateTime), EndTime: optMillis(r.EndTime),
		CancelReason: r.CancelReason, StartedBy: r.StartedBy, RolloutID: r.RolloutID, Seq: r.Seq}
	for _, s := range r.Results {
		rec.Results = append(rec.Results, stepResultRecord{Step: s.StepName, Status: string(s.Status), Metadata: s.Metadata,
			PRURL: s.PRURL, Message: s.Message, Attempt: s.Attempt, StartTime: optMillis(s.StartTime),
			UpdateTime: optMillis(s.UpdateTime), EndTime: optMillis(s.EndTime), LastReport: optMillis(s.LastReport),
			OpenTime: optMillis(s.OpenTime), Actor: s.Actor, Dispatches: s.Dispatches})
	}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A run view of version 1, written by the code before the compact view,
// reads as it did, through GetRun and ListRuns; a save replaces it with
// the compact one. A literal one, as Redis held them, reads too.
func TestARunViewOfVersion1IsRead(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	setupRuns(t, s, "m", "org/a")
	r := mustBegin(t, s, newRun("m", "org/a", 1, at(1)))
	r.BeginStep(0, 1, at(2))
	runReport(t, &r, migration.StepOpen, at(3), func(a *migration.StepAction) {
		a.PRURL, a.Metadata = "https://git.example/pull/1", map[string]string{"sha": "abc"}
	})
	r = mustSave(t, s, r)
	want := mustGetRun(t, s, "m", "org/a")

	if err := rdb.HSet(ctx, runKey("m", "org/a"), fieldView, encodeRunV1(t, want)).Err(); err != nil {
		t.Fatal(err)
	}
	if got := mustGetRun(t, s, "m", "org/a"); !reflect.DeepEqual(got, want) {
		t.Errorf("get of a version 1 view:\n  got  %+v\n  want %+v", got, want)
	}
	page, err := s.ListRuns(ctx, "m", migration.RunFilter{}, migration.PageRequest{})
	if err != nil || len(page.Runs) != 1 || !reflect.DeepEqual(page.Runs[0], want) {
		t.Errorf("list of a version 1 view: %+v %v", page, err)
	}

	runReport(t, &r, migration.StepMerged, at(4))
	r = mustSave(t, s, r)
	if v, _ := rdb.HGet(ctx, runKey("m", "org/a"), fieldView).Result(); !strings.HasPrefix(v, `{"v":2,`) {
		t.Errorf("a save left the view %s", v)
	}
	if got := mustGetRun(t, s, "m", "org/a"); got.Results[0].Status != migration.StepMerged || got.Seq != r.Seq {
		t.Errorf("after the save: %+v", got)
	}

	literal := `{"v":1,"exec":1,"status":"completed","steps":[{"name":"step-1","type":"instant"}],"results":[{"step":"step-1","status":"completed","attempt":1,"start":1796642987302,"update":1796642987311,"end":1796642987311,"last_report":1796642987311,"actor":"dev-migrator","dispatches":1}],"start":1796642987302,"update":1796642987329,"end":1796642987329,"started_by":"dev-operator","seq":7}`
	got, err := decodeRun("m", "org/a", map[string]string{fieldView: literal, fieldVer: "5", "exec": "1", "seq": "7", "status": "completed"})
	ms := func(n int64) time.Time { return time.UnixMilli(n).UTC() }
	wantLit := migration.Run{ID: "m__org/a", MigrationID: "m", CandidateID: "org/a", Execution: 1, Status: migration.RunCompleted,
		Steps: []migration.StepDefinition{{Name: "step-1", Type: "instant"}},
		Results: []migration.StepResult{{StepName: "step-1", Status: migration.StepCompleted, Attempt: 1, StartTime: ms(1796642987302),
			UpdateTime: ms(1796642987311), EndTime: ms(1796642987311), LastReport: ms(1796642987311), Actor: "dev-migrator", Dispatches: 1}},
		StartTime: ms(1796642987302), UpdateTime: ms(1796642987329), EndTime: ms(1796642987329), StartedBy: "dev-operator", Seq: 7, Version: 5}
	if err != nil || !reflect.DeepEqual(got, wantLit) {
		t.Errorf("literal version 1 view:\n  got  %+v %v\n  want %+v", got, err, wantLit)
	}
	if _, err := decodeRun("m", "org/a", map[string]string{fieldView: `{"v":3}`}); err == nil {
		t.Error("a view of an unknown version was read")
	}
}

// The compact view is at most 3/5 of version 1's for a Run whose steps are
// done, and names a result's step only when it is not its index's.
func TestTheRunViewIsCompact(t *testing.T) {
	r := newRun("m", "org/a", 1, at(1))
	for i := range r.Steps {
		r.BeginStep(i, 1, at(2+i))
		runReport(t, &r, migration.StepCompleted, at(3+i))
	}
	v2, err := encodeRun(r)
	if err != nil {
		t.Fatal(err)
	}
	if v1 := encodeRunV1(t, r); 5*len(v2) > 3*len(v1) {
		t.Errorf("view of %d bytes, version 1's %d:\n%s", len(v2), len(v1), v2)
	}
	if strings.Contains(v2, `"n":"bump","s"`) {
		t.Errorf("a result names its step: %s", v2)
	}
	r.Results[0].StepName = "other"
	v2, _ = encodeRun(r)
	got, err := decodeRun("m", "org/a", map[string]string{fieldView: v2, "exec": "1", "seq": "0", "status": string(r.Status)})
	if err != nil || got.Results[0].StepName != "other" || got.Results[1].StepName != r.Steps[1].Name {
		t.Errorf("step names read back: %+v %v", got.Results, err)
	}
}
