package server_test

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/server"
	"github.com/loomhq/loom/server/internal/engine"
)

// link is the TCP path from Loom to a real server (here Temporal's
// frontend), which a test cuts and mends: cut closes its listener and every
// connection through it, so Loom finds the server gone (connections reset,
// new ones refused) while the server and its state live on; mend listens
// again on the same port.
type link struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener // nil while cut
	conns map[net.Conn]struct{}
}

func newLink(t *testing.T, target string) *link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{t: t, target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	l.serve(ln)
	t.Cleanup(l.cut)
	return l
}

func (l *link) serve(ln net.Listener) {
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go l.pipe(ln, c)
		}
	}()
}

func (l *link) pipe(ln net.Listener, c net.Conn) {
	up, err := net.Dial("tcp", l.target)
	if err != nil {
		c.Close()
		return
	}
	l.mu.Lock()
	if l.ln != ln { // cut since the accept
		l.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	l.conns[c], l.conns[up] = struct{}{}, struct{}{}
	l.mu.Unlock()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		close(done)
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	up.Close()
	<-done
	l.mu.Lock()
	delete(l.conns, c)
	delete(l.conns, up)
	l.mu.Unlock()
}

// cut makes the server unreachable through the link.
func (l *link) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return
	}
	l.ln.Close()
	l.ln = nil
	for c := range l.conns {
		c.Close()
	}
	clear(l.conns)
}

