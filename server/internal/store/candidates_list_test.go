package store

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// ListCandidates with filters and orders, checked against a model built
// from GetCandidate and GetRun (which read the hashes, not the indexes).

// listRow is what the model knows of one Candidate.
type listRow struct {
	c   migration.Candidate
	pos int // step position: 0 none, i+1 on step i, 1000 completed
}

// modelRows reads every Candidate of m through the hashes.
func modelRows(t testing.TB, s *Store, rdb *redis.Client, m string) []listRow {
	t.Helper()
	var rows []listRow
	for _, id := range checkInvariants(t, rdb, m) {
		c := mustGetCandidate(t, s, m, id)
		r := listRow{c: c}
		if run, err := s.GetRun(context.Background(), m, id); err == nil {
			switch run.Status {
			case migration.RunCompleted:
				r.pos = 1000
			case migration.RunRunning:
				r.pos = len(run.Results)
			}
			if c.Progress.RunStatus != run.Status || c.Progress.CurrentStep != run.CurrentStepName() ||
				c.Progress.CurrentStepStatus != run.CurrentStepStatus() {
				t.Errorf("%s: progress %+v, run says %s %q %q", id, c.Progress, run.Status, run.CurrentStepName(), run.CurrentStepStatus())
			}
		} else if c.Progress != (migration.CandidateProgress{}) {
			t.Errorf("%s: never started, progress %+v", id, c.Progress)
		}
		if c.LastChangeTime.Before(c.UpdateTime) {
			t.Errorf("%s: last change %v before update %v", id, c.LastChangeTime, c.UpdateTime)
		}
		rows = append(rows, r)
	}
	return rows
}

