package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// Run views: BeginRun, SaveRun, GetRun, ListRuns, WatchRun and their effect
// on Candidates, counters and DeleteMigration, on a real redis-server.
// Views are built the way a Run's workflow builds them: migration.NewRun,
// then BeginStep / Apply / Finish.

// runManifest is the manifest of execution exec of Candidate c of m.
func runManifest(m, c string, exec int64) migration.Manifest {
	def := testMigration(m)
	return migration.Manifest{
		RunID:         migration.RunID(m, c),
		Execution:     exec,
		MigrationID:   m,
		MigrationName: def.Name,
		Steps:         def.Steps, // "bump" (a PR), then "review" (manual review)
		MigratorURL:   def.MigratorURL,
		Candidate:     migration.Candidate{ID: c, MigrationID: m},
		Inputs:        map[string]string{"tag": "v" + strconv.FormatInt(exec, 10)},
	}
}

// newRun is the Run of execution exec of Candidate c before its first
// dispatch, as StartRun and the workflow build it.
func newRun(m, c string, exec int64, now time.Time) migration.Run {
	return migration.NewRun(runManifest(m, c, exec), now)
}

// reportAction is a Migrator's report on the current step of r.
func reportAction(r *migration.Run, status migration.StepStatus) migration.StepAction {
	c := r.Current()
	return migration.StepAction{
		Kind: migration.ActionReport, Execution: r.Execution, Step: c.StepName, Attempt: c.Attempt,
		Status: status, Actor: migration.ActorMigrator,
	}
}

// runReport applies a Migrator's report on the current step of r.
func runReport(t testing.TB, r *migration.Run, status migration.StepStatus, now time.Time, opts ...func(*migration.StepAction)) {
	t.Helper()
	runAct(t, r, reportAction(r, status), now, opts...)
}

// tryReport is runReport for goroutines other than the test's: it returns
// the failure instead of ending the test.
func tryReport(r *migration.Run, status migration.StepStatus, now time.Time) error {
	a := reportAction(r, status)
	changed, err := r.Apply(a, now)
	if err == nil && !changed {
		err = fmt.Errorf("report %s changed nothing", status)
	}
	return err
}

// runAct applies a step action to r and fails unless it changed the Run.
func runAct(t testing.TB, r *migration.Run, a migration.StepAction, now time.Time, opts ...func(*migration.StepAction)) {
	t.Helper()
	for _, o := range opts {
		o(&a)
	}
	changed, err := r.Apply(a, now)
	if err != nil || !changed {
		t.Fatalf("apply %+v to %s: changed=%v err=%v", a, r.ID, changed, err)
	}
}

func mustBegin(t testing.TB, s *Store, r migration.Run) migration.Run {
	t.Helper()
	got, err := s.BeginRun(context.Background(), r)
	if err != nil {
		t.Fatalf("begin run %s exec %d: %v", r.ID, r.Execution, err)
	}
	return got
}

// mustSave saves r and returns the view stored after it.
func mustSave(t testing.TB, s *Store, r migration.Run) migration.Run {
	t.Helper()
	version, err := s.SaveRun(context.Background(), r, nil, nil)
	if err != nil {
		t.Fatalf("save run %s exec %d seq %d: %v", r.ID, r.Execution, r.Seq, err)
	}
	got := mustGetRun(t, s, r.MigrationID, r.CandidateID)
	if got.Version != version {
		t.Fatalf("save run %s seq %d answered version %d; stored version %d", r.ID, r.Seq, version, got.Version)
	}
	return got
}

// mustSaveNew saves r, expecting it to be stored as version wantVersion.
func mustSaveNew(t testing.TB, s *Store, r migration.Run, wantVersion int64) migration.Run {
	t.Helper()
	got := mustSave(t, s, r)
	if got.Seq != r.Seq || got.Execution != r.Execution || got.Version != wantVersion {
		t.Fatalf("save %s exec %d seq %d: stored exec %d seq %d version %d, want version %d",
			r.ID, r.Execution, r.Seq, got.Execution, got.Seq, got.Version, wantVersion)
	}
	return got
}

func mustGetRun(t testing.TB, s *Store, m, c string) migration.Run {
	t.Helper()
	r, err := s.GetRun(context.Background(), m, c)
	if err != nil {
		t.Fatalf("get run %s__%s: %v", m, c, err)
	}
	return r
}

func mustGetCandidate(t testing.TB, s *Store, m, c string) migration.Candidate {
	t.Helper()
	got, err := s.GetCandidate(context.Background(), m, c)
	if err != nil {
		t.Fatalf("get candidate %s/%s: %v", m, c, err)
	}
	return got
}

// wantCandidate checks the status and execution of a Candidate.
func wantCandidate(t testing.TB, s *Store, m, c string, status migration.CandidateStatus, exec int64) migration.Candidate {
	t.Helper()
	got := mustGetCandidate(t, s, m, c)
	if got.Status != status || got.Execution != exec {
		t.Errorf("candidate %s/%s is %s exec %d, want %s exec %d", m, c, got.Status, got.Execution, status, exec)
	}
	return got
}

// wantCounts checks the Candidate counters of m.
func wantCounts(t testing.TB, s *Store, m string, notStarted, running, completed int64) {
	t.Helper()
	got, err := s.GetMigration(context.Background(), m)
	if err != nil {
		t.Fatalf("get migration %s: %v", m, err)
	}
	want := migration.CandidateCounts{NotStarted: notStarted, Running: running, Completed: completed}
	if got.Counts != want {
		t.Errorf("%s counts %+v, want %+v", m, got.Counts, want)
	}
}

// dumpMigration renders every key of Migration m with its content, to
// check that a call wrote nothing.
func dumpMigration(t testing.TB, rdb *redis.Client, m string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, key := range scanKeys(t, rdb, migrationKeysPattern(m)) {
		switch typ := rdb.Type(ctx, key).Val(); typ {
		case "hash":
			out[key] = fmt.Sprint(hgetall(t, rdb, key)) // fmt sorts map keys
		case "zset":
			out[key] = fmt.Sprint(zmembers(t, rdb, key))
		case "stream":
			out[key] = fmt.Sprint(rdb.XLen(ctx, key).Val(), rdb.XRevRangeN(ctx, key, "+", "-", 1).Val())
		case "list":
			out[key] = fmt.Sprint(rdb.LRange(ctx, key, 0, -1).Val())
		default:
			t.Fatalf("key %s has unexpected type %q", key, typ)
		}
	}
	return out
}

func wantUnchanged(t testing.TB, rdb *redis.Client, m string, before map[string]string, what string) {
	t.Helper()
	after := dumpMigration(t, rdb, m)
	if !reflect.DeepEqual(before, after) {
		for k := range before {
			if before[k] != after[k] {
				t.Errorf("%s changed %s:\n  before %s\n  after  %s", what, k, before[k], after[k])
			}
		}
		for k := range after {
			if _, ok := before[k]; !ok {
				t.Errorf("%s created %s: %s", what, k, after[k])
			}
		}
	}
}

