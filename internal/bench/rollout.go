package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"connectrpc.com/connect"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
)

// RolloutConfig is one rollout bench: in one `loom dev` environment, the
// same number of Runs started directly with StartRun and by one rollout,
// the rollout workflow's own state, how soon a pause takes, and one rollout
// starting many Candidates at once.
type RolloutConfig struct {
	// Runs per side and round; InFlight, the Runs the direct side keeps in
	// flight and the rollout's max_in_flight.
	Runs, InFlight int
	// Steps per Run (≥ 1), each completed at once by the Migrator.
	Steps int
	// Rounds of both sides, alternating which goes first.
	Rounds int
	// Warmup Runs per side before anything is measured.
	Warmup int
	// The pause check: a rollout of PauseRuns Candidates at PauseInFlight,
	// paused once PauseAt of them started. PauseRuns 0 skips it.
	PauseRuns, PauseInFlight, PauseAt int
	// BurstRuns Candidates in one rollout whose max_in_flight is as many;
	// 0 skips it.
	BurstRuns int
	// ProfileDir, when set, receives a CPU profile of every measured phase.
	ProfileDir string
	// Out receives the figures; Progress, a line per phase.
	Out, Progress io.Writer
}

func (c RolloutConfig) validate() error {
	switch {
	case c.Runs < 1 || c.InFlight < 1:
		return errors.New("runs and in-flight: at least 1")
	case c.InFlight > 10_000:
		return errors.New("in-flight: a rollout's max_in_flight is at most 10,000")
	case c.Steps < 1:
		return errors.New("steps: at least 1")
	case c.Rounds < 1:
		return errors.New("rounds: at least 1")
	case c.PauseRuns > 0 && (c.PauseInFlight < 1 || c.PauseAt < 1 || c.PauseAt >= c.PauseRuns):
		return errors.New("pause: in-flight at least 1, and pause-at between 1 and the pause Runs")
	case c.BurstRuns > 10_000:
		return errors.New("burst: at most 10,000 (a rollout's max_in_flight)")
	}
	return nil
}

// rolloutWorkflowID is the workflow id of rollout r of Migration m, as
// server/internal/engine.RolloutWorkflowID makes it; startActivity is the
// local activity that starts a batch of its Runs (activityStartRolloutRuns
// there). The bench's test fails when either changes.
func rolloutWorkflowID(m, r string) string { return "loom-rollout:" + m + ":" + r }

const startActivity = "StartRolloutRuns"

// Candidate id prefixes of the rollout bench, one per phase: the rollout
// selects its Candidates by id prefix.
func directPrefix(round int) string  { return fmt.Sprintf("d%d-", round) }
func rolloutPrefix(round int) string { return fmt.Sprintf("r%d-", round) }

const (
	warmDirectPrefix  = "wd-"
	warmRolloutPrefix = "wr-"
	pausePrefix       = "p-"
	burstPrefix       = "k-"
)

func prefixed(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%06d", prefix, i)
	}
	return out
}

// rolloutRound is one round's figures.
type rolloutRound struct {
	first                   string // the side that went first
	direct, rollout         time.Duration
	directCPU, rolloutCPU   time.Duration
	directRedis, rolloutRed time.Duration
	// retried is how many direct start calls timed out and were tried
	// again.
	retried int64
	// directEvents, rolloutEvents: the mean history length of a sample
	// of each side's Run workflows.
	directEvents, rolloutEvents float64
}

// stateRow is a rollout whose workflow was read after it ended.
type stateRow struct {
	what       string
	candidates int
	st         rolloutState
}