func (r listRow) matches(f migration.CandidateFilter) bool {
	c := r.c
	if (f.Status != "" && c.Status != f.Status) || (f.Kind != "" && c.Kind != f.Kind) ||
		(f.CurrentStep != "" && c.Progress.CurrentStep != f.CurrentStep) ||
		(f.CurrentStepStatus != "" && c.Progress.CurrentStepStatus != f.CurrentStepStatus) ||
		!strings.HasPrefix(c.ID, f.IDPrefix) {
		return false
	}
	for k, v := range f.Metadata {
		if got, ok := c.Metadata[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// wantIDs is the model's answer to f: the matching ids in f's order.
func wantIDs(rows []listRow, f migration.CandidateFilter) []string {
	var match []listRow
	for _, r := range rows {
		if r.matches(f) {
			match = append(match, r)
		}
	}
	key := func(r listRow) int64 {
		switch f.Order {
		case migration.OrderByStatus:
			return int64(statusOrder(r.c.Status))
		case migration.OrderByCurrentStep:
			if r.c.Status == migration.CandidateNotStarted {
				return -1 // first, whatever a cancelled Run reached
			}
			return int64(r.pos)
		case migration.OrderByLastChange:
			return r.c.LastChangeTime.UnixMilli()
		}
		return 0
	}
	slices.SortFunc(match, func(a, b listRow) int {
		return cmp.Or(cmp.Compare(key(a), key(b)), strings.Compare(a.c.ID, b.c.ID))
	})
	if f.Descending {
		slices.Reverse(match)
	}
	out := []string{}
	for _, r := range match {
		out = append(out, r.c.ID)
	}
	return out
}

// listAllPages pages through a listing, checking every page's total and
// rows against the model.
func listAllPages(t testing.TB, s *Store, m string, f migration.CandidateFilter, size int, model map[string]listRow) (ids []string, total int64) {
	t.Helper()
	after := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("%+v: paging never ends", f)
		}
		page, err := s.ListCandidates(context.Background(), m, f, migration.PageRequest{After: after, Limit: size})
		if err != nil {
			t.Fatalf("list %+v after %q: %v", f, after, err)
		}
		if pages > 0 && page.Total != total {
			t.Errorf("%+v: total %d on page %d, %d on the first", f, page.Total, pages, total)
		}
		total = page.Total
		for _, c := range page.Candidates {
			ids = append(ids, c.ID)
			if want := model[c.ID].c; !reflect.DeepEqual(c, want) {
				t.Errorf("%+v: row\n %+v\nGetCandidate says\n %+v", f, c, want)
			}
		}
		if len(page.Candidates) > size {
			t.Errorf("%+v: page of %d, limit %d", f, len(page.Candidates), size)
		}
		if page.Next == "" {
			return ids, total
		}
		// (A walk cut short by its budget may answer a short page: tests
		// lower the budget to see it.)
		if len(page.Candidates) != size && s.walkBudget == defaultWalkBudget {
			t.Errorf("%+v: page of %d with a next page, limit %d", f, len(page.Candidates), size)
		}
		after = page.Next
	}
}

var listOrders = []migration.CandidateOrder{"", migration.OrderByStatus, migration.OrderByCurrentStep, migration.OrderByLastChange}

// checkCandidateListings runs every filter of filters in every order, both ways, at
// two page sizes, against the model, and checks that no scratch key is left.
func checkCandidateListings(t testing.TB, s *Store, rdb *redis.Client, m string, filters []migration.CandidateFilter) {
	t.Helper()
	rows := modelRows(t, s, rdb, m)
	model := map[string]listRow{}
	for _, r := range rows {
		model[r.c.ID] = r
	}
	for _, f := range filters {
		for _, o := range listOrders {
			for _, desc := range []bool{false, true} {
				f := f
				f.Order, f.Descending = o, desc
				want := wantIDs(rows, f)
				for _, size := range []int{3, 1000} {
					got, total := listAllPages(t, s, m, f, size, model)
					if !slices.Equal(got, want) || total != int64(len(want)) {
						t.Errorf("list %+v (page size %d):\n got %v (total %d)\nwant %v", f, size, got, total, want)
					}
				}
			}
		}
	}
	if left := scanKeys(t, rdb, "loom:{"+m+"}:cands:tmp*"); len(left) != 0 {
		t.Errorf("scratch keys left: %v", left)
	}
}

// listFilters are the filters the listing tests try: each alone, and
// combined.
var listFilters = []migration.CandidateFilter{
	{},
	{Status: migration.CandidateNotStarted},
	{Status: migration.CandidateRunning},
	{Status: migration.CandidateCompleted},
	{Kind: "svc"},
	{Status: migration.CandidateRunning, Kind: "repo"},
	{CurrentStep: "bump"},
	{CurrentStep: "review"},
	{CurrentStep: "nowhere"},
	{CurrentStepStatus: migration.StepOpen},
	{CurrentStepStatus: migration.StepInProgress},
	{CurrentStep: "bump", CurrentStepStatus: migration.StepOpen},
	{IDPrefix: "acme/a"},
	{IDPrefix: "acme/b1"},
	{IDPrefix: "acme/b10"},
	{IDPrefix: "zzz"},
	{Metadata: map[string]string{"team": "t1"}},
	{Metadata: map[string]string{"team": "t1", "tier": "gold"}},
	{Metadata: map[string]string{"odd=key": "v:1={x}"}},
	{Metadata: map[string]string{"team": "t9"}},
	{Status: migration.CandidateRunning, Kind: "svc", IDPrefix: "acme/", Metadata: map[string]string{"team": "t1"}},
	{Kind: "svc", CurrentStep: "bump", Metadata: map[string]string{"team": "t2"}},
	{Status: migration.CandidateNotStarted, IDPrefix: "acme/b"},
}

// setupListing creates Migration m with 40 Candidates in every situation a
// listing distinguishes: kinds, metadata, never started, running on either
// step in several statuses, completed, cancelled; with last changes spread
// over time and tied.
func setupListing(t testing.TB, s *Store, m string) []string {
	t.Helper()
	mustPut(t, s, m)
	var cs []migration.Candidate
	var all []string
	for i := range 40 {
		id := fmt.Sprintf("acme/%c%02d", "ab"[i%2], i)
		all = append(all, id)
		c := cand(id, []string{"svc", "repo", "topic"}[i%3], "team", fmt.Sprintf("t%d", i%4))
		if i%5 == 0 {
			c.Metadata["tier"] = "gold"
		}
		if i%7 == 0 {
			c.Metadata["odd=key"] = "v:1={x}"
		}
		cs = append(cs, c)
	}
	mustSubmit(t, s, migration.Submission{MigrationID: m, Candidates: cs}, at(1))
	for i, id := range all {
		runTo(t, s, m, id, i%6, at(10+i%9)) // ties on purpose
	}
	return all
}

// runTo takes Candidate id of m to state: 0 never started, 1 its first
// step in progress, 2 open, 3 its review awaited, 4 completed, 5 cancelled.
func runTo(t testing.TB, s *Store, m, id string, state int, now time.Time) {
	t.Helper()
	r := newRun(m, id, 1, now)
	switch state {
	case 0: // never started
		return
	case 1: // bump in progress
		mustBegin(t, s, r)
		r.BeginStep(0, 1, now)
	case 2: // bump open
		mustBegin(t, s, r)
		r.BeginStep(0, 1, now)
		runReport(t, &r, migration.StepOpen, now)
	case 3: // review awaiting
		mustBegin(t, s, r)
		r.BeginStep(0, 1, now)
		runReport(t, &r, migration.StepMerged, now)
		r.BeginStep(1, 1, now)
		runReport(t, &r, migration.StepAwaitingReview, now)
	case 4: // completed
		mustBegin(t, s, r)
		r.BeginStep(0, 1, now)
		runReport(t, &r, migration.StepMerged, now)
		r.BeginStep(1, 1, now)
		runReport(t, &r, migration.StepCompleted, now)
		r.Finish(migration.RunCompleted, "", now)
	case 5: // cancelled
		mustBegin(t, s, r)
		r.Finish(migration.RunCancelled, "no", now)
	}
	mustSave(t, s, r)
}

// A status or kind that most Candidates have is checked by its complement
// (the few in other statuses or kinds); the listings answer the same.
func TestListCandidatesCheckedByComplement(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	mustPut(t, s, "m")
	var cs []migration.Candidate
	for i := range 300 {
		kind := "svc"
		if i%5 == 0 {
			kind = []string{"repo", "topic"}[i/5%2]
		}
		cs = append(cs, cand(fmt.Sprintf("c%03d", i), kind, "team", fmt.Sprintf("t%d", i%4)))
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs}, at(1))
	for i := range 36 {
		runTo(t, s, "m", cs[i*7].ID, 1+i%5, at(10+i%4))
	}
	var filters []migration.CandidateFilter
	for _, st := range migration.CandidateStatuses {
		filters = append(filters, migration.CandidateFilter{Status: st, Metadata: map[string]string{"team": "t1"}})
	}
	for _, k := range []string{"svc", "repo"} {
		filters = append(filters, migration.CandidateFilter{Kind: k, Metadata: map[string]string{"team": "t2"}},
			migration.CandidateFilter{Kind: k, CurrentStep: "bump"}, migration.CandidateFilter{Kind: k, IDPrefix: "c1"})
	}
	filters = append(filters, migration.CandidateFilter{Status: migration.CandidateNotStarted, CurrentStepStatus: migration.StepOpen},
		migration.CandidateFilter{Status: migration.CandidateNotStarted, IDPrefix: "c2", Metadata: map[string]string{"team": "t3"}})
	for _, small := range []int{0, 10, defaultSmallRangeMax} {
		s.smallRangeMax = small
		checkCandidateListings(t, s, rdb, "m", filters)
	}
}