// candidateStatusOf is the status a Candidate has once its Run's view is in
// status r.
func candidateStatusOf(r migration.RunStatus) migration.CandidateStatus {
	switch r {
	case migration.RunRunning:
		return migration.CandidateRunning
	case migration.RunCompleted:
		return migration.CandidateCompleted
	default:
		return migration.CandidateNotStarted
	}
}

// checkRuns runs checkInvariants (Candidate indexes and counters), then
// recomputes from the run view hashes everything beside them: the runs
// index, the status, step and status×step indexes (no stray or missing
// entry, no leftover key), and the copies of the view's fields in the hash.
// Every run view's Candidate must exist with the view's execution; when
// candidatesFollow is set, its status must also be the one the view's
// status implies (running, completed, cancelled → not_started).
func checkRuns(t testing.TB, rdb *redis.Client, m string, candidatesFollow bool) {
	t.Helper()
	checkInvariants(t, rdb, m)
	// Every run view is in the index of its status, one only (runsKey is
	// no longer written).
	var ids []string
	for _, st := range migration.RunStatuses {
		ids = append(ids, zmembers(t, rdb, runStatusIndexKey(m, string(st)))...)
	}
	slices.Sort(ids)
	if n := len(slices.Compact(slices.Clone(ids))); n != len(ids) {
		t.Errorf("%s: a run is in the index of two statuses: %v", m, ids)
	}
	if n, _ := rdb.Exists(context.Background(), runsKey(m)).Result(); n != 0 {
		t.Errorf("%s: %s was written", m, runsKey(m))
	}
	var hashes []string
	for _, id := range ids {
		hashes = append(hashes, runKey(m, id))
	}
	slices.Sort(hashes)
	if got := scanKeys(t, rdb, "loom:{"+m+"}:run:*"); !slices.Equal(got, hashes) {
		t.Errorf("%s: run view hashes %v, runs index says %v", m, got, hashes)
	}
	want := map[string][]string{} // index key -> ids, in id order
	for _, id := range ids {
		h := hgetall(t, rdb, runKey(m, id))
		if len(h) == 0 {
			t.Errorf("%s: run %s is indexed but has no hash", m, id)
			continue
		}
		r, err := decodeRun(m, id, h)
		if err != nil {
			t.Errorf("%s: %v", m, err)
			continue
		}
		status, step := h[fieldStatus], h["step"]
		if status != string(r.Status) || step != string(r.CurrentStepStatus()) ||
			h[fieldExec] != strconv.FormatInt(r.Execution, 10) || h["seq"] != strconv.FormatInt(r.Seq, 10) {
			t.Errorf("%s: run %s hash has status %q step %q exec %q seq %q; its view says %s %q exec %d seq %d",
				m, id, status, step, h[fieldExec], h["seq"], r.Status, r.CurrentStepStatus(), r.Execution, r.Seq)
		}
		if r.Version < 1 {
			t.Errorf("%s: run %s has version %d", m, id, r.Version)
		}
		want[runStatusIndexKey(m, status)] = append(want[runStatusIndexKey(m, status)], id)
		if step != "" {
			want[runStepIndexKey(m, step)] = append(want[runStepIndexKey(m, step)], id)
			k := runStatusStepIndexKey(m, status, step)
			want[k] = append(want[k], id)
		}
		ch := hgetall(t, rdb, candidateKey(m, id))
		if len(ch) == 0 {
			t.Errorf("%s: run %s has no Candidate", m, id)
			continue
		}
		if ch[fieldExec] != h[fieldExec] {
			t.Errorf("%s: candidate %s has exec %s, its run view exec %s", m, id, ch[fieldExec], h[fieldExec])
		}
		if want := string(candidateStatusOf(r.Status)); candidatesFollow && ch[fieldStatus] != want {
			t.Errorf("%s: candidate %s is %s, its run is %s (want %s)", m, id, ch[fieldStatus], r.Status, want)
		}
	}
	for _, key := range scanKeys(t, rdb, "loom:{"+m+"}:runs:*") {
		if got := zmembers(t, rdb, key); !slices.Equal(got, want[key]) {
			t.Errorf("%s: run index %s = %v, views say %v", m, strings.TrimPrefix(key, migrationTag(m)), got, want[key])
		}
		delete(want, key)
	}
	for key, ids := range want {
		t.Errorf("%s: run index %s missing, views say %v", m, strings.TrimPrefix(key, migrationTag(m)), ids)
	}
}

// listRunIDs pages through ListRuns with the given page size and returns
// the Candidate ids listed and the Total of the first page. Each page is
// checked: size, Next, filter, and every listed Run equals its GetRun.
func listRunIDs(t testing.TB, s *Store, m string, f migration.RunFilter, limit int) ([]string, int64) {
	t.Helper()
	ctx := context.Background()
	var out []string
	total := int64(-1)
	after := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("list runs %+v: paging does not end", f)
		}
		p, err := s.ListRuns(ctx, m, f, migration.PageRequest{After: after, Limit: limit})
		if err != nil {
			t.Fatalf("list runs %+v after %q: %v", f, after, err)
		}
		if total == -1 {
			total = p.Total
		} else if p.Total != total {
			t.Errorf("list runs %+v: total %d then %d", f, total, p.Total)
		}
		if limit > 0 && len(p.Runs) > limit {
			t.Errorf("list runs %+v: %d runs in a page of %d", f, len(p.Runs), limit)
		}
		for _, r := range p.Runs {
			if r.ID != migration.RunID(m, r.CandidateID) || r.MigrationID != m {
				t.Errorf("listed run %q of %q (candidate %q)", r.ID, r.MigrationID, r.CandidateID)
			}
			if f.Status != "" && r.Status != f.Status {
				t.Errorf("list runs %+v: listed %s, which is %s", f, r.CandidateID, r.Status)
			}
			if f.CurrentStepStatus != "" && r.CurrentStepStatus() != f.CurrentStepStatus {
				t.Errorf("list runs %+v: listed %s, whose step is %q", f, r.CandidateID, r.CurrentStepStatus())
			}
			if got := mustGetRun(t, s, m, r.CandidateID); !reflect.DeepEqual(got, r) {
				t.Errorf("listed run %s differs from its GetRun:\n  list %+v\n  get  %+v", r.CandidateID, r, got)
			}
			out = append(out, r.CandidateID)
		}
		if p.Next == "" {
			return out, total
		}
		if len(p.Runs) == 0 || p.Next != p.Runs[len(p.Runs)-1].CandidateID {
			t.Fatalf("list runs %+v: next %q is not the last id of the page", f, p.Next)
		}
		after = p.Next
	}
}

