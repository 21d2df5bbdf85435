package server_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
)

// Both watches answer at once — well before their first periodic heartbeat
// (15 s) — so a client (the console's "live" mark) knows it is following,
// and a resumed watch delivers what it missed first.
func TestWatchesAnswerAtOnceAndResume(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	l.setup(t, w.migrator.url, "acme/billing")
	history := loomv1connect.NewHistoryServiceClient(http.DefaultClient, l.url)

	// A watch lives long enough for a StartRun on a loaded machine; what
	// "at once" means is timed on its own.
	watch := func(afterID string) (*connect.ServerStreamForClient[loomv1.WatchEventsResponse], context.CancelFunc) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s, err := history.WatchEvents(ctx, connect.NewRequest(&loomv1.WatchEventsRequest{MigrationId: "go-upgrade", AfterId: afterID}))
		if err != nil {
			t.Fatal(err)
		}
		return s, cancel
	}
	opened := time.Now()
	s, cancel := watch("")
	if !s.Receive() || s.Msg().GetHeartbeat() == nil {
		t.Fatalf("first message of a new watch: %v, %v", s.Msg(), s.Err())
	}
	if took := time.Since(opened); took > 5*time.Second {
		t.Fatalf("the first heartbeat came after %v, not at once", took)
	}
	if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/billing", Inputs: map[string]string{"target_version": "1.23"},
		Note: "billing asked for it before the freeze",
	})); err != nil {
		t.Fatal(err)
	}
	// The start's why is in its event.
	if !s.Receive() || s.Msg().GetEvent().GetKind() != loomv1.EventKind_EVENT_KIND_RUN_STARTED ||
		s.Msg().GetEvent().GetDetails()["note"] != "billing asked for it before the freeze" {
		t.Fatalf("after a start: %v, %v", s.Msg(), s.Err())
	}
	started := s.Msg().GetEvent().GetId()
	cancel()

	// Resumed after the start: the dispatch that followed comes first.
	w.nextDispatch()
	s, cancel = watch(started)
	defer cancel()
	if !s.Receive() || s.Msg().GetEvent().GetKind() != loomv1.EventKind_EVENT_KIND_STEP_DISPATCHED {
		t.Fatalf("first message of a resumed watch: %v, %v", s.Msg(), s.Err())
	}

	// A Run watch resumed at the Run's version has nothing to send: a
	// heartbeat comes at once.
	run := l.getRun(t, "go-upgrade__acme/billing")
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	opened = time.Now()
	rs, err := l.runs.WatchRun(rctx, connect.NewRequest(&loomv1.WatchRunRequest{RunId: run.GetId(), AfterVersion: run.GetVersion()}))
	if err != nil {
		t.Fatal(err)
	}
	if !rs.Receive() || rs.Msg().GetHeartbeat() == nil {
		t.Fatalf("first message of a resumed Run watch: %v, %v", rs.Msg(), rs.Err())
	}
	if took := time.Since(opened); took > 5*time.Second {
		t.Fatalf("the resumed Run watch's heartbeat came after %v, not at once", took)
	}
}

// Without a Migration, WatchEvents follows the whole fleet from now on: one
// stream sees every Migration's new events, filtered by kind.
func TestTheFleetFeedFollowsEveryMigration(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	history := loomv1connect.NewHistoryServiceClient(http.DefaultClient, l.url)
	wctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	all, err := history.WatchEvents(wctx, connect.NewRequest(&loomv1.WatchEventsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if !all.Receive() || all.Msg().GetHeartbeat() == nil {
		t.Fatalf("first message of a fleet watch: %v, %v", all.Msg(), all.Err())
	}
	starts, err := history.WatchEvents(wctx, connect.NewRequest(&loomv1.WatchEventsRequest{Kinds: []loomv1.EventKind{loomv1.EventKind_EVENT_KIND_RUN_STARTED}}))
	if err != nil {
		t.Fatal(err)
	}
	if !starts.Receive() || starts.Msg().GetHeartbeat() == nil {
		t.Fatalf("first message of a filtered fleet watch: %v, %v", starts.Msg(), starts.Err())
	}

	l.setup(t, w.migrator.url, "acme/billing")
	if _, err := l.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: &loomv1.Migration{
		Id: "helm-upgrade", Name: "Upgrade Helm", Steps: []*loomv1.StepDefinition{{Name: "bump", Type: "open-pr"}}, MigratorUrl: w.migrator.url,
	}})); err != nil {
		t.Fatal(err)
	}
	if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/billing", Inputs: map[string]string{"target_version": "1.23"},
	})); err != nil {
		t.Fatal(err)
	}
	// Each Migration's events come in its own order; both Migrations come.
	want := []string{
		"go-upgrade " + loomv1.EventKind_EVENT_KIND_MIGRATION_ANNOUNCED.String(),
		"go-upgrade " + loomv1.EventKind_EVENT_KIND_CANDIDATES_DISCOVERED.String(),
		"helm-upgrade " + loomv1.EventKind_EVENT_KIND_MIGRATION_ANNOUNCED.String(),
		"go-upgrade " + loomv1.EventKind_EVENT_KIND_RUN_STARTED.String(),
	}
	var got []string
	for len(got) < len(want) && all.Receive() {
		if e := all.Msg().GetEvent(); e != nil {
			got = append(got, e.GetMigrationId()+" "+e.GetKind().String())
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the fleet feed sent %v (%v), want %v", got, all.Err(), want)
	}
	for starts.Receive() {
		if e := starts.Msg().GetEvent(); e != nil {
			if e.GetKind() != loomv1.EventKind_EVENT_KIND_RUN_STARTED || e.GetCandidateId() != "acme/billing" {
				t.Fatalf("the feed of Run starts sent %v", e)
			}
			break
		}
	}

	// A position or a Candidate needs a Migration.
	for _, req := range []*loomv1.WatchEventsRequest{{CandidateId: "acme/billing"}, {AfterId: "1-0"}} {
		s, err := history.WatchEvents(wctx, connect.NewRequest(req))
		if err == nil {
			s.Receive()
			err = s.Err()
		}
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "need a migration_id") {
			t.Errorf("%v: %v, want invalid_argument", req, err)
		}
	}
}