func TestListCandidatesFiltersAndOrders(t *testing.T) {
	t.Parallel()
	// Ranges checked with ZMSCORE, or read whole and checked in Lua.
	for _, small := range []int{0, defaultSmallRangeMax} {
		t.Run(fmt.Sprint("small ranges up to ", small), func(t *testing.T) {
			t.Parallel()
			s, rdb := newStore(t)
			s.smallRangeMax = small
			setupListing(t, s, "m")
			checkCandidateListings(t, s, rdb, "m", listFilters)
		})
	}
}

// The walk (see listCandidatesScript) answers the same with a budget so
// small that pages are cut short and go on from their cursor.
func TestListCandidatesWalkedWithASmallBudget(t *testing.T) {
	t.Parallel()
	for _, budget := range []int{4, 1} {
		t.Run(fmt.Sprint("budget ", budget), func(t *testing.T) {
			t.Parallel()
			s, rdb := newStore(t)
			s.walkBudget, s.exactCountMax = budget, 0
			setupListing(t, s, "m")
			checkCandidateListings(t, s, rdb, "m", listFilters)
		})
	}
}

func TestListCandidatesIndexesFollowChanges(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	all := setupListing(t, s, "m")
	list := func(f migration.CandidateFilter) []string {
		t.Helper()
		page, err := s.ListCandidates(ctx, "m", f, migration.PageRequest{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range page.Candidates {
			ids = append(ids, c.ID)
		}
		return ids
	}
	last := func(f migration.CandidateFilter) string {
		t.Helper()
		f.Order, f.Descending = migration.OrderByLastChange, true
		page, err := s.ListCandidates(ctx, "m", f, migration.PageRequest{Limit: 1})
		if err != nil || len(page.Candidates) != 1 {
			t.Fatalf("latest change: %+v %v", page, err)
		}
		return page.Candidates[0].ID
	}

	// A status change: status index and order, last change.
	mustSetStatus(t, s, "m", all[0], migration.CandidateNotStarted, migration.CandidateRunning) // at(30)
	if got := last(migration.CandidateFilter{}); got != all[0] {
		t.Errorf("latest change %s, want %s", got, all[0])
	}
	if !slices.Contains(list(migration.CandidateFilter{Status: migration.CandidateRunning}), all[0]) {
		t.Errorf("%s not listed running", all[0])
	}
	mustSetStatus(t, s, "m", all[0], migration.CandidateRunning, migration.CandidateNotStarted)

	// The Run of all[2] (bump open) moves on to review: step index, step
	// status, step order, last change.
	r := mustGetRun(t, s, "m", all[2])
	runReport(t, &r, migration.StepMerged, at(40))
	r.BeginStep(1, 1, at(40))
	mustSave(t, s, r)
	if got := list(migration.CandidateFilter{CurrentStep: "review", IDPrefix: all[2]}); !slices.Equal(got, []string{all[2]}) {
		t.Errorf("review step lists %v", got)
	}
	if got := list(migration.CandidateFilter{CurrentStep: "bump", IDPrefix: all[2]}); len(got) != 0 {
		t.Errorf("bump step still lists %v", got)
	}
	if got := last(migration.CandidateFilter{}); got != all[2] {
		t.Errorf("latest change %s, want %s", got, all[2])
	}
	if c := mustGetCandidate(t, s, "m", all[2]); !c.LastChangeTime.Equal(at(40).Truncate(1e6)) ||
		c.Progress != (migration.CandidateProgress{RunStatus: migration.RunRunning, CurrentStep: "review", CurrentStepStatus: migration.StepInProgress}) {
		t.Errorf("after the step moved on: %v %+v", c.LastChangeTime, c.Progress)
	}
	checkCandidateListings(t, s, rdb, "m", listFilters)

	// Metadata changed on resubmission of a not_started Candidate; an
	// unchanged resubmission changes nothing, not even the last change.
	changed, same := all[6], all[12]
	c6, c12 := mustGetCandidate(t, s, "m", changed), mustGetCandidate(t, s, "m", same)
	sub := []migration.Candidate{cand(changed, c6.Kind, "team", "t9"), {ID: same, Kind: c12.Kind, Metadata: c12.Metadata}}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: sub}, at(50))
	if got := list(migration.CandidateFilter{Metadata: map[string]string{"team": "t9"}}); !slices.Equal(got, []string{changed}) {
		t.Errorf("team t9 lists %v", got)
	}
	if got := list(migration.CandidateFilter{Metadata: map[string]string{"team": c6.Metadata["team"]}, IDPrefix: changed}); len(got) != 0 {
		t.Errorf("old team still lists %v", got)
	}
	if got := mustGetCandidate(t, s, "m", same).LastChangeTime; !got.Equal(c12.LastChangeTime) {
		t.Errorf("unchanged resubmission moved the last change %v -> %v", c12.LastChangeTime, got)
	}
	if got := last(migration.CandidateFilter{}); got != changed {
		t.Errorf("latest change %s, want %s", got, changed)
	}

	// A complete discovery without all[18] (never started): flagged, its
	// last change moves.
	var rest []migration.Candidate
	for _, id := range all {
		c := mustGetCandidate(t, s, "m", id)
		if id != all[18] {
			rest = append(rest, migration.Candidate{ID: id, Kind: c.Kind, Metadata: c.Metadata})
		}
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: rest, Complete: true}, at(60))
	if got := last(migration.CandidateFilter{Status: migration.CandidateNotStarted}); got != all[18] {
		t.Errorf("latest change %s, want %s (no longer discovered)", got, all[18])
	}
	// Inputs are a change too.
	if _, err := s.UpdateCandidateInputs(ctx, "m", all[5], migration.InputChange{Set: map[string]string{"tag": "x"}}, at(70)); err != nil {
		t.Fatal(err)
	}
	if got := last(migration.CandidateFilter{}); got != all[5] {
		t.Errorf("latest change %s, want %s (inputs)", got, all[5])
	}
	// An event alone (no change of state) is a change too; an event of an
	// unknown Candidate indexes nothing.
	ev := func(c string) migration.Event {
		return migration.Event{Time: at(75), Kind: migration.EventDispatchFailed, MigrationID: "m", CandidateID: c,
			RunID: migration.RunID("m", c), Execution: 1, Step: "bump", Attempt: 1, Actor: "loom"}
	}
	if err := s.AppendEvents(ctx, "m", []migration.Event{ev(all[1]), ev("ghost")}); err != nil {
		t.Fatal(err)
	}
	if got := last(migration.CandidateFilter{}); got != all[1] {
		t.Errorf("latest change %s, want %s (event)", got, all[1])
	}
	if err := rdb.ZScore(ctx, changeIndexKey("m"), "ghost").Err(); err != redis.Nil {
		t.Errorf("an unknown Candidate's event is indexed: %v", err)
	}
	rdb.Del(ctx, candidateEventsKey("m", "ghost")) // its history, not an index: not this test's business
	checkCandidateListings(t, s, rdb, "m", listFilters)
	checkRuns(t, rdb, "m", true)

	// DeleteMigration leaves no index behind.
	for _, id := range list(migration.CandidateFilter{Status: migration.CandidateRunning}) {
		mustSetStatus(t, s, "m", id, migration.CandidateRunning, migration.CandidateNotStarted)
	}
	for _, k := range []string{stepOrderKey("m"), changeIndexKey("m"), stepNamesKey("m"),
		currentStepIndexKey("m", "bump"), currentStepIndexKey("m", "review"), metadataIndexKey("m")} {
		if n := rdb.Exists(ctx, k).Val(); n != 1 {
			t.Errorf("before the delete, %s is missing", k)
		}
	}
	if _, err := s.DeleteMigration(ctx, "m", at(80)); err != nil {
		t.Fatal(err)
	}
	if left := stateKeysLeft(t, rdb, "m"); len(left) != 0 {
		t.Errorf("keys left behind: %v", left)
	}
}