// wantListed checks that ListRuns with filter f lists exactly want (in
// order) with Total len(want), whatever the page size.
func wantListed(t testing.TB, s *Store, m string, f migration.RunFilter, want ...string) {
	t.Helper()
	for _, limit := range []int{0, 1, 2} {
		got, total := listRunIDs(t, s, m, f, limit)
		if !slices.Equal(got, want) || total != int64(len(want)) {
			t.Errorf("list runs %+v (page size %d) = %v total %d, want %v", f, limit, got, total, want)
		}
	}
}

// checkListings checks every filter of ListRuns (each Run status, each step
// status, each pair, none) against the views of the Candidates cs, read
// with GetRun.
func checkListings(t testing.TB, s *Store, m string, cs ...string) {
	t.Helper()
	var views []migration.Run
	for _, c := range cs {
		if _, err := s.GetRun(context.Background(), m, c); err == nil {
			views = append(views, mustGetRun(t, s, m, c))
		}
	}
	for _, rs := range append([]migration.RunStatus{""}, migration.RunStatuses...) {
		for _, ss := range append([]migration.StepStatus{""}, migration.StepStatuses...) {
			var want []string
			for _, v := range views {
				if (rs == "" || v.Status == rs) && (ss == "" || v.CurrentStepStatus() == ss) {
					want = append(want, v.CandidateID)
				}
			}
			slices.Sort(want)
			wantListed(t, s, m, migration.RunFilter{Status: rs, CurrentStepStatus: ss}, want...)
		}
	}
}

// setupRuns creates Migration m with not_started Candidates cs (kinds
// alternate svc/repo).
func setupRuns(t testing.TB, s *Store, m string, cs ...string) {
	t.Helper()
	mustPut(t, s, m)
	var sub []migration.Candidate
	for i, c := range cs {
		sub = append(sub, cand(c, []string{"svc", "repo"}[i%2]))
	}
	mustSubmit(t, s, migration.Submission{MigrationID: m, Candidates: sub}, at(0))
}

func TestBeginRun(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	setupRuns(t, s, "m", "a", "b", "c")

	// A not_started Candidate at exec 0 begins execution 1.
	r := newRun("m", "a", 1, at(1))
	got := mustBegin(t, s, r)
	want := r.Clone()
	want.Version = 1
	if !reflect.DeepEqual(got, want) {
		t.Errorf("begin returned\n  %+v\nwant\n  %+v", got, want)
	}
	if g := mustGetRun(t, s, "m", "a"); !reflect.DeepEqual(g, want) {
		t.Errorf("get after begin\n  %+v\nwant\n  %+v", g, want)
	}
	ca := wantCandidate(t, s, "m", "a", migration.CandidateRunning, 1)
	if !reflect.DeepEqual(ca.Inputs, map[string]string{"tag": "v1"}) || !ca.UpdateTime.Equal(at(1)) {
		t.Errorf("candidate after begin: inputs %v utime %v", ca.Inputs, ca.UpdateTime)
	}
	wantCounts(t, s, "m", 2, 1, 0)
	wantListed(t, s, "m", migration.RunFilter{}, "a")
	wantListed(t, s, "m", migration.RunFilter{Status: migration.RunRunning}, "a")
	wantListed(t, s, "m", migration.RunFilter{Status: migration.RunCompleted})
	wantListed(t, s, "m", migration.RunFilter{CurrentStepStatus: migration.StepInProgress}) // nothing dispatched yet
	if page, err := s.ListCandidates(ctx, "m", migration.CandidateFilter{Status: migration.CandidateRunning}, migration.PageRequest{}); err != nil ||
		len(page.Candidates) != 1 || page.Candidates[0].ID != "a" {
		t.Errorf("running candidates: %+v, %v", page, err)
	}
	checkRuns(t, rdb, "m", true)

	// Repeating it (the workflow's own begin, later, with its own clock and
	// inputs) writes nothing and returns the stored view.
	before := dumpMigration(t, rdb, "m")
	again := newRun("m", "a", 1, at(2))
	again.Inputs["tag"] = "other"
	if got := mustBegin(t, s, again); !reflect.DeepEqual(got, want) {
		t.Errorf("repeated begin returned\n  %+v\nwant the stored\n  %+v", got, want)
	}
	wantUnchanged(t, rdb, "m", before, "repeated begin")

	// Also once the workflow has moved on: the newest view comes back.
	r.BeginStep(0, 1, at(3))
	mustSaveNew(t, s, r, 2)
	runReport(t, &r, migration.StepOpen, at(4))
	stored := mustSaveNew(t, s, r, 3)
	before = dumpMigration(t, rdb, "m")
	if got := mustBegin(t, s, newRun("m", "a", 1, at(5))); !reflect.DeepEqual(got, stored) {
		t.Errorf("late repeated begin returned\n  %+v\nwant the stored\n  %+v", got, stored)
	}
	wantUnchanged(t, rdb, "m", before, "late repeated begin")

	// A completed Candidate cannot begin again.
	b := newRun("m", "b", 1, at(6))
	mustBegin(t, s, b)
	b.Finish(migration.RunCompleted, "", at(7))
	mustSaveNew(t, s, b, 2)
	wantCandidate(t, s, "m", "b", migration.CandidateCompleted, 1)
	before = dumpMigration(t, rdb, "m")
	_, err := s.BeginRun(ctx, newRun("m", "b", 2, at(8)))
	refusal(t, err, migration.ErrFailedPrecondition, migration.ReasonCandidateCompleted)
	_, err = s.BeginRun(ctx, newRun("m", "b", 1, at(8)))
	refusal(t, err, migration.ErrFailedPrecondition, migration.ReasonCandidateCompleted)
	wantUnchanged(t, rdb, "m", before, "begin of a completed candidate")

	// Cancelled: back to not_started, exec stays 1. A late begin of
	// execution 1 (or older) is stale and changes nothing.
	c := newRun("m", "c", 1, at(9))
	mustBegin(t, s, c)
	c.Finish(migration.RunCancelled, "changed my mind", at(10))
	mustSaveNew(t, s, c, 2)
	wantCandidate(t, s, "m", "c", migration.CandidateNotStarted, 1)
	before = dumpMigration(t, rdb, "m")
	for _, exec := range []int64{1, 0} {
		_, err = s.BeginRun(ctx, newRun("m", "c", exec, at(11)))
		ref := refusal(t, err, migration.ErrFailedPrecondition, migration.ReasonStaleExecution)
		if ref.Metadata["execution"] != "1" || ref.Metadata["run_id"] != "m__c" {
			t.Errorf("stale begin exec %d: metadata %v", exec, ref.Metadata)
		}
	}
	wantUnchanged(t, rdb, "m", before, "stale begin")
	checkRuns(t, rdb, "m", true)
	wantCounts(t, s, "m", 1, 1, 1)

	// A is running execution 1; a start of execution 2 means execution 1's
	// workflow is gone (a stale start): accepted, the view starts over.
	a2 := newRun("m", "a", 2, at(12))
	got = mustBegin(t, s, a2)
	if got.Execution != 2 || got.Seq != 0 || got.Version != 4 || len(got.Results) != 0 || got.Inputs["tag"] != "v2" {
		t.Errorf("stale start replaced the view with %+v", got)
	}
	wantCandidate(t, s, "m", "a", migration.CandidateRunning, 2)
	if ca := mustGetCandidate(t, s, "m", "a"); ca.Inputs["tag"] != "v2" {
		t.Errorf("stale start left inputs %v", ca.Inputs)
	}
	wantCounts(t, s, "m", 1, 1, 1)
	wantListed(t, s, "m", migration.RunFilter{CurrentStepStatus: migration.StepOpen}) // exec 1's step is gone
	// Execution 1 can write no more, nor begin again.
	_, err = s.SaveRun(ctx, r, nil, nil)
	refusal(t, err, migration.ErrFailedPrecondition, migration.ReasonStaleExecution)
	_, err = s.BeginRun(ctx, newRun("m", "a", 1, at(13)))
	refusal(t, err, migration.ErrFailedPrecondition, migration.ReasonStaleExecution)
	checkRuns(t, rdb, "m", true)
	checkListings(t, s, "m", "a", "b", "c")

	// Cancelled Candidate c begins execution 2.
	mustBegin(t, s, newRun("m", "c", 2, at(14)))
	wantCandidate(t, s, "m", "c", migration.CandidateRunning, 2)
	wantCounts(t, s, "m", 0, 2, 1)
	checkRuns(t, rdb, "m", true)
	checkListings(t, s, "m", "a", "b", "c")
}

