package server_test

import (
	"context"
	"net/http"
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

	watch := func(afterID string) (*connect.ServerStreamForClient[loomv1.WatchEventsResponse], context.CancelFunc) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := history.WatchEvents(ctx, connect.NewRequest(&loomv1.WatchEventsRequest{MigrationId: "go-upgrade", AfterId: afterID}))
		if err != nil {
			t.Fatal(err)
		}
		return s, cancel
	}
	s, cancel := watch("")
	if !s.Receive() || s.Msg().GetHeartbeat() == nil {
		t.Fatalf("first message of a new watch: %v, %v", s.Msg(), s.Err())
	}
	if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/billing", Inputs: map[string]string{"target_version": "1.23"},
	})); err != nil {
		t.Fatal(err)
	}
	if !s.Receive() || s.Msg().GetEvent().GetKind() != loomv1.EventKind_EVENT_KIND_RUN_STARTED {
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
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	rs, err := l.runs.WatchRun(rctx, connect.NewRequest(&loomv1.WatchRunRequest{RunId: run.GetId(), AfterVersion: run.GetVersion()}))
	if err != nil {
		t.Fatal(err)
	}
	if !rs.Receive() || rs.Msg().GetHeartbeat() == nil {
		t.Fatalf("first message of a resumed Run watch: %v, %v", rs.Msg(), rs.Err())
	}
}