// RunRollout runs the rollout bench and prints its figures.
func RunRollout(ctx context.Context, cfg RolloutConfig) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	defaultWriters(&cfg.Out, &cfg.Progress)
	quiet := slog.New(slog.DiscardHandler)
	w, err := openWorld(ctx, quiet)
	if err != nil {
		return err
	}
	defer w.close()
	ctx = w.ctx

	var all []string
	all = append(all, prefixed(warmDirectPrefix, cfg.Warmup)...)
	all = append(all, prefixed(warmRolloutPrefix, cfg.Warmup)...)
	for r := 1; r <= cfg.Rounds; r++ {
		all = append(all, prefixed(directPrefix(r), cfg.Runs)...)
		all = append(all, prefixed(rolloutPrefix(r), cfg.Runs)...)
	}
	all = append(all, prefixed(pausePrefix, cfg.PauseRuns)...)
	all = append(all, prefixed(burstPrefix, cfg.BurstRuns)...)
	fmt.Fprintf(cfg.Progress, "discovering %d Candidates\n", len(all))
	loom, err := startLoom(ctx, w.env, w.tc, cfg.Steps, all, quiet)
	if err != nil {
		return err
	}
	defer loom.stop()
	loom.retryStarts = true

	var states []stateRow
	inspect := func(what string, r *loomv1.Rollout) error {
		st, err := inspectRollout(ctx, w.tc, rolloutWorkflowID(migrationID, r.Id))
		if err != nil {
			return fmt.Errorf("read rollout %s's workflow: %w", r.Id, err)
		}
		states = append(states, stateRow{what: what, candidates: int(r.Progress.GetPlanned()), st: st})
		return nil
	}

	if cfg.Warmup > 0 {
		fmt.Fprintf(cfg.Progress, "warming up: %d Runs started directly, %d by a rollout\n", cfg.Warmup, cfg.Warmup)
		inFlight := min(10, cfg.Warmup)
		if _, err := phase(ctx, loom, Level{InFlight: inFlight, Runs: cfg.Warmup}, prefixed(warmDirectPrefix, cfg.Warmup), w.m); err != nil {
			return err
		}
		r, _, err := loom.rollout(ctx, warmRolloutPrefix, inFlight, cfg.Warmup)
		if err != nil {
			return fmt.Errorf("warm-up rollout: %w", err)
		}
		if err := inspect("warm-up", r); err != nil {
			return err
		}
	}

	var rounds []rolloutRound
	for r := 1; r <= cfg.Rounds; r++ {
		var rr rolloutRound
		direct := func() error {
			fmt.Fprintf(cfg.Progress, "direct: %d Runs × %d steps with StartRun, %d in flight (round %d of %d)\n", cfg.Runs, cfg.Steps, cfg.InFlight, r, cfg.Rounds)
			stopProfile, err := profile(cfg.ProfileDir, fmt.Sprintf("direct-round-%d.pprof", r))
			if err != nil {
				return err
			}
			retried := loom.retried.Load()
			ph, err := phase(ctx, loom, Level{InFlight: cfg.InFlight, Runs: cfg.Runs}, prefixed(directPrefix(r), cfg.Runs), w.m)
			stopProfile()
			rr.retried = loom.retried.Load() - retried
			if rr.directEvents, err = meanHistory(ctx, w.tc, prefixed(directPrefix(r), cfg.Runs)); err != nil {
				return err
			}
			if err != nil {
				return err
			}
			rr.direct, rr.directCPU, rr.directRedis = ph.elapsed, ph.res.cpu, ph.res.redisCPU
			fmt.Fprintf(cfg.Progress, "  %.1f Runs/s\n", float64(cfg.Runs)/ph.elapsed.Seconds())
			return nil
		}
		rollout := func() error {
			fmt.Fprintf(cfg.Progress, "rollout: %d Runs × %d steps by one StartRollout, max in flight %d (round %d of %d)\n", cfg.Runs, cfg.Steps, cfg.InFlight, r, cfg.Rounds)
			stopProfile, err := profile(cfg.ProfileDir, fmt.Sprintf("rollout-round-%d.pprof", r))
			if err != nil {
				return err
			}
			w.m.reset()
			before := w.m.read()
			ro, elapsed, err := loom.rollout(ctx, rolloutPrefix(r), cfg.InFlight, cfg.Runs)
			after := w.m.read()
			stopProfile()
			if err != nil {
				return err
			}
			rr.rollout, rr.rolloutCPU, rr.rolloutRed = elapsed, after.cpu-before.cpu, after.redisCPU-before.redisCPU
			if rr.rolloutEvents, err = meanHistory(ctx, w.tc, prefixed(rolloutPrefix(r), cfg.Runs)); err != nil {
				return err
			}
			fmt.Fprintf(cfg.Progress, "  %.1f Runs/s\n", float64(cfg.Runs)/elapsed.Seconds())
			return inspect(fmt.Sprintf("round %d", r), ro)
		}
		order := []func() error{direct, rollout}
		rr.first = "direct"
		if r%2 == 0 {
			order = []func() error{rollout, direct}
			rr.first = "rollout"
		}
		for _, f := range order {
			if err := f(); err != nil {
				return err
			}
		}
		rounds = append(rounds, rr)
	}
	printRolloutRounds(cfg, rounds)

	if cfg.PauseRuns > 0 {
		fmt.Fprintf(cfg.Progress, "pause: a rollout of %d Candidates, max in flight %d, paused once %d started\n", cfg.PauseRuns, cfg.PauseInFlight, cfg.PauseAt)
		p, err := loom.pauseCheck(ctx, cfg.PauseRuns, cfg.PauseInFlight, cfg.PauseAt)
		if err != nil {
			return fmt.Errorf("pause check: %w", err)
		}
		p.print(cfg.Out)
		if err := inspect("pause (cancelled)", p.rollout); err != nil {
			return err
		}
	}
	if cfg.BurstRuns > 0 {
		fmt.Fprintf(cfg.Progress, "burst: %d Candidates in one rollout, max in flight %d\n", cfg.BurstRuns, cfg.BurstRuns)
		ro, elapsed, err := loom.rollout(ctx, burstPrefix, cfg.BurstRuns, cfg.BurstRuns)
		if err != nil {
			return fmt.Errorf("burst: %w", err)
		}
		if err := inspect(fmt.Sprintf("%d in one", cfg.BurstRuns), ro); err != nil {
			return err
		}
		st := states[len(states)-1].st
		pr := ro.GetProgress()
		verdict := "none timed out"
		if pr.GetSkipped() != 0 || pr.GetSkippedReason() != "" || st.retried != 0 {
			verdict = "**some did not start at the first try**"
		}
		fmt.Fprintf(cfg.Out, "\n%d Candidates in one rollout, max in flight %d: %.1f Runs/s (%v); %d started, %d completed, %d skipped%s; %d start batches, %d retried (%d failed): %s.\n",
			cfg.BurstRuns, cfg.BurstRuns, float64(cfg.BurstRuns)/elapsed.Seconds(), elapsed.Round(time.Millisecond),
			pr.GetStarted(), pr.GetCompleted(), pr.GetSkipped(), reasonSuffix(pr.GetSkippedReason()), st.batches, st.retried, st.failed, verdict)
	}
	printRolloutStates(cfg.Out, states)
	return nil
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