func TestRunUnknownIDs(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	setupRuns(t, s, "m", "a")
	before := dumpMigration(t, rdb, "m")

	_, err := s.BeginRun(ctx, newRun("x", "a", 1, at(1)))
	refusal(t, err, migration.ErrNotFound, migration.ReasonMigrationNotFound)
	_, err = s.BeginRun(ctx, newRun("m", "zz", 1, at(1)))
	refusal(t, err, migration.ErrNotFound, migration.ReasonCandidateNotFound)
	_, err = s.SaveRun(ctx, newRun("x", "a", 1, at(1)), nil, nil)
	refusal(t, err, migration.ErrNotFound, migration.ReasonMigrationNotFound)
	_, err = s.SaveRun(ctx, newRun("m", "zz", 1, at(1)), nil, nil)
	refusal(t, err, migration.ErrNotFound, migration.ReasonCandidateNotFound)
	_, err = s.ListRuns(ctx, "x", migration.RunFilter{}, migration.PageRequest{})
	refusal(t, err, migration.ErrNotFound, migration.ReasonMigrationNotFound)

	// A save of a Candidate never begun is from no current execution, even
	// one of execution 0 (the Candidate's exec before its first start).
	for _, exec := range []int64{1, 0} {
		r := newRun("m", "a", exec, at(1))
		r.BeginStep(0, 1, at(2))
		_, err = s.SaveRun(ctx, r, nil, nil)
		refusal(t, err, migration.ErrFailedPrecondition, migration.ReasonStaleExecution)
	}

	wantUnchanged(t, rdb, "m", before, "refused calls")
	if keys := scanKeys(t, rdb, migrationKeysPattern("x")); len(keys) != 0 {
		t.Errorf("calls on an unknown migration created %v", keys)
	}
	wantListed(t, s, "m", migration.RunFilter{})
}

func TestGetRunNeverStarted(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	setupRuns(t, s, "m", "a")
	for _, tc := range []struct{ m, c string }{{"m", "a"}, {"m", "zz"}, {"x", "a"}} {
		_, err := s.GetRun(context.Background(), tc.m, tc.c)
		ref := refusal(t, err, migration.ErrNotFound, migration.ReasonRunNotFound)
		if ref.Metadata["run_id"] != migration.RunID(tc.m, tc.c) {
			t.Errorf("run not found metadata %v", ref.Metadata)
		}
	}
}

func TestSaveRunKeepsTheNewestView(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	setupRuns(t, s, "m", "a")
	r := newRun("m", "a", 1, at(1))
	mustBegin(t, s, r)

	r.BeginStep(0, 1, at(2))
	seq1 := r.Clone()
	mustSaveNew(t, s, r, 2)
	runReport(t, &r, migration.StepOpen, at(3), func(a *migration.StepAction) { a.PRURL = "https://git/pr/1" })
	newest := mustSaveNew(t, s, r, 3)
	if newest.Seq != 2 || newest.Current().PRURL != "https://git/pr/1" {
		t.Fatalf("stored %+v", newest)
	}
	before := dumpMigration(t, rdb, "m")

	// Older: ignored, the newer stored view comes back, no error.
	if got := mustSave(t, s, seq1); !reflect.DeepEqual(got, newest) {
		t.Errorf("older save returned\n  %+v\nwant the stored\n  %+v", got, newest)
	}
	// Same Seq, other content: ignored too.
	same := r.Clone()
	same.Results[0].Message = "a different story"
	same.Status = migration.RunCompleted
	if got := mustSave(t, s, same); !reflect.DeepEqual(got, newest) {
		t.Errorf("equal-seq save returned\n  %+v\nwant the stored\n  %+v", got, newest)
	}
	// Another execution: refused.
	for _, exec := range []int64{0, 2} {
		other := r.Clone()
		other.Execution = exec
		other.Seq = 99
		_, err := s.SaveRun(ctx, other, nil, nil)
		ref := refusal(t, err, migration.ErrFailedPrecondition, migration.ReasonStaleExecution)
		if ref.Metadata["execution"] != "1" {
			t.Errorf("stale save metadata %v", ref.Metadata)
		}
	}
	wantUnchanged(t, rdb, "m", before, "ignored and refused saves")
	if got := mustGetRun(t, s, "m", "a"); !reflect.DeepEqual(got, newest) {
		t.Errorf("get after ignored saves\n  %+v\nwant\n  %+v", got, newest)
	}

	// Newer: stored, even when Seq jumps.
	r.Seq += 5
	runReport(t, &r, migration.StepMerged, at(4))
	if got := mustSaveNew(t, s, r, 4); got.Seq != 8 || got.Current().Status != migration.StepMerged {
		t.Errorf("stored %+v", got)
	}
	checkRuns(t, rdb, "m", true)
}

