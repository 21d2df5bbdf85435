package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"go.temporal.io/sdk/client"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/internal/devenv"
	"github.com/loomhq/loom/migratorsdk"
)

// migrationID is the bench's Migration.
const migrationID = "bench"

// loomSide drives Runs through Loom's API with a Migrator built on
// migratorsdk whose every step completes at once.
type loomSide struct {
	tc     client.Client
	runs   loomv1connect.RunServiceClient
	m      *migratorsdk.Migrator
	cancel context.CancelFunc
	served chan error
	rec    *boundaries
	last   *lastReports
	// rollouts is the operator's RolloutService.
	rollouts loomv1connect.RolloutServiceClient
	// retryStarts makes run try a start again when Loom answers
	// UNAVAILABLE (a start call timed out), as an operator's client would;
	// retried counts them.
	retryStarts bool
	retried     atomic.Int64
}

// candidateID is the id of the bench's n-th Candidate (both sides use the
// same numbering, each with its own prefix).
func candidateID(n int) string { return fmt.Sprintf("c-%06d", n) }

// startLoom starts the bench's Migrator, whose Candidates are ids, and
// waits until Loom has them all.
func startLoom(ctx context.Context, env devenv.Env, tc client.Client, steps int, ids []string, log *slog.Logger) (*loomSide, error) {
	s := &loomSide{tc: tc, rec: newBoundaries(), last: newLastReports()}
	var defs []migratorsdk.Step
	for i := range steps {
		defs = append(defs, migratorsdk.Step{Name: "step-" + strconv.Itoa(i+1), Type: "instant"})
	}
	spec := migratorsdk.Spec{
		Migration: migratorsdk.Migration{ID: migrationID, Name: "Benchmark", Steps: defs},
		Handlers: map[string]migratorsdk.StepHandler{"instant": func(ctx context.Context, d *migratorsdk.Dispatch) error {
			s.rec.delivered(d.RunID, d.StepIndex, time.Now())
			s.rec.reporting(d.RunID, time.Now())
			if err := d.Completed(ctx); err != nil {
				return err
			}
			if d.StepIndex == steps-1 {
				s.last.done(d.RunID)
			}
			return nil
		}},
		Discover: func(context.Context) ([]migratorsdk.Candidate, error) {
			cs := make([]migratorsdk.Candidate, len(ids))
			for i, id := range ids {
				cs[i] = migratorsdk.Candidate{ID: id, Kind: "bench"}
			}
			return cs, nil
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.m, err = migratorsdk.New(spec, migratorsdk.Options{LoomURL: env.APIURL, Token: env.MigratorToken,
		ListenAddr: l.Addr().String(), Logger: log, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		l.Close()
		return nil, err
	}
	mctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.served = cancel, make(chan error, 1)
	go func() { s.served <- s.m.Serve(mctx, l) }()
	operator := migratorsdk.WithToken(env.OperatorToken)
	// The operator starts many Runs at once: as many connections as it needs.
	s.runs = loomv1connect.NewRunServiceClient(migratorsdk.DefaultHTTPClient(), env.APIURL, operator)
	s.rollouts = loomv1connect.NewRolloutServiceClient(migratorsdk.DefaultHTTPClient(), env.APIURL, operator)
	if err := waitForCandidates(ctx, env.APIURL, len(ids), operator); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *loomSide) name() string { return "Loom" }

// run starts the Run of Candidate id through Loom's API and waits until its
// workflow completes, as the bare side does.
func (s *loomSide) run(ctx context.Context, id string) error {
	runID := migrationID + "__" + id
	s.rec.starting(runID, time.Now())
	for try := 1; ; try++ {
		_, err := s.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: migrationID, CandidateId: id}))
		if err == nil || (try > 1 && connect.CodeOf(err) == connect.CodeAlreadyExists) {
			// (Already running after a retry: the first try started it.)
			break
		}
		if !s.retryStarts || connect.CodeOf(err) != connect.CodeUnavailable || try == 5 {
			return fmt.Errorf("start %s: %w", id, err)
		}
		s.retried.Add(1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := awaitClosed(ctx, s.tc, s.last, runID); err != nil {
		return fmt.Errorf("run %s: %w", runID, err)
	}
	s.rec.completed(runID, time.Now())
	return nil
}

func (s *loomSide) boundaries() *boundaries { return s.rec }

func (s *loomSide) stop() {
	s.cancel()
	<-s.served
}

func waitForCandidates(ctx context.Context, apiURL string, n int, opts ...connect.ClientOption) error {
	c := loomv1connect.NewDiscoveryServiceClient(http.DefaultClient, apiURL, opts...)
	// Discovery submits its Candidates in batches: allow for many.
	wait := time.Minute + time.Duration(n)*5*time.Millisecond
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		res, err := c.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: migrationID, PageSize: 1}))
		if err == nil && res.Msg.GetTotalSize() >= int64(n) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the bench Migrator's %d Candidates did not arrive within %v", n, wait)
}