// mend makes it reachable again, on the same address.
func (l *link) mend() {
	l.t.Helper()
	var err error
	for try := 0; try < 50; try++ { // the port may linger briefly
		var ln net.Listener
		if ln, err = net.Listen("tcp", l.addr); err == nil {
			l.serve(ln)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatalf("listen again on %s: %v", l.addr, err)
}

// pausedRollout starts a rollout of ids one at a time, waits for its first
// Run's dispatch (the test Migrator holds it: the Run stays in flight), and
// pauses it.
func pausedRollout(t *testing.T, w *world, rs loomv1connect.RolloutServiceClient, ids []string) *loomv1.Rollout {
	t.Helper()
	res, err := rs.StartRollout(ctx, connect.NewRequest(&loomv1.StartRolloutRequest{MigrationId: "go-upgrade",
		Selection:     &loomv1.CandidateSelection{CandidateIds: ids},
		DefaultInputs: map[string]string{"target_version": "1.23"},
		Settings:      &loomv1.RolloutSettings{MaxInFlight: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	if d := w.nextDispatch(); d.Candidate.GetId() != ids[0] {
		t.Fatalf("first dispatch of the rollout is for %s, want %s", d.Candidate.GetId(), ids[0])
	}
	p, err := rs.PauseRollout(ctx, connect.NewRequest(&loomv1.PauseRolloutRequest{MigrationId: "go-upgrade", RolloutId: res.Msg.Rollout.Id, Reason: "hold"}))
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Msg.Rollout; r.State != loomv1.RolloutState_ROLLOUT_STATE_PAUSED || r.Progress.Started != 1 {
		t.Fatalf("paused rollout: %v, %v", r.State, r.Progress)
	}
	return getRollout(t, rs, res.Msg.Rollout.Id)
}

// rolloutCalls are every RolloutService call on the rollout id of the
// Migration "go-upgrade", and a start of another over others, each giving
// the error it was answered (a stream: its first message's).
func rolloutCalls(rs loomv1connect.RolloutServiceClient, id string, others []string) map[string]func() error {
	const m = "go-upgrade"
	inputs := map[string]string{"target_version": "1.23"}
	return map[string]func() error{
		"PreviewSelection": func() error {
			_, err := rs.PreviewSelection(ctx, connect.NewRequest(&loomv1.PreviewSelectionRequest{MigrationId: m,
				Selection: &loomv1.CandidateSelection{CandidateIds: others}, DefaultInputs: inputs, SampleSize: 1}))
			return err
		},
		"StartRollout": func() error {
			_, err := rs.StartRollout(ctx, connect.NewRequest(&loomv1.StartRolloutRequest{MigrationId: m,
				Selection: &loomv1.CandidateSelection{CandidateIds: others}, DefaultInputs: inputs,
				Settings: &loomv1.RolloutSettings{MaxInFlight: 2}}))
			return err
		},
		"GetRollout": func() error {
			_, err := rs.GetRollout(ctx, connect.NewRequest(&loomv1.GetRolloutRequest{MigrationId: m, RolloutId: id}))
			return err
		},
		"ListRollouts": func() error {
			_, err := rs.ListRollouts(ctx, connect.NewRequest(&loomv1.ListRolloutsRequest{MigrationId: m}))
			return err
		},
		"WatchRollout": func() error {
			s, err := rs.WatchRollout(ctx, connect.NewRequest(&loomv1.WatchRolloutRequest{MigrationId: m, RolloutId: id}))
			if err != nil {
				return err
			}
			defer s.Close()
			if s.Receive() {
				return errors.New("the watch sent a message")
			}
			return s.Err()
		},
		"PauseRollout": func() error {
			_, err := rs.PauseRollout(ctx, connect.NewRequest(&loomv1.PauseRolloutRequest{MigrationId: m, RolloutId: id}))
			return err
		},
		"ResumeRollout": func() error {
			_, err := rs.ResumeRollout(ctx, connect.NewRequest(&loomv1.ResumeRolloutRequest{MigrationId: m, RolloutId: id}))
			return err
		},
		"UpdateRollout": func() error {
			_, err := rs.UpdateRollout(ctx, connect.NewRequest(&loomv1.UpdateRolloutRequest{MigrationId: m, RolloutId: id,
				Settings: &loomv1.RolloutSettings{MaxInFlight: 5}, UpdateMask: []string{"max_in_flight"}}))
			return err
		},
		"CancelRollout": func() error {
			_, err := rs.CancelRollout(ctx, connect.NewRequest(&loomv1.CancelRolloutRequest{MigrationId: m, RolloutId: id,
				CancelRuns: true, Reason: "during the outage"}))
			return err
		},
	}
}

// callAll makes the calls named, all at once, and gives each one's error
// and how long its answer took.
func callAll(calls map[string]func() error, names ...string) (map[string]error, map[string]time.Duration) {
	var mu sync.Mutex
	errs, took := map[string]error{}, map[string]time.Duration{}
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Go(func() {
			began := time.Now()
			err := calls[n]()
			mu.Lock()
			defer mu.Unlock()
			errs[n], took[n] = err, time.Since(began)
		})
	}
	wg.Wait()
	return errs, took
}

// errorInfo is the ErrorInfo detail of err; nil without one.
func errorInfo(err error) *errdetails.ErrorInfo {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return nil
	}
	for _, d := range cerr.Details() {
		if v, _ := d.Value(); v != nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				return info
			}
		}
	}
	return nil
}

func listRollouts(t *testing.T, rs loomv1connect.RolloutServiceClient) []*loomv1.Rollout {
	t.Helper()
	res, err := rs.ListRollouts(ctx, connect.NewRequest(&loomv1.ListRolloutsRequest{MigrationId: "go-upgrade"}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.Rollouts
}

// With Redis stopped, every RolloutService call answers unavailable
// (STORE_UNAVAILABLE) and changes nothing: once Redis is back with its
// data, the rollouts, the Candidates and the Runs are as they were, and
// the paused rollout still obeys its operator.
func TestRolloutCallsWithRedisDownAnswerUnavailableAndChangeNothing(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	ids := svcIDs(4)
	l.setup(t, w.migrator.url, ids...)
	rs, _ := rolloutClients(l, "")
	before := pausedRollout(t, w, rs, ids[:2])
	beforeList := listRollouts(t, rs)
	beforeRun := l.getRun(t, "go-upgrade__"+ids[0])

	w.redis.Down()
	calls := rolloutCalls(rs, before.Id, ids[2:])
	names := []string{"PreviewSelection", "StartRollout", "GetRollout", "ListRollouts", "WatchRollout",
		"PauseRollout", "ResumeRollout", "UpdateRollout", "CancelRollout"}
	errs, took := callAll(calls, names...)
	for _, n := range names {
		if connect.CodeOf(errs[n]) != connect.CodeUnavailable {
			t.Errorf("%s with Redis down: %v, want unavailable", n, errs[n])
			continue
		}
		t.Run(n, func(t *testing.T) { wantCode(t, errs[n], connect.CodeUnavailable, "STORE_UNAVAILABLE") })
		if took[n] > 10*time.Second {
			t.Errorf("%s with Redis down answered after %v", n, took[n])
		}
	}
	t.Logf("answers with Redis down took %v", took)
	w.redis.Up()

	// The client reconnects by itself; then everything is as it was.
	var after *loomv1.Rollout
	eventually(t, "GetRollout answers with Redis back", func() bool {
		res, err := rs.GetRollout(ctx, connect.NewRequest(&loomv1.GetRolloutRequest{MigrationId: "go-upgrade", RolloutId: before.Id}))
		if err == nil {
			after = res.Msg.Rollout
		}
		return err == nil
	})
	if !proto.Equal(after, before) {
		t.Fatalf("the rollout changed during the outage:\nbefore %v\nafter  %v", before, after)
	}
	if afterList := listRollouts(t, rs); len(afterList) != len(beforeList) || !proto.Equal(afterList[0], beforeList[0]) {
		t.Fatalf("rollouts before the outage %v, after %v", beforeList, afterList)
	}
	if run := l.getRun(t, "go-upgrade__"+ids[0]); !proto.Equal(run, beforeRun) {
		t.Fatalf("the rollout's Run changed during the outage:\nbefore %v\nafter  %v", beforeRun, run)
	}
	for _, id := range ids[1:] {
		if c := l.candidate(t, id); c.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED {
			t.Fatalf("%s is %v after the outage, want not started", id, c.Status)
		}
	}

	// Control works again: the rollout was still paused, and resumes.
	res, err := rs.ResumeRollout(ctx, connect.NewRequest(&loomv1.ResumeRolloutRequest{MigrationId: "go-upgrade", RolloutId: before.Id}))
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Msg.Rollout; r.State != loomv1.RolloutState_ROLLOUT_STATE_RUNNING || r.Settings.MaxInFlight != 1 {
		t.Fatalf("resumed after the outage: %v, max in flight %d", r.State, r.Settings.MaxInFlight)
	}
	c, err := rs.CancelRollout(ctx, connect.NewRequest(&loomv1.CancelRolloutRequest{MigrationId: "go-upgrade", RolloutId: before.Id, CancelRuns: true}))
	if err != nil || c.Msg.Rollout.State != loomv1.RolloutState_ROLLOUT_STATE_CANCELLED {
		t.Fatalf("cancel after the outage: %v, %v", c, err)
	}
}

// With Temporal unreachable (the link from Loom to it cut: Temporal and
// its workflows live on), StartRollout answers unavailable
// (EXECUTION_ENGINE_UNAVAILABLE) and leaves its rollout cancelled with the
// reason, starting nothing; steering a paused rollout answers unavailable
// and changes nothing. Once Temporal is reachable again, the paused
// rollout is steered as usual: nothing sent during the outage took effect
// late.
func TestRolloutWithTemporalUnreachable(t *testing.T) {
	w := newWorld(t)
	toTemporal := newLink(t, w.temporal.GetFrontendHostPort())
	w.configure = func(c *server.Config) { c.Temporal.HostPort = toTemporal.addr }
	l := w.startLoom()
	ids := svcIDs(4)
	l.setup(t, w.migrator.url, ids...)
	rs, hist := rolloutClients(l, "")
	before := pausedRollout(t, w, rs, ids[:2])

	toTemporal.cut()
	calls := rolloutCalls(rs, before.Id, ids[2:])
	names := []string{"StartRollout", "PauseRollout", "ResumeRollout", "UpdateRollout", "CancelRollout"}
	errs, took := callAll(calls, names...)
	for _, n := range names {
		if connect.CodeOf(errs[n]) != connect.CodeUnavailable {
			t.Errorf("%s with Temporal unreachable: %v, want unavailable", n, errs[n])
			continue
		}
		t.Run(n, func(t *testing.T) { wantCode(t, errs[n], connect.CodeUnavailable, "EXECUTION_ENGINE_UNAVAILABLE") })
		// A start waits for the client's one try (10 s); steering is
		// answered at once, not after the client's minute of retries.
		if limit := map[bool]time.Duration{true: 20 * time.Second, false: 10 * time.Second}[n == "StartRollout"]; took[n] > limit {
			t.Errorf("%s with Temporal unreachable answered after %v, more than %v", n, took[n], limit)
		}
	}
	t.Logf("answers with Temporal unreachable took %v", took)
	if t.Failed() {
		t.FailNow()
	}

	// The rollout that could not start is cancelled, by Loom, saying why;
	// none of its Candidates started. Reads work: they need only Redis.
	list := listRollouts(t, rs)
	if len(list) != 2 || list[1].Id != before.Id {
		t.Fatalf("rollouts after a start with Temporal unreachable: %v", list)
	}
	failed := list[0]
	if failed.State != loomv1.RolloutState_ROLLOUT_STATE_CANCELLED || failed.StateActor != "loom" ||
		!strings.HasPrefix(failed.StateReason, "could not start: ") || failed.EndTime == nil ||
		failed.Progress.Planned != 2 || failed.Progress.Started != 0 {
		t.Fatalf("the rollout that could not start: %v (%q by %q), %v", failed.State, failed.StateReason, failed.StateActor, failed.Progress)
	}
	if named := errorInfo(errs["StartRollout"]).GetMetadata()["rollout_id"]; named != failed.Id {
		t.Fatalf("the refused start names rollout %q, not the one it left cancelled, %s", named, failed.Id)
	}
	if after := getRollout(t, rs, before.Id); !proto.Equal(after, before) {
		t.Fatalf("the paused rollout changed while Temporal was unreachable:\nbefore %v\nafter  %v", before, after)
	}
	for _, id := range ids[1:] {
		if c := l.candidate(t, id); c.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED {
			t.Fatalf("%s is %v with Temporal unreachable, want not started", id, c.Status)
		}
	}

	toTemporal.mend()
	// Loom's client reconnects by itself. The update is the first thing its
	// workflow hears since the pause: it is still paused, so the resume and
	// the cancel answered unavailable never took effect.
	var updated *loomv1.Rollout
	for deadline := time.Now().Add(90 * time.Second); ; {
		res, err := rs.UpdateRollout(ctx, connect.NewRequest(&loomv1.UpdateRolloutRequest{MigrationId: "go-upgrade", RolloutId: before.Id,
			Settings: &loomv1.RolloutSettings{MaxInFlight: 2}, UpdateMask: []string{"max_in_flight"}, Reason: "CI has room again"}))
		if err == nil {
			updated = res.Msg.Rollout
			break
		}
		if connect.CodeOf(err) != connect.CodeUnavailable || time.Now().After(deadline) {
			t.Fatalf("update once Temporal is reachable again: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if updated.State != loomv1.RolloutState_ROLLOUT_STATE_PAUSED || updated.StateReason != "hold" || updated.Settings.MaxInFlight != 2 {
		t.Fatalf("updated once Temporal is back: %v (%q), max in flight %d", updated.State, updated.StateReason, updated.Settings.MaxInFlight)
	}
	// The update's why is in the history, and the one answered unavailable
	// recorded nothing.
	ev, err := hist.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "go-upgrade",
		Kinds: []loomv1.EventKind{loomv1.EventKind_EVENT_KIND_ROLLOUT_UPDATED}}))
	if err != nil {
		t.Fatal(err)
	}
	if e := ev.Msg.Events; len(e) != 1 || e[0].Details["reason"] != "CI has room again" || e[0].Details["max_in_flight"] != "2" {
		t.Fatalf("rollout_updated events %v", e)
	}
	res, err := rs.ResumeRollout(ctx, connect.NewRequest(&loomv1.ResumeRolloutRequest{MigrationId: "go-upgrade", RolloutId: before.Id}))
	if err != nil || res.Msg.Rollout.State != loomv1.RolloutState_ROLLOUT_STATE_RUNNING {
		t.Fatalf("resume once Temporal is back: %v, %v", res, err)
	}
	if d := w.nextDispatch(); d.Candidate.GetId() != ids[1] {
		t.Fatalf("dispatch after the resume is for %s, want %s", d.Candidate.GetId(), ids[1])
	}
	c, err := rs.CancelRollout(ctx, connect.NewRequest(&loomv1.CancelRolloutRequest{MigrationId: "go-upgrade", RolloutId: before.Id,
		CancelRuns: true, Reason: "done"}))
	if err != nil || c.Msg.Rollout.State != loomv1.RolloutState_ROLLOUT_STATE_CANCELLED || c.Msg.CancelledRuns != 2 {
		t.Fatalf("cancel once Temporal is back: %v, %v", c, err)
	}
	// The rollout that could not start has no workflow in Temporal.
	_, err = w.temporal.GetDefaultClient().DescribeWorkflowExecution(ctx, engine.RolloutWorkflowID("go-upgrade", failed.Id), "")
	var notFound *serviceerror.NotFound
	if !errors.As(err, &notFound) {
		t.Fatalf("the rollout that could not start has a workflow: %v", err)
	}
}

// An operator's action on a Run with Temporal unreachable answers
// unavailable at once (not after the Temporal client's minute of retries)
// and changes nothing; once Temporal is back, the same action works.
func TestRunActionsWithTemporalUnreachableAnswerAtOnce(t *testing.T) {
	w := newWorld(t)
	toTemporal := newLink(t, w.temporal.GetFrontendHostPort())
	w.configure = func(c *server.Config) { c.Temporal.HostPort = toTemporal.addr }
	l := w.startLoom()
	l.setup(t, w.migrator.url, "acme/payments", "acme/orders")
	if _, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "go-upgrade", CandidateId: "acme/payments",
		Inputs: map[string]string{"target_version": "1.23"}})); err != nil {
		t.Fatal(err)
	}
	d := w.nextDispatch()

	toTemporal.cut()
	calls := map[string]func() error{
		"SkipStep": func() error {
			_, err := l.runs.SkipStep(ctx, connect.NewRequest(&loomv1.SkipStepRequest{RunId: d.RunId, StepName: d.Step.Name, Attempt: d.Attempt, Reason: "done by hand"}))
			return err
		},
		"CancelRun": func() error {
			_, err := l.runs.CancelRun(ctx, connect.NewRequest(&loomv1.CancelRunRequest{RunId: d.RunId, Reason: "not now"}))
			return err
		},
		"StartRun": func() error {
			_, err := l.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "go-upgrade", CandidateId: "acme/orders",
				Inputs: map[string]string{"target_version": "1.23"}}))
			return err
		},
	}
	errs, took := callAll(calls, "SkipStep", "CancelRun", "StartRun")
	for n, err := range errs {
		t.Run(n, func(t *testing.T) {
			wantCode(t, err, connect.CodeUnavailable, loomv1.ErrorReason_EXECUTION_ENGINE_UNAVAILABLE)
		})
		// Actions at once; a start within the Temporal client's one try
		// (as docs/operators.md says: about 10 s).
		if limit := map[bool]time.Duration{true: 20 * time.Second, false: 10 * time.Second}[n == "StartRun"]; took[n] > limit {
			t.Errorf("%s with Temporal unreachable answered after %v, more than %v", n, took[n], limit)
		}
	}
	if c := l.candidate(t, "acme/orders"); c.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED {
		t.Fatalf("a start refused with Temporal unreachable left the Candidate %v", c.Status)
	}
	t.Logf("answers with Temporal unreachable took %v", took)

	toTemporal.mend()
	// Once the client has reconnected, the skip goes through: nothing of the
	// refused calls had taken effect (the Run is running, its step where it was).
	var run *loomv1.Run
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := l.runs.SkipStep(ctx, connect.NewRequest(&loomv1.SkipStepRequest{RunId: d.RunId, StepName: d.Step.Name, Attempt: d.Attempt, Reason: "done by hand"}))
		if err == nil {
			run = res.Msg.Run
			break
		}
		// A workflow task cut off with Temporal is run again once it is
		// back, from the Run's last recorded state: until it has
		// dispatched the step again, the step is not yet current.
		redispatching := connect.CodeOf(err) == connect.CodeFailedPrecondition &&
			migratorsdk.RefusalReason(err) == loomv1.ErrorReason_STEP_NOT_CURRENT
		if connect.CodeOf(err) != connect.CodeUnavailable && !redispatching || time.Now().After(deadline) {
			t.Fatalf("skip once Temporal is back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if run.Status != loomv1.RunStatus_RUN_STATUS_RUNNING || run.StepResults[0].Status != loomv1.StepStatus_STEP_STATUS_SKIPPED {
		t.Fatalf("after the skip: %v, first step %v", run.Status, run.StepResults[0].Status)
	}
}