// One Run walks all its steps while others stand in other states; after
// every save, the run indexes and every ListRuns filter agree with the
// views, and the Candidate follows the Run.
func TestRunLifecycleIndexes(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	cs := []string{"a", "b", "c", "d", "e"}
	setupRuns(t, s, "m", cs...)
	check := func(step string) {
		t.Helper()
		if t.Failed() {
			t.Fatalf("failed before %s", step)
		}
		checkRuns(t, rdb, "m", true)
		checkListings(t, s, "m", cs...)
	}
	n := 0
	now := func() time.Time { n++; return at(n) }

	// b: open on its first step; c: failed first step; d: awaiting review;
	// e: never started.
	b := newRun("m", "b", 1, now())
	mustBegin(t, s, b)
	b.BeginStep(0, 1, now())
	runReport(t, &b, migration.StepOpen, now())
	mustSaveNew(t, s, b, 2)
	c := newRun("m", "c", 1, now())
	mustBegin(t, s, c)
	c.BeginStep(0, 1, now())
	c.FailStep("dispatch failed: refused", now())
	mustSaveNew(t, s, c, 2)
	d := newRun("m", "d", 1, now())
	mustBegin(t, s, d)
	d.BeginStep(0, 1, now())
	runReport(t, &d, migration.StepMerged, now())
	d.BeginStep(1, 1, now())
	runReport(t, &d, migration.StepAwaitingReview, now())
	mustSaveNew(t, s, d, 2)
	check("setup")

	a := newRun("m", "a", 1, now())
	mustBegin(t, s, a)
	wantCounts(t, s, "m", 1, 4, 0)
	check("begin")
	wantListed(t, s, "m", migration.RunFilter{Status: migration.RunRunning}, "a", "b", "c", "d")

	ver := int64(1)
	save := func(name string, wantStep migration.StepStatus) {
		t.Helper()
		ver++
		mustSaveNew(t, s, a, ver)
		if got := mustGetRun(t, s, "m", "a"); got.CurrentStepStatus() != wantStep {
			t.Errorf("%s: current step status %q, want %q", name, got.CurrentStepStatus(), wantStep)
		}
		check(name)
	}
	a.BeginStep(0, 1, now())
	save("bump dispatched", migration.StepInProgress)
	wantListed(t, s, "m", migration.RunFilter{CurrentStepStatus: migration.StepInProgress}, "a")
	wantListed(t, s, "m", migration.RunFilter{Status: migration.RunRunning, CurrentStepStatus: migration.StepInProgress}, "a")

	runReport(t, &a, migration.StepOpen, now(), func(x *migration.StepAction) { x.PRURL = "https://git/pr/7" })
	save("bump open", migration.StepOpen)
	wantListed(t, s, "m", migration.RunFilter{CurrentStepStatus: migration.StepOpen}, "a", "b")
	wantListed(t, s, "m", migration.RunFilter{CurrentStepStatus: migration.StepInProgress})

	runAct(t, &a, migration.StepAction{Kind: migration.ActionMarkMerged, Step: "bump", Attempt: 1, Actor: "alice"}, now())
	save("bump merged", migration.StepMerged)
	wantListed(t, s, "m", migration.RunFilter{CurrentStepStatus: migration.StepMerged}, "a")
	wantListed(t, s, "m", migration.RunFilter{CurrentStepStatus: migration.StepOpen}, "b")

	a.BeginStep(1, 1, now())
	save("review dispatched", migration.StepInProgress)
	wantListed(t, s, "m", migration.RunFilter{CurrentStepStatus: migration.StepMerged})

	runReport(t, &a, migration.StepFailed, now(), func(x *migration.StepAction) { x.Message = "reviewer unavailable" })
	save("review failed", migration.StepFailed)
	wantListed(t, s, "m", migration.RunFilter{CurrentStepStatus: migration.StepFailed}, "a", "c")

	runAct(t, &a, migration.StepAction{Kind: migration.ActionRetry, Step: "review", Attempt: 1, Actor: "bob"}, now())
	save("review retried", migration.StepInProgress)
	if got := mustGetRun(t, s, "m", "a"); got.Current().Attempt != 2 || got.Current().Actor != "bob" {
		t.Errorf("after retry: %+v", got.Current())
	}

	runReport(t, &a, migration.StepAwaitingReview, now())
	save("awaiting review", migration.StepAwaitingReview)
	wantListed(t, s, "m", migration.RunFilter{Status: migration.RunRunning, CurrentStepStatus: migration.StepAwaitingReview}, "a", "d")

	runAct(t, &a, migration.StepAction{Kind: migration.ActionFinishReview, Step: "review", Attempt: 2, Status: migration.StepCompleted, Actor: "carol"}, now())
	save("review completed", migration.StepCompleted)
	wantCandidate(t, s, "m", "a", migration.CandidateRunning, 1)

	a.Finish(migration.RunCompleted, "", now())
	save("run completed", "")
	wantCandidate(t, s, "m", "a", migration.CandidateCompleted, 1)
	wantCounts(t, s, "m", 1, 3, 1)
	wantListed(t, s, "m", migration.RunFilter{Status: migration.RunCompleted}, "a")
	wantListed(t, s, "m", migration.RunFilter{Status: migration.RunCompleted, CurrentStepStatus: migration.StepCompleted})
	wantListed(t, s, "m", migration.RunFilter{CurrentStepStatus: migration.StepCompleted})
	for _, k := range scanKeys(t, rdb, "loom:{m}:runs:*") {
		if k != runStatusIndexKey("m", "completed") && slices.Contains(zmembers(t, rdb, k), "a") {
			t.Errorf("completed run a is still in index %s", k)
		}
	}

	// b is cancelled on its open step: no step index entry, Candidate back
	// to not_started, and a new execution starts from there.
	b.Finish(migration.RunCancelled, "wrong tag", now())
	mustSaveNew(t, s, b, 3)
	wantCandidate(t, s, "m", "b", migration.CandidateNotStarted, 1)
	wantCounts(t, s, "m", 2, 2, 1)
	check("b cancelled")
	wantListed(t, s, "m", migration.RunFilter{Status: migration.RunCancelled}, "b")
	wantListed(t, s, "m", migration.RunFilter{CurrentStepStatus: migration.StepOpen})

	b2 := newRun("m", "b", 2, now())
	if got := mustBegin(t, s, b2); got.Version != 4 || got.Status != migration.RunRunning ||
		!got.EndTime.IsZero() || got.CancelReason != "" || got.Seq != 0 {
		t.Errorf("second execution of b: %+v", got)
	}
	wantCandidate(t, s, "m", "b", migration.CandidateRunning, 2)
	check("b begun again")
	b2.BeginStep(0, 1, now())
	mustSaveNew(t, s, b2, 5)
	// Execution 1's late writes are refused now.
	b.Seq = 100
	_, err := s.SaveRun(context.Background(), b, nil, nil)
	refusal(t, err, migration.ErrFailedPrecondition, migration.ReasonStaleExecution)
	b2.Finish(migration.RunCancelled, "again", now())
	mustSaveNew(t, s, b2, 6)
	b3 := newRun("m", "b", 3, now())
	mustBegin(t, s, b3)
	b3.BeginStep(0, 1, now())
	runReport(t, &b3, migration.StepMerged, now())
	b3.BeginStep(1, 1, now())
	runReport(t, &b3, migration.StepCompleted, now())
	b3.Finish(migration.RunCompleted, "", now())
	if got := mustSaveNew(t, s, b3, 8); got.Execution != 3 {
		t.Errorf("third execution stored as %+v", got)
	}
	wantCandidate(t, s, "m", "b", migration.CandidateCompleted, 3)
	wantCounts(t, s, "m", 1, 2, 2)
	check("b completed on its third execution")
}