func printRolloutRounds(cfg RolloutConfig, rounds []rolloutRound) {
	w := cfg.Out
	fmt.Fprintf(w, "loom-bench -rollout: %d Runs × %d steps per side and round, %d in flight, a Migrator that completes each step at once; one `loom dev` environment (embedded Temporal, redis-server) on %d CPUs; %d round(s), sides alternating\n\n",
		cfg.Runs, cfg.Steps, cfg.InFlight, runtime.NumCPU(), cfg.Rounds)
	fmt.Fprintln(w, "Direct: StartRun per Run, the next started as one completes (its workflow closed), a start answered UNAVAILABLE (timed out) tried again after 200 ms; rollout: one StartRollout with max_in_flight as many, timed to its state COMPLETED.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| round | first | Runs/s direct | Runs/s rollout | rollout ÷ direct | CPU s/Run (of which Redis) direct / rollout | events per Run direct / rollout | direct starts retried |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	var d, r time.Duration
	var dc, rc, dr, rr time.Duration
	var retried int64
	for i, x := range rounds {
		dps, rps := float64(cfg.Runs)/x.direct.Seconds(), float64(cfg.Runs)/x.rollout.Seconds()
		fmt.Fprintf(w, "| %d | %s | %.1f | %.1f | **%.2f** | %s / %s | %.1f / %.1f | %d |\n", i+1, x.first, dps, rps, rps/dps,
			cpuPerRun(x.directCPU, x.directRedis, cfg.Runs), cpuPerRun(x.rolloutCPU, x.rolloutRed, cfg.Runs), x.directEvents, x.rolloutEvents, x.retried)
		retried += x.retried
		d, r = d+x.direct, r+x.rollout
		dc, rc, dr, rr = dc+x.directCPU, rc+x.rolloutCPU, dr+x.directRedis, rr+x.rolloutRed
	}
	if len(rounds) > 1 {
		n := cfg.Runs * len(rounds)
		dps, rps := float64(n)/d.Seconds(), float64(n)/r.Seconds()
		fmt.Fprintf(w, "| all | | %.1f | %.1f | **%.2f** | %s / %s | | %d |\n", dps, rps, rps/dps, cpuPerRun(dc, dr, n), cpuPerRun(rc, rr, n), retried)
	}
}

func cpuPerRun(cpu, redis time.Duration, runs int) string {
	return fmt.Sprintf("%.4f (%.4f)", cpu.Seconds()/float64(runs), redis.Seconds()/float64(runs))
}

func printRolloutStates(w io.Writer, rows []stateRow) {
	fmt.Fprintln(w, "\nThe rollout workflow's own state, read from its history after it ended (its input is the state a run carries into the next):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| rollout | Candidates | workflow runs | events, latest run | events, largest run | input bytes, latest run | largest input bytes | start batches (retried) | workflow tasks per Candidate |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %d | %d (%d) | %.2f |\n", r.what, r.candidates, r.st.runs, r.st.latestEvents, r.st.mostEvents,
			r.st.latestInput, r.st.largestInput, r.st.batches, r.st.retried, float64(r.st.tasks)/float64(max(1, r.candidates)))
	}
}