// A cursor is a place in the order, not a row: a row that moves between two
// pages neither repeats nor hides the rows after the place.
func TestListCandidatesCursorSurvivesMoves(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	setupListing(t, s, "m")
	for _, desc := range []bool{false, true} {
		f := migration.CandidateFilter{Order: migration.OrderByLastChange, Descending: desc, Kind: "svc"}
		first, err := s.ListCandidates(ctx, "m", f, migration.PageRequest{Limit: 4})
		if err != nil || first.Next == "" {
			t.Fatalf("first page: %+v %v", first, err)
		}
		before := wantIDs(modelRows(t, s, rdb, "m"), f)
		moved := first.Candidates[3].ID // the cursor's own row moves to the end
		if _, err := s.UpdateCandidateInputs(ctx, "m", moved, migration.InputChange{Set: map[string]string{"n": fmt.Sprint(desc)}}, at(100)); err != nil {
			t.Fatal(err)
		}
		second, err := s.ListCandidates(ctx, "m", f, migration.PageRequest{After: first.Next, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range second.Candidates {
			got = append(got, c.ID)
		}
		want := slices.DeleteFunc(slices.Clone(before[4:]), func(id string) bool { return id == moved })
		if !desc {
			want = append(want, moved) // now the latest: after the cursor again
		}
		if !slices.Equal(got, want) {
			t.Errorf("desc=%v: second page %v, want %v", desc, got, want)
		}
	}
	for _, after := range []string{"x y", "NaN y", "1 ", "+Inf z"} {
		_, err := s.ListCandidates(ctx, "m", migration.CandidateFilter{Order: migration.OrderByStatus}, migration.PageRequest{After: after})
		if r := refusal(t, err, migration.ErrInvalidArgument, migration.ReasonInvalidPageToken); r.Field != "page_token" {
			t.Errorf("cursor %q: field %q", after, r.Field)
		}
	}
	for _, f := range []migration.CandidateFilter{{Order: "size"}, {CurrentStepStatus: "lost"}} {
		if _, err := s.ListCandidates(ctx, "m", f, migration.PageRequest{}); !strings.Contains(fmt.Sprint(err), "unknown") {
			t.Errorf("%+v: %v", f, err)
		}
	}
}

// Several filters over more Candidates than are counted one by one: the
// total is estimated from a sample, close, and says so; below the limit it
// is counted.
func TestListCandidatesEstimatedTotal(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	mustPut(t, s, "m")
	for b := range 8 {
		var cs []migration.Candidate
		for i := b * 1000; i < (b+1)*1000; i++ {
			cs = append(cs, cand(fmt.Sprintf("c%04d", i), []string{"svc", "repo", "topic"}[i%3], "team", fmt.Sprintf("t%d", i%4)))
		}
		mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs}, at(1))
	}
	f := migration.CandidateFilter{Kind: "repo", Metadata: map[string]string{"team": "t1"}}
	ctx := context.Background()
	page, err := s.ListCandidates(ctx, "m", f, migration.PageRequest{})
	if err != nil || page.Total != 667 || page.TotalIsEstimate {
		t.Fatalf("counted: total %d estimate %v, %v", page.Total, page.TotalIsEstimate, err)
	}
	s.exactCountMax = 100
	page, err = s.ListCandidates(ctx, "m", f, migration.PageRequest{})
	if err != nil || !page.TotalIsEstimate || page.Total < 600 || page.Total > 734 {
		t.Fatalf("estimated: total %d estimate %v, %v", page.Total, page.TotalIsEstimate, err)
	}
	// Rows and paging do not depend on the estimate.
	if len(page.Candidates) != migration.DefaultCandidatePageSize || page.Next == "" {
		t.Fatalf("estimated: a page of %d, next %q", len(page.Candidates), page.Next)
	}
	// One filter is always counted.
	page, err = s.ListCandidates(ctx, "m", migration.CandidateFilter{Kind: "repo"}, migration.PageRequest{})
	if err != nil || page.Total != 2667 || page.TotalIsEstimate {
		t.Fatalf("one filter: total %d estimate %v, %v", page.Total, page.TotalIsEstimate, err)
	}
}