// Every field of Run and StepResult survives the store, times at
// millisecond precision and zero times as zero.
func TestRunRoundTrip(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	setupRuns(t, s, "m", "org/repo.a")
	// Times with sub-millisecond parts.
	odd := func(n int) time.Time { return at(n).Add(345_678 * time.Nanosecond) }
	r := migration.NewRun(runManifest("m", "org/repo.a", 1), odd(1))
	r.Inputs = map[string]string{"tag": "v1.2.3", "region": "eu-west-1"}
	mustBegin(t, s, r)

	r.BeginStep(0, 1, odd(2))
	runReport(t, &r, migration.StepFailed, odd(3), func(a *migration.StepAction) { a.Message = "flaky CI" })
	runAct(t, &r, migration.StepAction{Kind: migration.ActionRetry, Step: "bump", Attempt: 1, Actor: "alice"}, odd(4))
	runReport(t, &r, migration.StepOpen, odd(5), func(a *migration.StepAction) {
		a.PRURL = "https://git.example/org/repo.a/pull/12"
		a.Message = "PR opened"
		a.Metadata = map[string]string{"sha": "abc123", "files": "3"}
	})
	runReport(t, &r, migration.StepMerged, odd(6))
	r.BeginStep(1, 1, odd(7))
	if r.Results[0].Attempt != 2 || r.Results[0].EndTime.IsZero() || r.Results[0].Actor != migration.ActorMigrator ||
		r.Results[0].Metadata == nil || r.Results[1].Metadata != nil || !r.Results[1].EndTime.IsZero() || !r.EndTime.IsZero() {
		t.Fatalf("the view built is not the one this test means: %+v", r)
	}

	ms := func(tm time.Time) time.Time {
		if tm.IsZero() {
			return tm
		}
		return tm.Truncate(time.Millisecond)
	}
	expect := func(r migration.Run, version int64) migration.Run {
		w := r.Clone()
		w.StartTime, w.UpdateTime, w.EndTime = ms(w.StartTime), ms(w.UpdateTime), ms(w.EndTime)
		for i := range w.Results {
			x := &w.Results[i]
			x.StartTime, x.UpdateTime, x.EndTime, x.LastReport, x.OpenTime = ms(x.StartTime), ms(x.UpdateTime), ms(x.EndTime), ms(x.LastReport), ms(x.OpenTime)
		}
		w.Version = version
		return w
	}
	check := func(name string, got, want migration.Run) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n  got  %+v\n  want %+v", name, got, want)
		}
		if got.StartTime.Nanosecond()%int(time.Millisecond) != 0 {
			t.Errorf("%s: start time not at millisecond precision: %v", name, got.StartTime)
		}
	}

	want := expect(r, 2)
	check("save reply", mustSave(t, s, r), want)
	check("get", mustGetRun(t, s, "m", "org/repo.a"), want)
	page, err := s.ListRuns(context.Background(), "m", migration.RunFilter{}, migration.PageRequest{})
	if err != nil || len(page.Runs) != 1 {
		t.Fatalf("list: %+v, %v", page, err)
	}
	check("list", page.Runs[0], want)
	got := mustGetRun(t, s, "m", "org/repo.a")
	if !got.EndTime.IsZero() || !got.Results[1].EndTime.IsZero() || got.Results[1].Metadata != nil || got.CancelReason != "" {
		t.Errorf("unset fields came back set: %+v", got)
	}
	if got.StartTime.Equal(r.StartTime) {
		t.Errorf("start time kept sub-millisecond precision: %v", got.StartTime)
	}

	// Finished: end time and cancel reason.
	r.Finish(migration.RunCancelled, "operator: wrong tag", odd(8))
	want = expect(r, 3)
	check("cancelled save reply", mustSave(t, s, r), want)
	check("cancelled get", mustGetRun(t, s, "m", "org/repo.a"), want)
}

// receive waits for a value on ch; ok is false when ch was closed.
func receive(t testing.TB, ch <-chan struct{}, what string) (ok bool) {
	t.Helper()
	select {
	case _, ok = <-ch:
		return ok
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: nothing within 5s", what)
		return false
	}
}

// waitClosed drains ch until it is closed.
func waitClosed(t testing.TB, ch <-chan struct{}) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("watch channel not closed within 5s of the cancel")
		}
	}
}