// rollout starts a rollout of the n Candidates whose id starts with prefix
// and waits until it completed; elapsed runs from the StartRollout call.
func (s *loomSide) rollout(ctx context.Context, prefix string, inFlight, n int) (*loomv1.Rollout, time.Duration, error) {
	began := time.Now()
	res, err := s.startRollout(ctx, prefix, inFlight)
	if err != nil {
		return nil, 0, err
	}
	if p := res.GetProgress().GetPlanned(); int(p) != n {
		return nil, 0, fmt.Errorf("rollout %s plans %d Candidates, not %d", res.Id, p, n)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	for {
		r, err := s.getRollout(ctx, res.Id)
		if err != nil {
			return nil, 0, err
		}
		switch r.State {
		case loomv1.RolloutState_ROLLOUT_STATE_COMPLETED:
			elapsed := time.Since(began)
			if p := r.Progress; int(p.Completed) != n {
				return r, elapsed, fmt.Errorf("rollout %s completed with %d of %d Runs completed: %v", r.Id, p.Completed, n, p)
			}
			return r, elapsed, nil
		case loomv1.RolloutState_ROLLOUT_STATE_RUNNING:
		default:
			return r, 0, fmt.Errorf("rollout %s is %s (%s): %v", r.Id, r.State, r.StateReason, r.Progress)
		}
		select {
		case <-ctx.Done():
			return r, 0, fmt.Errorf("rollout %s did not complete: %w (%v)", r.Id, ctx.Err(), r.Progress)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *loomSide) startRollout(ctx context.Context, prefix string, inFlight int) (*loomv1.Rollout, error) {
	res, err := s.rollouts.StartRollout(ctx, connect.NewRequest(&loomv1.StartRolloutRequest{
		MigrationId: migrationID,
		Selection:   &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{IdPrefix: prefix}},
		Settings:    &loomv1.RolloutSettings{MaxInFlight: int32(inFlight)},
	}))
	if err != nil {
		return nil, fmt.Errorf("start a rollout of %s*: %w", prefix, err)
	}
	return res.Msg.Rollout, nil
}

func (s *loomSide) getRollout(ctx context.Context, id string) (*loomv1.Rollout, error) {
	res, err := s.rollouts.GetRollout(ctx, connect.NewRequest(&loomv1.GetRolloutRequest{MigrationId: migrationID, RolloutId: id}))
	if err != nil {
		return nil, fmt.Errorf("get rollout %s: %w", id, err)
	}
	return res.Msg.Rollout, nil
}

// pauseResult is what the pause check found.
type pauseResult struct {
	rollout *loomv1.Rollout
	// seen is Progress.started when the pause was sent; atAnswer, in the
	// answer; later, 2 s on.
	seen, atAnswer, later int32
	latency               time.Duration
	// runs is how many Runs of the rollout Temporal started; afterAnswer,
	// how many of them after the answer; duringCall, after the call was
	// sent and before its answer.
	runs, afterAnswer, duringCall int
	cancelled                     int32
}

func (p pauseResult) print(w io.Writer) {
	verdict := "none started after the answer"
	if p.afterAnswer > 0 || p.later != p.atAnswer {
		verdict = "**Runs started after the answer**"
	}
	fmt.Fprintf(w, "\nPause: PauseRollout sent with %d Runs started, answered in **%v** with %d started; 2 s on, %d started; of its %d Runs, %d started while the call was in flight and **%d after the answer**: %s. Then cancelled with its Runs in flight (%d cancelled).\n",
		p.seen, p.latency.Round(100*time.Microsecond), p.atAnswer, p.later, p.runs, p.duringCall, p.afterAnswer, verdict, p.cancelled)
}

// pauseCheck starts a rollout of n Candidates with max_in_flight inFlight,
// pauses it once at least at of them started, and checks that no Run of it
// starts after the pause's answer; then cancels it with its Runs.
func (s *loomSide) pauseCheck(ctx context.Context, n, inFlight, at int) (pauseResult, error) {
	var out pauseResult
	r, err := s.startRollout(ctx, pausePrefix, inFlight)
	if err != nil {
		return out, err
	}
	for deadline := time.Now().Add(5 * time.Minute); ; {
		cur, err := s.getRollout(ctx, r.Id)
		if err != nil {
			return out, err
		}
		if cur.State != loomv1.RolloutState_ROLLOUT_STATE_RUNNING {
			return out, fmt.Errorf("rollout %s is %s before the pause: %v", r.Id, cur.State, cur.Progress)
		}
		if out.seen = cur.Progress.GetStarted(); int(out.seen) >= at {
			break
		}
		if time.Now().After(deadline) {
			return out, fmt.Errorf("rollout %s started %d of %d in 5 minutes", r.Id, out.seen, at)
		}
		time.Sleep(2 * time.Millisecond)
	}
	sent := time.Now()
	res, err := s.rollouts.PauseRollout(ctx, connect.NewRequest(&loomv1.PauseRolloutRequest{MigrationId: migrationID, RolloutId: r.Id, Reason: "bench: pause latency"}))
	answered := time.Now()
	if err != nil {
		return out, fmt.Errorf("pause rollout %s: %w", r.Id, err)
	}
	out.latency = answered.Sub(sent)
	out.atAnswer = res.Msg.Rollout.GetProgress().GetStarted()
	if st := res.Msg.Rollout.GetState(); st != loomv1.RolloutState_ROLLOUT_STATE_PAUSED {
		return out, fmt.Errorf("rollout %s answered the pause %s", r.Id, st)
	}
	select {
	case <-ctx.Done():
		return out, ctx.Err()
	case <-time.After(2 * time.Second):
	}
	cur, err := s.getRollout(ctx, r.Id)
	if err != nil {
		return out, err
	}
	out.later = cur.Progress.GetStarted()
	// Every Run of the rollout, with the time Temporal started its
	// workflow (the Run's view says when its workflow first ran, later).
	var mu sync.Mutex
	var wg sync.WaitGroup
	var ferr error
	sem := make(chan struct{}, 16)
	for _, id := range prefixed(pausePrefix, n) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d, err := s.tc.DescribeWorkflowExecution(ctx, migrationID+"__"+id, "")
			var missing *serviceerror.NotFound
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.As(err, &missing):
			case err != nil:
				ferr = errors.Join(ferr, err)
			default:
				out.runs++
				st := d.GetWorkflowExecutionInfo().GetStartTime().AsTime()
				if st.After(answered) {
					out.afterAnswer++
				} else if st.After(sent) {
					out.duringCall++
				}
			}
		})
	}
	wg.Wait()
	if ferr != nil {
		return out, ferr
	}
	cres, err := s.rollouts.CancelRollout(ctx, connect.NewRequest(&loomv1.CancelRolloutRequest{MigrationId: migrationID, RolloutId: r.Id,
		Reason: "bench: done", CancelRuns: true}))
	if err != nil {
		return out, fmt.Errorf("cancel rollout %s: %w", r.Id, err)
	}
	out.cancelled = cres.Msg.CancelledRuns
	out.rollout = cres.Msg.Rollout
	return out, nil
}