// Sparse filters in a scored order are gathered into the scratch set; a
// filter of several ranges (a status over kinds) that takes more than one
// batch to walk is merged through the same scratch set, which must not
// mix with what was gathered.
func TestListCandidatesGatheredFromSeveralRanges(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	mustPut(t, s, "m")
	var cs []migration.Candidate
	for i := range 600 {
		cs = append(cs, cand(fmt.Sprintf("c%03d", i), []string{"svc", "repo"}[i%2], "team", fmt.Sprintf("t%d", i%3)))
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs[:300]}, at(1))
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs[300:]}, at(2))
	s.walkBudget = 4 // every filtered scored listing is gathered
	// With a team, the status's and kind's ranges (300 each) are checked
	// with ZMSCORE, larger than a batch of 256.
	checkCandidateListings(t, s, rdb, "m", []migration.CandidateFilter{{Status: migration.CandidateNotStarted},
		{Status: migration.CandidateNotStarted, Metadata: map[string]string{"team": "t1"}},
		{Kind: "repo", Metadata: map[string]string{"team": "t2"}}})
}

// A listing writes nothing that persists or replicates: its scratch set is
// not propagated, so with appendfsync always it costs no fsync. Measured
// on the append-only file, which grows by every propagated write.
func TestListCandidatesWritesNothingToTheAppendOnlyFile(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	mustPut(t, s, "m")
	var cs []migration.Candidate
	for i := range 600 {
		cs = append(cs, cand(fmt.Sprintf("c%03d", i), []string{"svc", "repo", "topic"}[i%3], "team", fmt.Sprintf("t%d", i%7)))
	}
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: cs}, at(1))
	if err := rdb.ConfigSet(ctx, "appendonly", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	aofSize := func() string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			info, err := rdb.Info(ctx, "persistence").Result()
			if err != nil {
				t.Fatal(err)
			}
			f := map[string]string{}
			for _, line := range strings.Split(info, "\r\n") {
				if k, v, ok := strings.Cut(line, ":"); ok {
					f[k] = v
				}
			}
			if f["aof_enabled"] == "1" && f["aof_rewrite_in_progress"] == "0" && f["aof_rewrite_scheduled"] == "0" && f["aof_current_size"] != "" {
				return f["aof_current_size"]
			}
			if time.Now().After(deadline) {
				t.Fatalf("the append-only file is not ready: %q", info)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	before := aofSize()
	// A status over three kinds (ranges merged through the scratch set), in
	// id order and, sparse against a small budget, gathered in change order.
	s.walkBudget = 4
	for _, f := range []migration.CandidateFilter{
		{Status: migration.CandidateNotStarted},
		{Status: migration.CandidateNotStarted, Metadata: map[string]string{"team": "t3"}},
	} {
		for _, order := range []migration.CandidateOrder{migration.OrderByID, migration.OrderByLastChange} {
			f.Order = order
			if _, err := s.ListCandidates(ctx, "m", f, migration.PageRequest{Limit: 100}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if after := aofSize(); after != before {
		t.Fatalf("listings wrote to the append-only file: %s → %s bytes", before, after)
	}
	// The store's own writes still reach it.
	mustSubmit(t, s, migration.Submission{MigrationID: "m", Candidates: []migration.Candidate{cand("new", "svc")}}, at(2))
	if after := aofSize(); after == before {
		t.Fatalf("a submission wrote nothing to the append-only file (%s bytes): the measure is blind", after)
	}
	if n := len(scanKeys(t, rdb, listTempKey("m"))); n != 0 {
		t.Fatalf("the scratch set outlived the listings")
	}
}