// quiet checks that what does announces nothing on channel: a marker
// published after it is the first message there (Redis delivers a
// channel's messages in the order it ran the commands that published them).
func quiet(t testing.TB, rdb *redis.Client, channel, what string, does func()) {
	t.Helper()
	ctx := context.Background()
	sub := rdb.Subscribe(ctx, channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	does()
	if err := rdb.Publish(ctx, channel, "marker").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-sub.Channel():
		if msg.Payload != "marker" {
			t.Errorf("%s: unexpected notification %q", what, msg.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: the marker did not arrive within 5s", what)
	}
}

func TestWatchRun(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	setupRuns(t, s, "m", "a", "b")
	r := newRun("m", "a", 1, at(1))
	mustBegin(t, s, r)
	mustBegin(t, s, newRun("m", "b", 1, at(1)))

	// Two saves from another goroutine: the channel yields.
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := s.WatchRun(ctx, "m", "a")
	if err != nil {
		t.Fatal(err)
	}
	r.BeginStep(0, 1, at(2))
	v1 := r.Clone()
	runReport(t, &r, migration.StepOpen, at(3))
	v2 := r.Clone()
	saved := make(chan error, 1)
	go func() {
		_, err := s.SaveRun(context.Background(), v1, nil, nil)
		if err == nil {
			_, err = s.SaveRun(context.Background(), v2, nil, nil)
		}
		saved <- err
	}()
	if !receive(t, ch, "after two saves") {
		t.Fatal("channel closed")
	}
	if err := <-saved; err != nil {
		t.Fatal(err)
	}
	// The reader may see one value for both changes; the view has them both.
	if got := mustGetRun(t, s, "m", "a"); got.Version != 3 {
		t.Errorf("version %d after two saves", got.Version)
	}
	// The second change may still be on its way to ch: a new watch, which
	// has none of it, shows one value per change when the reader keeps up.
	cancel()
	waitClosed(t, ch)
	ctx, cancel = context.WithCancel(context.Background())
	ch, err = s.WatchRun(ctx, "m", "a")
	if err != nil {
		t.Fatal(err)
	}
	runReport(t, &r, migration.StepMerged, at(4))
	mustSave(t, s, r)
	receive(t, ch, "save of merged")
	r.BeginStep(1, 1, at(10))
	mustSave(t, s, r)
	receive(t, ch, "save of the next step")
	// Ignored and refused writes, and changes of another Run, announce nothing.
	quiet(t, rdb, runChannel("m", "a"), "no change of a", func() {
		mustSave(t, s, v2)
		if _, err := s.BeginRun(context.Background(), newRun("m", "a", 1, at(11))); err != nil {
			t.Fatal(err)
		}
		bv := mustGetRun(t, s, "m", "b")
		bv.BeginStep(0, 1, at(12))
		mustSave(t, s, bv)
	})
	// ch, which forwards that channel, has the marker only.
	receive(t, ch, "the marker")

	cancel()
	waitClosed(t, ch)

	// A watch set up before a change never misses it.
	for i := range 30 {
		ctx, cancel := context.WithCancel(context.Background())
		ch, err := s.WatchRun(ctx, "m", "a")
		if err != nil {
			t.Fatal(err)
		}
		runReport(t, &r, migration.StepInProgress, at(20+i), func(a *migration.StepAction) { a.Message = fmt.Sprint("progress ", i) })
		mustSave(t, s, r)
		ok := receive(t, ch, fmt.Sprint("save ", i, " right after the watch"))
		cancel()
		if !ok {
			t.Fatalf("channel closed before the change %d", i)
		}
		waitClosed(t, ch)
	}

	// A watch ends with its context even when nothing happened.
	ctx, cancel = context.WithCancel(context.Background())
	ch, err = s.WatchRun(ctx, "m", "b")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	waitClosed(t, ch)
}

func TestDeleteMigrationWithRuns(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	cs := []string{"org/a", "org/b", "org/c", "org/d", "org/e"}
	setupRuns(t, s, "doomed", cs...)
	setupRuns(t, s, "doomed-not", cs[:2]...) // shares a prefix; must survive
	other := newRun("doomed-not", "org/a", 1, at(1))
	mustBegin(t, s, other)
	other.BeginStep(0, 1, at(2))
	mustSave(t, s, other)

	// a completed, b cancelled, c cancelled then begun again and open.
	a := newRun("doomed", "org/a", 1, at(1))
	mustBegin(t, s, a)
	a.BeginStep(0, 1, at(2))
	runReport(t, &a, migration.StepCompleted, at(3))
	a.BeginStep(1, 1, at(4))
	runReport(t, &a, migration.StepCompleted, at(5))
	a.Finish(migration.RunCompleted, "", at(6))
	mustSave(t, s, a)
	b := newRun("doomed", "org/b", 1, at(1))
	mustBegin(t, s, b)
	b.Finish(migration.RunCancelled, "no", at(2))
	mustSave(t, s, b)
	c := newRun("doomed", "org/c", 1, at(1))
	mustBegin(t, s, c)
	c.Finish(migration.RunCancelled, "no", at(2))
	mustSave(t, s, c)
	c = newRun("doomed", "org/c", 2, at(3))
	mustBegin(t, s, c)
	c.BeginStep(0, 1, at(4))
	runReport(t, &c, migration.StepOpen, at(5))
	mustSave(t, s, c)
	checkRuns(t, rdb, "doomed", true)

	// Refused while c runs; nothing deleted.
	before := dumpMigration(t, rdb, "doomed")
	_, err := s.DeleteMigration(ctx, "doomed", time.Now())
	ref := refusal(t, err, migration.ErrFailedPrecondition, migration.ReasonMigrationHasRunning)
	if ref.Metadata["running_candidates"] != "1" {
		t.Errorf("refusal metadata %v", ref.Metadata)
	}
	wantUnchanged(t, rdb, "doomed", before, "refused delete")

	c.Finish(migration.RunCancelled, "before the delete", at(6))
	mustSave(t, s, c)
	// d's view still says running (in_progress) while its Candidate is not:
	// the delete must remove its step indexes too.
	d := newRun("doomed", "org/d", 1, at(1))
	mustBegin(t, s, d)
	d.BeginStep(0, 1, at(2))
	mustSave(t, s, d)
	mustSetStatus(t, s, "doomed", "org/d", migration.CandidateRunning, migration.CandidateNotStarted)
	checkRuns(t, rdb, "doomed", false)
	keys := scanKeys(t, rdb, migrationKeysPattern("doomed"))
	for _, k := range []string{
		runKey("doomed", "org/a"), runKey("doomed", "org/d"),
		runStatusIndexKey("doomed", "completed"), runStatusIndexKey("doomed", "cancelled"), runStatusIndexKey("doomed", "running"),
		runStepIndexKey("doomed", "in_progress"), runStatusStepIndexKey("doomed", "running", "in_progress"),
	} {
		if !slices.Contains(keys, k) {
			t.Errorf("before the delete, %s is missing: %v", k, keys)
		}
	}

	// The index of every run the code before wrote (runsKey), and a run
	// view whose Candidate is gone (in the index of its status only): the
	// sweep removes both.
	if err := rdb.ZAdd(ctx, runsKey("doomed"), redis.Z{Member: "org/a"}, redis.Z{Member: "org/b"}, redis.Z{Member: "org/old"}).Err(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"org/old", "org/zz"} {
		if err := rdb.HSet(ctx, runKey("doomed", id), "status", "completed").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.ZAdd(ctx, runStatusIndexKey("doomed", "completed"), redis.Z{Member: "org/zz"}).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteMigration(ctx, "doomed", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(cs)) {
		t.Errorf("deleted %d candidates, want %d", n, len(cs))
	}
	if left := stateKeysLeft(t, rdb, "doomed"); len(left) != 0 {
		t.Errorf("keys left behind: %v", left)
	}
	if got := mustGetRun(t, s, "doomed-not", "org/a"); got.CurrentStepStatus() != migration.StepInProgress {
		t.Errorf("the other migration's run: %+v", got)
	}
	checkRuns(t, rdb, "doomed-not", true)

	// Announced again, it has no runs.
	mustPut(t, s, "doomed")
	_, err = s.GetRun(ctx, "doomed", "org/a")
	refusal(t, err, migration.ErrNotFound, migration.ReasonRunNotFound)
	wantListed(t, s, "doomed", migration.RunFilter{})
}

// Writers save views of one execution out of order, each Seq twice: the
// newest always wins, and the version counts exactly the writes accepted.
func TestConcurrentSaveRunKeepsTheNewest(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	setupRuns(t, s, "m", "a")
	r := newRun("m", "a", 1, at(1))
	mustBegin(t, s, r)
	const n, writers = 200, 8
	views := make([]migration.Run, n+1) // views[seq]
	r.BeginStep(0, 1, at(2))
	views[1] = r.Clone()
	for seq := 2; seq <= n; seq++ {
		status := migration.StepInProgress
		if seq == n {
			status = migration.StepOpen
		}
		runReport(t, &r, status, at(2).Add(time.Duration(seq)*time.Second), func(a *migration.StepAction) { a.Message = fmt.Sprint("progress ", seq) })
		if r.Seq != int64(seq) {
			t.Fatalf("seq %d, want %d", r.Seq, seq)
		}
		views[seq] = r.Clone()
	}

	type result struct{ sent, version int64 }
	results := make(chan result, 2*n)
	// Writer w sends the seqs ≡ w and ≡ w-1 (mod writers), roughly in
	// increasing order but shuffled within windows of 6, so that writers
	// overlap in time and many writes are both accepted and overtaken.
	work := make([][]int, writers)
	for w := range writers {
		for seq := 1; seq <= n; seq++ {
			if seq%writers == w || seq%writers == (w+writers-1)%writers {
				work[w] = append(work[w], seq)
			}
		}
		for i := 0; i < len(work[w]); i += 6 {
			win := work[w][i:min(i+6, len(work[w]))]
			rand.Shuffle(len(win), func(a, b int) { win[a], win[b] = win[b], win[a] })
		}
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for _, seq := range work[w] {
				version, err := s.SaveRun(context.Background(), views[seq], nil, nil)
				if err != nil {
					t.Errorf("save seq %d: %v", seq, err)
					return
				}
				results <- result{int64(seq), version}
			}
		})
	}
	wg.Wait()
	close(results)

	// An accepted write answers a version of its own; an ignored one the
	// version stored, that of a write with a seq at least its own. So each
	// version answered was made by the write of the highest seq answered it.
	accepted := map[int64]int64{} // version -> seq
	count := 0
	for res := range results {
		count++
		accepted[res.version] = max(accepted[res.version], res.sent)
	}
	if count != 2*n {
		t.Fatalf("%d results, want %d", count, 2*n)
	}
	final := mustGetRun(t, s, "m", "a")
	if final.Seq != n || final.Current().Status != migration.StepOpen || !reflect.DeepEqual(final.Results, views[n].Results) {
		t.Errorf("final view seq %d: %+v", final.Seq, final.Current())
	}
	if final.Version != 1+int64(len(accepted)) {
		t.Errorf("version %d after %d accepted writes (+1 for the begin)", final.Version, len(accepted))
	}
	// The accepted writes are versions 2..final, in increasing Seq.
	last := int64(0)
	for v := int64(2); v <= final.Version; v++ {
		seq, ok := accepted[v]
		if !ok {
			t.Errorf("no accepted write got version %d", v)
			continue
		}
		if seq <= last {
			t.Errorf("version %d stored seq %d after seq %d", v, seq, last)
		}
		last = seq
	}
	t.Logf("%d of %d writes accepted", len(accepted), 2*n)
	checkRuns(t, rdb, "m", true)
	wantListed(t, s, "m", migration.RunFilter{Status: migration.RunRunning, CurrentStepStatus: migration.StepOpen}, "a")
}

// Many Runs live their lives at once (begin, progress, cancel, begin again,
// complete) while readers list them: counters and indexes stay right.
func TestConcurrentRunLifecycles(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	cs := ids("org/repo.", 0, 24)
	setupRuns(t, s, "m", cs...)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			filters := []migration.RunFilter{
				{Status: migration.RunRunning},
				{CurrentStepStatus: migration.StepOpen},
				{Status: migration.RunCancelled},
				{Status: migration.RunRunning, CurrentStepStatus: migration.StepInProgress},
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				f := filters[i%len(filters)]
				p, err := s.ListRuns(ctx, "m", f, migration.PageRequest{Limit: 5})
				if err != nil {
					t.Errorf("list: %v", err)
					return
				}
				for _, r := range p.Runs {
					if (f.Status != "" && r.Status != f.Status) || (f.CurrentStepStatus != "" && r.CurrentStepStatus() != f.CurrentStepStatus) {
						t.Errorf("list %+v returned %s: %s %q", f, r.CandidateID, r.Status, r.CurrentStepStatus())
					}
				}
			}
		})
	}
	for w := range 6 {
		wg.Go(func() {
			for i, c := range cs {
				if i%6 != w {
					continue
				}
				save := func(r migration.Run) bool {
					if _, err := s.SaveRun(ctx, r, nil, nil); err != nil {
						t.Errorf("save %s exec %d seq %d: %v", c, r.Execution, r.Seq, err)
						return false
					}
					return true
				}
				r := newRun("m", c, 1, at(i))
				if _, err := s.BeginRun(ctx, r); err != nil {
					t.Errorf("begin %s: %v", c, err)
					return
				}
				r.BeginStep(0, 1, at(i+1))
				if !save(r) {
					return
				}
				if i%3 == 0 { // stays running, step open
					if err := tryReport(&r, migration.StepOpen, at(i+2)); err != nil {
						t.Errorf("run of %s: %v", c, err)
						return
					}
					save(r)
					continue
				}
				r.Finish(migration.RunCancelled, "retry later", at(i+2))
				if !save(r) {
					return
				}
				r = newRun("m", c, 2, at(i+3))
				if _, err := s.BeginRun(ctx, r); err != nil {
					t.Errorf("begin %s again: %v", c, err)
					return
				}
				if i%3 == 1 { // cancelled for good
					r.Finish(migration.RunCancelled, "give up", at(i+4))
					save(r)
					continue
				}
				r.BeginStep(0, 1, at(i+4))
				err1 := tryReport(&r, migration.StepMerged, at(i+5))
				r.BeginStep(1, 1, at(i+6))
				err2 := tryReport(&r, migration.StepCompleted, at(i+7))
				if err := errors.Join(err1, err2); err != nil {
					t.Errorf("run of %s: %v", c, err)
					return
				}
				r.Finish(migration.RunCompleted, "", at(i+8))
				save(r)
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()

	wantCounts(t, s, "m", 8, 8, 8)
	checkRuns(t, rdb, "m", true)
	checkListings(t, s, "m", cs...)
}

// stateKeysLeft returns the keys of Migration m other than its history, and
// checks that the history left behind expires.
func stateKeysLeft(t testing.TB, rdb *redis.Client, m string) []string {
	t.Helper()
	var left []string
	for _, k := range scanKeys(t, rdb, migrationKeysPattern(m)) {
		if strings.HasPrefix(k, eventsKey(m)) {
			if ttl := rdb.PTTL(context.Background(), k).Val(); ttl <= 0 {
				t.Errorf("history %s left without expiry (%v)", k, ttl)
			}
			continue
		}
		left = append(left, k)
	}
	return left
}