// meanHistory is the mean history length of the Run workflows of up to
// 50 Candidates of ids, spread over them.
func meanHistory(ctx context.Context, tc client.Client, ids []string) (float64, error) {
	step := max(1, len(ids)/50)
	var sum, n int64
	for i := 0; i < len(ids); i += step {
		d, err := tc.DescribeWorkflowExecution(ctx, migrationID+"__"+ids[i], "")
		if err != nil {
			return 0, err
		}
		sum += d.GetWorkflowExecutionInfo().GetHistoryLength()
		n++
	}
	return float64(sum) / float64(n), nil
}

// rolloutState is what a rollout's workflow history shows of its state.
type rolloutState struct {
	// runs is how many workflow runs it took (1 + continue-as-new's).
	runs                      int
	latestEvents, mostEvents  int
	latestInput, largestInput int // bytes
	batches, retried, failed  int // StartRolloutRuns local activities
	tasks                     int // workflow tasks completed, every run
}

// inspectRollout waits until the rollout workflow id has closed (it does
// soon after its view says it ended), then reads every run of it, newest
// first.
func inspectRollout(ctx context.Context, tc client.Client, id string) (rolloutState, error) {
	var st rolloutState
	d, err := tc.DescribeWorkflowExecution(ctx, id, "")
	for deadline := time.Now().Add(time.Minute); err == nil &&
		d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING; {
		if time.Now().After(deadline) {
			return st, errors.New("still running a minute after its view ended")
		}
		time.Sleep(20 * time.Millisecond)
		d, err = tc.DescribeWorkflowExecution(ctx, id, "")
	}
	if err != nil {
		return st, err
	}
	runID := d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	for runID != "" {
		it := tc.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		events, input, prev := 0, 0, ""
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return st, err
			}
			events++
			if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
				for _, p := range a.GetInput().GetPayloads() {
					input += len(p.GetData())
				}
				prev = a.GetContinuedExecutionRunId()
			}
			if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
				st.tasks++
			}
			if a := ev.GetMarkerRecordedEventAttributes(); a != nil && a.GetMarkerName() == "LocalActivity" {
				var md struct {
					ActivityType string
					Attempt      int32
				}
				if p := a.GetDetails()["data"].GetPayloads(); len(p) > 0 {
					_ = json.Unmarshal(p[0].GetData(), &md)
				}
				if md.ActivityType == startActivity {
					st.batches++
					if md.Attempt > 1 {
						st.retried++
					}
					if a.GetFailure() != nil {
						st.failed++
					}
				}
			}
		}
		if st.runs == 0 {
			st.latestEvents, st.latestInput = events, input
		}
		st.runs++
		st.mostEvents = max(st.mostEvents, events)
		st.largestInput = max(st.largestInput, input)
		runID = prev
	}
	return st, nil
}
