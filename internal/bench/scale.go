package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/internal/devenv"
	"github.com/loomhq/loom/migratorsdk"
)

// ScaleConfig is one store-at-scale bench: for each size, a fresh Migration
// of that many Candidates, loaded, listed, run and deleted through Loom's
// API on one `loom dev` environment, and what it cost in Redis.
type ScaleConfig struct {
	// Sizes are the Candidates of each Migration; the first is the one
	// every other is compared with (100 by default).
	Sizes []int
	// Batch is the Candidates per SubmitCandidates request (the API takes
	// at most 1,000).
	Batch int
	// Pages is how many ListCandidates calls each filter (or pair) gets.
	Pages int
	// ProfileDir, when set, receives a CPU profile of the pages and of the
	// delete at each size (this process: Loom, Temporal and the bench).
	ProfileDir string
	// Starts is how many Runs StartRun starts per size (at most half the
	// size); a quarter of them fail their first step and are held there, so
	// the current-step filters have something to find.
	Starts int
	// Steps per Run (the Migrator completes each at once).
	Steps int
	// Out receives the figures; Progress, a line per phase.
	Out, Progress io.Writer
}

func (c ScaleConfig) validate() error {
	switch {
	case len(c.Sizes) == 0:
		return errors.New("sizes: at least one")
	case c.Batch < 1 || c.Batch > 1000:
		return errors.New("batch: 1 to 1,000 Candidates per request")
	case c.Pages < 1:
		return errors.New("pages: at least 1")
	case c.Starts < 2:
		return errors.New("starts: at least 2")
	case c.Steps < 1:
		return errors.New("steps: at least 1")
	}
	for _, n := range c.Sizes {
		if n < 4 {
			return fmt.Errorf("size %d: at least 4 Candidates", n)
		}
	}
	return nil
}

// ParseSizes reads "100,100000".
func ParseSizes(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(strings.ReplaceAll(part, "_", "")))
		if err != nil || n < 4 {
			return nil, fmt.Errorf("size %q: want a number of Candidates, at least 4", part)
		}
		out = append(out, n)
	}
	return out, nil
}

// The fleet of one Migration: Candidates "org-<o>/svc-<i>" of 4 kinds, with
// metadata "team" (20 values) and "repo" (unique), spread independently of
// each other by a hash of i.
var scaleKinds = []string{"service", "library", "job", "website"}

const (
	scaleTeams = 20
	scaleOrgs  = 10
)

type fleet struct {
	ids              []string
	kind, team, org  []uint8
	status           []loomv1.CandidateStatus
	failed           []bool // running, its current step failed
	firstStep        string
	never, completed []string // samples of each, for the per-Candidate keys
}

func mix(x uint64) uint64 { // splitmix64's finalizer
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func newFleet(n int) *fleet {
	f := &fleet{ids: make([]string, n), kind: make([]uint8, n), team: make([]uint8, n), org: make([]uint8, n),
		status: make([]loomv1.CandidateStatus, n), failed: make([]bool, n), firstStep: "step-1"}
	for i := range n {
		h := mix(uint64(i) + 1)
		f.kind[i] = uint8(h % uint64(len(scaleKinds)))
		f.team[i] = uint8(h >> 16 % scaleTeams)
		f.org[i] = uint8(h >> 32 % scaleOrgs)
		f.ids[i] = fmt.Sprintf("org-%d/svc-%07d", f.org[i], i)
		f.status[i] = loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED
	}
	return f
}

func teamName(t int) string    { return fmt.Sprintf("team-%02d", t) }
func repoURL(id string) string { return "git@example.com:" + id + ".git" }

func (f *fleet) candidate(i int) *loomv1.Candidate {
	return &loomv1.Candidate{Id: f.ids[i], Kind: scaleKinds[f.kind[i]],
		Metadata: map[string]string{"team": teamName(int(f.team[i])), "repo": repoURL(f.ids[i])}}
}

// request is the SubmitCandidates request of f's Candidates start to end
// in a discovery pass named round: the last of the pass is complete (as
// migratorsdk submits a pass).
func (f *fleet) request(m string, start, end int, round string) *loomv1.SubmitCandidatesRequest {
	req := &loomv1.SubmitCandidatesRequest{MigrationId: m, Round: round, Complete: end == len(f.ids),
		Candidates: make([]*loomv1.Candidate, 0, end-start)}
	for i := start; i < end; i++ {
		req.Candidates = append(req.Candidates, f.candidate(i))
	}
	return req
}

// scaleResult is one size's figures.
type scaleResult struct {
	n         int
	migration string
	// Discovery, then the same pass again, unchanged.
	discover, rediscover time.Duration
	submits, resubmits   []time.Duration
	submitsServer        []time.Duration // the server's own time of each (Server-Timing)
	// Tries that failed (and were made again).
	submitsFailed, resubmitsFailed int
	lastSubmit, lastResubmit       time.Duration // the complete request of each pass
	discoverCPU, discoverRedis     time.Duration
	added, unchanged               int
	// Redis: used_memory deltas from before the discovery.
	restBytes, rediscoverBytes int64
	restKeys                   int
	restClasses                []keyClass
	// Runs.
	startLat           []time.Duration
	completed, failing int
	runBytes           int64 // used_memory delta of the completed Runs
	never, done        []keyClass
	// runShared is what the Migration's keys that are no one Candidate's
	// grew by, per completed Run.
	runShared []keyClass
	// Pages.
	pages []pageRow
	// rewriteWait is how long the pages waited for a rewrite of Redis's
	// append-only file to end; pageRewrites how many ran during them.
	rewriteWait  time.Duration
	pageRewrites int64
	// discoverRewrites and deleteRewrites are the rewrites that ran (or
	// started) during the first discovery pass and during the delete: each
	// a fork, then a child process on one of the CPUs, and pages copied as
	// Redis writes on.
	discoverRewrites, deleteRewrites int64
	// pageStalls and deleteStalls are what Redis's latency monitor saw
	// take ≥ latencyThreshold during the pages and during the delete
	// (fork, fsync, a slow command...): Redis's own stalls, as against the
	// machine's.
	pageStalls, deleteStalls string
	// Delete: deleteTime runs until its keys were swept (the sweep goes on
	// in the background once DeleteMigration answered, after
	// deleteAnswered).
	deleteTime, deleteAnswered time.Duration
	// deleteErr is DeleteMigration's error, when it answered one; then
	// deleteTime runs until the Migration was gone.
	deleteErr string
	deleted   int64
	// readerCalls answered (readerFailed failed) while the delete ran;
	// readerLongest is the longest of them, readerStall the longest the
	// reader went without an answer.
	readerCalls   int
	readerLongest time.Duration
	readerFailed  int
	readerStall   time.Duration
	readerBase    percentiles
	// readerBaseStall is the longest the reader went without an answer in
	// the second before the delete: what the machine does to it anyway.
	readerBaseStall   time.Duration
	leftKeys          int
	leftBytes         int64 // used_memory after the delete − before the discovery
	leftClasses       []keyClass
	beforeUsed, after int64
}

// RunScale runs the store-at-scale bench and prints its figures.
func RunScale(ctx context.Context, cfg ScaleConfig) error {
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
	s, err := newScaleWorld(ctx, w, cfg, quiet)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.rc.ConfigSet(ctx, "latency-monitor-threshold", strconv.Itoa(int(latencyThreshold.Milliseconds()))).Err(); err != nil {
		return fmt.Errorf("redis latency monitor: %w", err)
	}
	// The slow log names the commands behind the monitor's "command"
	// events (the latency monitor says only how long).
	if err := s.rc.ConfigSet(ctx, "slowlog-log-slower-than", strconv.Itoa(int(latencyThreshold.Microseconds()))).Err(); err != nil {
		return fmt.Errorf("redis slow log: %w", err)
	}

	fmt.Fprintln(cfg.Progress, "scale: the reader's Migration (30 Candidates, 20 completed Runs: the warm-up)")
	reader, err := s.readerMigration(ctx)
	if err != nil {
		return fmt.Errorf("reader's Migration: %w", err)
	}
	var results []*scaleResult
	for i, n := range cfg.Sizes {
		m := fmt.Sprintf("scale-%d", n)
		if i > 0 && n == cfg.Sizes[i-1] {
			m += "-" + strconv.Itoa(i)
		}
		r, err := s.size(ctx, m, n, reader)
		if err != nil {
			return fmt.Errorf("%d Candidates: %w", n, err)
		}
		results = append(results, r)
	}
	printScale(cfg, results)
	return nil
}

// scaleWorld is the bench's clients on one `loom dev` environment.
type scaleWorld struct {
	cfg   ScaleConfig
	env   devenv.Env
	rc    *redis.Client
	log   *slog.Logger
	m     meter
	admin string
	// As an operator: reading, starting and cancelling Runs.
	disc loomv1connect.DiscoveryServiceClient
	runs loomv1connect.RunServiceClient
	// As a Migrator: submitting Candidates.
	submit loomv1connect.DiscoveryServiceClient
	// As an admin: deleting Migrations.
	registry loomv1connect.RegistryServiceClient
	stops    []func()
}

func newScaleWorld(ctx context.Context, w *world, cfg ScaleConfig, log *slog.Logger) (*scaleWorld, error) {
	s := &scaleWorld{cfg: cfg, env: w.env, log: log, m: w.m, rc: redis.NewClient(&redis.Options{Addr: w.env.RedisAddr})}
	hc := migratorsdk.DefaultHTTPClient()
	op := migratorsdk.WithToken(w.env.OperatorToken)
	s.disc = loomv1connect.NewDiscoveryServiceClient(hc, w.env.APIURL, op)
	s.runs = loomv1connect.NewRunServiceClient(hc, w.env.APIURL, op)
	s.submit = loomv1connect.NewDiscoveryServiceClient(hc, w.env.APIURL, migratorsdk.WithToken(w.env.MigratorToken))
	s.admin = w.env.AdminToken
	s.registry = loomv1connect.NewRegistryServiceClient(hc, w.env.APIURL, migratorsdk.WithToken(s.admin))
	return s, nil
}

func (s *scaleWorld) close() {
	for _, stop := range s.stops {
		stop()
	}
	s.rc.Close()
}

// marks tells the bench that a Run reached where it stops: its last step
// completed, or its first step failed.
type marks struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

func (k *marks) get(runID string) chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ch == nil {
		k.ch = map[string]chan struct{}{}
	}
	c, ok := k.ch[runID]
	if !ok {
		c = make(chan struct{})
		k.ch[runID] = c
	}
	return c
}

func (k *marks) done(runID string) {
	c := k.get(runID)
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-c:
	default:
		close(c)
	}
}

// migrator starts a Migrator of Migration m whose steps complete at once,
// except the first step of the Candidates fail says, which fails; it
// returns once the Migration is announced, and a func that stops it.
func (s *scaleWorld) migrator(ctx context.Context, m string, fail func(id string) bool, k *marks) (func(), error) {
	var defs []migratorsdk.Step
	for i := range s.cfg.Steps {
		defs = append(defs, migratorsdk.Step{Name: "step-" + strconv.Itoa(i+1), Type: "instant"})
	}
	last := s.cfg.Steps - 1
	spec := migratorsdk.Spec{
		Migration: migratorsdk.Migration{ID: m, Name: "Scale " + m, Steps: defs},
		Handlers: map[string]migratorsdk.StepHandler{"instant": func(ctx context.Context, d *migratorsdk.Dispatch) error {
			if d.StepIndex == 0 && fail(d.Candidate.ID) {
				err := d.Failed(ctx, "bench: held here")
				k.done(d.RunID)
				return err
			}
			if err := d.Completed(ctx); err != nil {
				return err
			}
			if d.StepIndex == last {
				k.done(d.RunID)
			}
			return nil
		}},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mg, err := migratorsdk.New(spec, migratorsdk.Options{LoomURL: s.env.APIURL, Token: s.env.MigratorToken,
		ListenAddr: l.Addr().String(), Logger: s.log, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		l.Close()
		return nil, err
	}
	mctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- mg.Serve(mctx, l) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-served }) }
	for deadline := time.Now().Add(time.Minute); ; {
		_, err := s.registry.GetMigration(ctx, connect.NewRequest(&loomv1.GetMigrationRequest{MigrationId: m}))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("migration %s not announced in a minute: %w", m, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stops = append(s.stops, stop)
	return stop, nil
}

// readerMigration makes the small Migration the delete's concurrent
// reader reads: 30 Candidates, 20 of them with a completed Run. Those Runs
// and a few pages warm the server up before the first size is measured.
func (s *scaleWorld) readerMigration(ctx context.Context) (*fleet, error) {
	const m = "scale-reader"
	f := newFleet(30)
	var k marks
	if _, err := s.migrator(ctx, m, func(string) bool { return false }, &k); err != nil {
		return nil, err
	}
	if _, err := s.submit.SubmitCandidates(ctx, connect.NewRequest(f.request(m, 0, len(f.ids), "reader"))); err != nil {
		return nil, err
	}
	for _, id := range f.ids[:20] {
		runID := m + "__" + id
		c := k.get(runID)
		if _, err := s.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: m, CandidateId: id})); err != nil {
			return nil, err
		}
		if err := await(ctx, c, time.Minute); err != nil {
			return nil, fmt.Errorf("run %s: %w", runID, err)
		}
	}
	for i := range 50 {
		req := &loomv1.ListCandidatesRequest{MigrationId: m, Metadata: map[string]string{"team": teamName(i % scaleTeams)}}
		if _, err := s.disc.ListCandidates(ctx, connect.NewRequest(req)); err != nil {
			return nil, err
		}
	}
	return f, s.awaitTotal(ctx, &loomv1.ListCandidatesRequest{MigrationId: m, Status: loomv1.CandidateStatus_CANDIDATE_STATUS_COMPLETED}, 20)
}

func await(ctx context.Context, c chan struct{}, d time.Duration) error {
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return fmt.Errorf("not there in %v", d)
	}
}

// size measures one size in a fresh Migration m.
func (s *scaleWorld) size(ctx context.Context, m string, n int, reader *fleet) (*scaleResult, error) {
	r := &scaleResult{n: n, migration: m}
	p := s.cfg.Progress
	f := newFleet(n)
	starts := min(s.cfg.Starts, n/2)
	// The Candidates started, spread over the fleet; every fourth fails.
	var started []int
	fail := map[string]bool{}
	for j := range starts {
		i := j * n / starts
		started = append(started, i)
		if j%4 == 3 {
			fail[f.ids[i]] = true
		}
	}
	var failMu sync.Mutex
	var k marks
	stopMigrator, err := s.migrator(ctx, m, func(id string) bool { failMu.Lock(); defer failMu.Unlock(); return fail[id] }, &k)
	if err != nil {
		return nil, err
	}
	settleRedis()
	if r.beforeUsed, err = s.usedMemory(ctx); err != nil {
		return nil, err
	}

	// Discovery, as a Migrator submits one pass.
	fmt.Fprintf(p, "%s: discovering %d Candidates in requests of %d\n", m, n, s.cfg.Batch)
	s.m.reset()
	rewrites, err := s.rewriteMark(ctx)
	if err != nil {
		return nil, err
	}
	before := s.m.read()
	if r.submits, r.submitsServer, r.submitsFailed, err = s.discover(ctx, f, m, "first", func(res *loomv1.SubmitCandidatesResponse) { r.added += int(res.GetAddedCount()) }); err != nil {
		return nil, err
	}
	after := s.m.read()
	if r.discoverRewrites, err = s.rewritesSince(ctx, rewrites); err != nil {
		return nil, err
	}
	r.discoverCPU, r.discoverRedis = after.cpu-before.cpu, after.redisCPU-before.redisCPU
	r.discover, r.lastSubmit = sum(r.submits), r.submits[len(r.submits)-1]
	if r.added != n {
		return nil, fmt.Errorf("discovery added %d Candidates, not %d", r.added, n)
	}
	fmt.Fprintf(p, "  %.0f Candidates/s\n", float64(n)/r.discover.Seconds())
	settleRedis()
	used, err := s.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	r.restBytes = used - r.beforeUsed

	fmt.Fprintf(p, "%s: the same pass again, unchanged\n", m)
	if r.resubmits, _, r.resubmitsFailed, err = s.discover(ctx, f, m, "second", func(res *loomv1.SubmitCandidatesResponse) { r.unchanged += int(res.GetUnchangedCount()) }); err != nil {
		return nil, err
	}
	r.rediscover, r.lastResubmit = sum(r.resubmits), r.resubmits[len(r.resubmits)-1]
	fmt.Fprintf(p, "  %.0f Candidates/s (%d unchanged)\n", float64(n)/r.rediscover.Seconds(), r.unchanged)
	settleRedis()
	if used, err = s.usedMemory(ctx); err != nil {
		return nil, err
	}
	r.rediscoverBytes = used - r.beforeUsed

	fmt.Fprintf(p, "%s: Redis keys at rest\n", m)
	tag := "loom:{" + m + "}:"
	if r.restClasses, r.restKeys, err = scanClasses(ctx, s.rc, tag); err != nil {
		return nil, err
	}

	// Runs: the completing ones first, one at a time, so that the memory
	// they add is theirs alone; then the failing ones.
	fmt.Fprintf(p, "%s: %d Runs started one at a time (%d held at a failed first step)\n", m, starts, len(fail))
	startOne := func(i int) error {
		id := f.ids[i]
		runID := m + "__" + id
		c := k.get(runID)
		t0 := time.Now()
		if _, err := s.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: m, CandidateId: id})); err != nil {
			return fmt.Errorf("start %s: %w", id, err)
		}
		r.startLat = append(r.startLat, time.Since(t0))
		if err := await(ctx, c, time.Minute); err != nil {
			return fmt.Errorf("run %s: %w", runID, err)
		}
		return nil
	}
	settleRedis()
	if used, err = s.usedMemory(ctx); err != nil {
		return nil, err
	}
	for _, i := range started {
		if fail[f.ids[i]] {
			continue
		}
		if err := startOne(i); err != nil {
			return nil, err
		}
		f.status[i] = loomv1.CandidateStatus_CANDIDATE_STATUS_COMPLETED
		r.completed++
	}
	if err := s.awaitTotal(ctx, &loomv1.ListCandidatesRequest{MigrationId: m, Status: loomv1.CandidateStatus_CANDIDATE_STATUS_COMPLETED}, r.completed); err != nil {
		return nil, err
	}
	settleRedis()
	used2, err := s.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	r.runBytes = used2 - used
	// Where a completed Run's bytes went: a sample of never-run and of
	// completed Candidates' own keys, and the Migration's other keys.
	for j, i := range started {
		if !fail[f.ids[i]] && len(f.completed) < 20 {
			f.completed = append(f.completed, f.ids[i])
		}
		if len(f.never) < 20 && i+1 < n && (j+1 == len(started) || started[j+1] != i+1) {
			f.never = append(f.never, f.ids[i+1])
		}
	}
	classes, _, err := scanClasses(ctx, s.rc, tag)
	if err != nil {
		return nil, err
	}
	if r.never, err = ownKeys(ctx, s.rc, tag, classes, f.never); err != nil {
		return nil, err
	}
	if r.done, err = ownKeys(ctx, s.rc, tag, classes, f.completed); err != nil {
		return nil, err
	}
	r.runShared = sharedDelta(r.restClasses, classes, r.completed)
	for _, i := range started {
		if !fail[f.ids[i]] {
			continue
		}
		if err := startOne(i); err != nil {
			return nil, err
		}
		f.status[i] = loomv1.CandidateStatus_CANDIDATE_STATUS_RUNNING
		f.failed[i] = true
		r.failing++
	}
	if err := s.awaitTotal(ctx, &loomv1.ListCandidatesRequest{MigrationId: m, CurrentStepStatus: loomv1.StepStatus_STEP_STATUS_FAILED}, r.failing); err != nil {
		return nil, err
	}
	// The Run views and history are written in the background: let them
	// land before the pages are timed. The discovery's writes may have
	// started a rewrite of Redis's append-only file (it doubled): a child
	// process that takes one of the two CPUs for seconds, as it would after
	// any bulk load. The pages are timed once it is done, and the rewrites
	// during them are counted.
	time.Sleep(2 * time.Second)
	if r.rewriteWait, err = s.awaitNoRewrite(ctx); err != nil {
		return nil, err
	}
	rewritesBefore, err := s.rewriteMark(ctx)
	if err != nil {
		return nil, err
	}

	fmt.Fprintf(p, "%s: ListCandidates pages of 100, %d per filter and pair of filters\n", m, s.cfg.Pages)
	s.resetStalls(ctx)
	stopProfile, err := profile(s.cfg.ProfileDir, m+"-pages.pprof")
	if err != nil {
		return nil, err
	}
	r.pages, err = s.listPages(ctx, m, f)
	stopProfile()
	if err != nil {
		return nil, err
	}
	r.pageStalls = s.latencyEvents(ctx)
	if r.pageRewrites, err = s.rewritesSince(ctx, rewritesBefore); err != nil {
		return nil, err
	}

	fmt.Fprintf(p, "%s: cancelling the held Runs, then DeleteMigration while a reader reads %s\n", m, "scale-reader")
	for _, i := range started {
		if !fail[f.ids[i]] {
			continue
		}
		if _, err := s.runs.CancelRun(ctx, connect.NewRequest(&loomv1.CancelRunRequest{RunId: m + "__" + f.ids[i], Reason: "bench: delete"})); err != nil {
			return nil, fmt.Errorf("cancel %s: %w", f.ids[i], err)
		}
	}
	if err := s.awaitTotal(ctx, &loomv1.ListCandidatesRequest{MigrationId: m, Status: loomv1.CandidateStatus_CANDIDATE_STATUS_RUNNING}, 0); err != nil {
		return nil, err
	}
	stopMigrator()
	s.resetStalls(ctx)
	if rewritesBefore, err = s.rewriteMark(ctx); err != nil {
		return nil, err
	}
	if stopProfile, err = profile(s.cfg.ProfileDir, m+"-delete.pprof"); err != nil {
		return nil, err
	}
	err = s.deleteUnderRead(ctx, r, reader)
	stopProfile()
	if err != nil {
		return nil, err
	}
	r.deleteStalls = s.latencyEvents(ctx)
	if r.deleteRewrites, err = s.rewritesSince(ctx, rewritesBefore); err != nil {
		return nil, err
	}
	settleRedis()
	if r.after, err = s.usedMemory(ctx); err != nil {
		return nil, err
	}
	r.leftBytes = r.after - r.beforeUsed
	if r.leftClasses, r.leftKeys, err = scanClasses(ctx, s.rc, tag); err != nil {
		return nil, err
	}
	fmt.Fprintf(p, "  answered in %v, swept in %v; the reader went %v without an answer\n", r.deleteAnswered.Round(time.Millisecond),
		r.deleteTime.Round(time.Millisecond), r.readerStall.Round(time.Millisecond))
	return r, nil
}

// discover submits one discovery pass of f to m, named round, as a
// Migrator does (requests one after another, the last complete, a failed
// request tried again a second later, up to 5 times), and returns each
// request's time from its first try to its answer (building a request is
// not timed) and how many tries failed.
func (s *scaleWorld) discover(ctx context.Context, f *fleet, m, round string, each func(*loomv1.SubmitCandidatesResponse)) (rtt, server []time.Duration, failed int, err error) {
	var out []time.Duration
	for start := 0; start < len(f.ids); start += s.cfg.Batch {
		req := f.request(m, start, min(start+s.cfg.Batch, len(f.ids)), round)
		t0 := time.Now()
		for try := 1; ; try++ {
			res, err := s.submit.SubmitCandidates(ctx, connect.NewRequest(req))
			if err == nil {
				out = append(out, time.Since(t0))
				server = append(server, serverTiming(res.Header()))
				each(res.Msg)
				break
			}
			failed++
			fmt.Fprintf(s.cfg.Progress, "  submitting Candidates %d–%d (round %s) failed after %v: %v\n", start, start+len(req.Candidates), round, time.Since(t0).Round(time.Millisecond), err)
			if try == 5 || ctx.Err() != nil {
				return nil, nil, failed, fmt.Errorf("submit Candidates %d–%d (round %s): %w", start, start+len(req.Candidates), round, err)
			}
			time.Sleep(time.Second)
		}
	}
	return out, server, failed, nil
}

// serverTiming is the time the server says it spent on a call (its
// Server-Timing header, "handler;dur=<ms>"), 0 when it says none.
func serverTiming(h http.Header) time.Duration {
	v, ok := strings.CutPrefix(h.Get("Server-Timing"), "handler;dur=")
	ms, err := strconv.ParseFloat(v, 64)
	if !ok || err != nil {
		return 0
	}
	return time.Duration(ms * float64(time.Millisecond))
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

// awaitTotal waits until the listing req matches want Candidates (Run views
// are written in the background).
func (s *scaleWorld) awaitTotal(ctx context.Context, req *loomv1.ListCandidatesRequest, want int) error {
	req.PageSize = 1
	var got int64
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		res, err := s.disc.ListCandidates(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		if got = res.Msg.GetTotalSize(); got == int64(want) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("ListCandidates %v: %d, not %d, after a minute", req, got, want)
}

// deleteUnderRead deletes r's Migration as an admin while a reader loops
// GetRun and GetCandidate on the reader's Migration.
func (s *scaleWorld) deleteUnderRead(ctx context.Context, r *scaleResult, reader *fleet) error {
	// A call that failed (Loom waited on Redis past its timeout, say) is a
	// stall too, and is counted.
	type call struct {
		start, end time.Time
		failed     bool
	}
	var calls []call
	stop := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		id := reader.ids[0]
		runID := "scale-reader__" + id
		for i := 0; ; i++ {
			select {
			case <-stop:
				readerDone <- nil
				return
			default:
			}
			t0 := time.Now()
			var err error
			if i%2 == 0 {
				_, err = s.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: runID}))
			} else {
				_, err = s.disc.GetCandidate(ctx, connect.NewRequest(&loomv1.GetCandidateRequest{MigrationId: "scale-reader", CandidateId: id}))
			}
			calls = append(calls, call{t0, time.Now(), err != nil})
		}
	}()
	time.Sleep(time.Second)
	t0 := time.Now()
	res, err := s.registry.DeleteMigration(ctx, connect.NewRequest(&loomv1.DeleteMigrationRequest{MigrationId: r.migration}))
	if err != nil {
		// Loom gave up on the delete (Redis did not answer in time, say):
		// it is measured until the Migration is gone.
		r.deleteErr = err.Error()
		fmt.Fprintf(s.cfg.Progress, "  DeleteMigration answered after %v: %v\n", time.Since(t0).Round(time.Millisecond), err)
		for deadline := time.Now().Add(10 * time.Minute); ; {
			_, gerr := s.registry.GetMigration(ctx, connect.NewRequest(&loomv1.GetMigrationRequest{MigrationId: r.migration}))
			if connect.CodeOf(gerr) == connect.CodeNotFound {
				err = nil
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	answered := time.Since(t0)
	// The Migration is gone from every read; its keys are swept in the
	// background, and the reader reads on until the tombstone, the sweep's
	// last key, is gone too.
	tombstone := "loom:{" + r.migration + "}:deleting"
	for deadline := time.Now().Add(10 * time.Minute); err == nil; {
		n, xerr := s.rc.Exists(ctx, tombstone).Result()
		if xerr == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			err = fmt.Errorf("its keys were not swept within 10 minutes (%v)", xerr)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	t1 := time.Now()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	if rerr := <-readerDone; rerr != nil {
		return rerr
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", r.migration, err)
	}
	r.deleteTime, r.deleteAnswered = t1.Sub(t0), answered
	if res != nil {
		r.deleted = res.Msg.GetDeletedCandidates()
	}
	// The stall is the longest the reader went without an answer while the
	// delete ran: from one successful call's end (or its first call's
	// start) to the next's, over the stretches that overlap the delete.
	var base []time.Duration
	prev := calls[0].start
	for _, c := range calls {
		d := c.end.Sub(c.start)
		switch {
		case c.end.Before(t0):
			if c.failed {
				return fmt.Errorf("the reader's calls fail before the delete (%s)", r.migration)
			}
			base = append(base, d)
		case c.start.After(t1):
		default: // overlaps the delete
			r.readerLongest = max(r.readerLongest, d)
			switch {
			case c.failed:
				r.readerFailed++
			case !c.end.After(t1):
				r.readerCalls++
			}
		}
		if !c.failed {
			if prev.Before(t1) && c.end.After(t0) {
				r.readerStall = max(r.readerStall, c.end.Sub(prev))
			}
			if c.end.Before(t0) {
				r.readerBaseStall = max(r.readerBaseStall, c.end.Sub(prev))
			}
			prev = c.end
		}
	}
	r.readerBase = percentilesOf(base)
	return nil
}

// resetStalls clears Redis's latency monitor and slow log, so that
// latencyEvents says what happened since.
func (s *scaleWorld) resetStalls(ctx context.Context) {
	s.rc.Do(ctx, "LATENCY", "RESET")
	s.rc.SlowLogReset(ctx)
}

// latencyThreshold is the least stall Redis's latency monitor records.
const latencyThreshold = 5 * time.Millisecond

// latencyEvents says what Redis's latency monitor recorded since its last
// LATENCY RESET: each event with its longest stall and how many times it
// was the latest ("none" when nothing took latencyThreshold).
func (s *scaleWorld) latencyEvents(ctx context.Context) string {
	res, err := s.rc.Do(ctx, "LATENCY", "LATEST").Slice()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	var out []string
	for _, e := range res {
		// [event, time of the latest, latest ms, max ms]
		f, ok := e.([]any)
		if !ok || len(f) < 4 {
			continue
		}
		out = append(out, fmt.Sprintf("%v (longest %v ms)", f[0], f[3]))
	}
	if len(out) == 0 {
		return "none"
	}
	slices.Sort(out)
	return strings.Join(out, ", ") + s.slowCommands(ctx)
}

// slowCommands lists what Redis's slow log holds (commands that took
// latencyThreshold or more since resetStalls), slowest first, each by its
// name and first key (a script's first key says which script it is):
// "; slowest commands: EVALSHA loom:{m}:deleting 12 ms, …".
func (s *scaleWorld) slowCommands(ctx context.Context) string {
	logs, err := s.rc.SlowLogGet(ctx, 128).Result()
	if err != nil || len(logs) == 0 {
		return ""
	}
	slices.SortFunc(logs, func(a, b redis.SlowLog) int { return cmp.Compare(b.Duration, a.Duration) })
	var out []string
	for _, l := range logs[:min(len(logs), 5)] {
		what := strings.ToUpper(l.Args[0])
		switch {
		case (what == "EVALSHA" || what == "EVAL") && len(l.Args) > 3 && l.Args[2] != "0":
			what += " " + l.Args[3]
		case len(l.Args) > 1:
			what += " " + l.Args[1]
		}
		out = append(out, fmt.Sprintf("%s %v", what, l.Duration.Round(100*time.Microsecond)))
	}
	return "; slowest commands: " + strings.Join(out, ", ")
}

// persistence reads an integer field of INFO persistence.
func (s *scaleWorld) persistence(ctx context.Context, field string) (int64, error) {
	info, err := s.rc.Info(ctx, "persistence").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO persistence has no %s", field)
}

// rewriteMark is the count of Redis's rewrites of its append-only file
// so far, for rewritesSince.
func (s *scaleWorld) rewriteMark(ctx context.Context) (int64, error) {
	return s.persistence(ctx, "aof_rewrites")
}

// rewritesSince counts the rewrites of Redis's append-only file since
// mark (rewriteMark): those that ended, and the one running now.
func (s *scaleWorld) rewritesSince(ctx context.Context, mark int64) (int64, error) {
	done, err := s.rewriteMark(ctx)
	if err != nil {
		return 0, err
	}
	busy, err := s.persistence(ctx, "aof_rewrite_in_progress")
	if err != nil {
		return 0, err
	}
	return done - mark + busy, nil
}

// awaitNoRewrite waits until Redis rewrites no append-only file and has
// none scheduled (at most two minutes), and says how long it waited.
func (s *scaleWorld) awaitNoRewrite(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	for {
		busy, err := s.persistence(ctx, "aof_rewrite_in_progress")
		if err != nil {
			return 0, err
		}
		scheduled, err := s.persistence(ctx, "aof_rewrite_scheduled")
		if err != nil {
			return 0, err
		}
		if busy == 0 && scheduled == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > 2*time.Minute {
			return 0, errors.New("Redis has rewritten its append-only file for two minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settleRedis lets the writes in flight land before used_memory is read.
func settleRedis() { time.Sleep(500 * time.Millisecond) }

func (s *scaleWorld) usedMemory(ctx context.Context) (int64, error) {
	info, err := s.rc.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory has no used_memory")
}

// pageRow is one filter, pair of filters or order of ListCandidates.
type pageRow struct {
	name string
	pair bool
	lat  []time.Duration
	// server is the server's own time of each call (Server-Timing).
	server []time.Duration
	// total is the first call's total_size, want what it should be;
	// estimated is its total_size_is_estimate.
	total, want int64
	estimated   bool
}

// listFilter is one filter of ListCandidates, whose value may change from
// call to call.
type listFilter struct {
	name  string
	set   func(req *loomv1.ListCandidatesRequest, call int)
	match func(i, call int) bool
}

func (s *scaleWorld) listPages(ctx context.Context, m string, f *fleet) ([]pageRow, error) {
	n := len(f.ids)
	repo := func(call int) int { return (call*7919 + 13) % n }
	setMeta := func(req *loomv1.ListCandidatesRequest, k, v string) {
		if req.Metadata == nil {
			req.Metadata = map[string]string{}
		}
		req.Metadata[k] = v
	}
	filters := []listFilter{
		{"status = not_started", func(req *loomv1.ListCandidatesRequest, _ int) {
			req.Status = loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED
		}, func(i, _ int) bool { return f.status[i] == loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED }},
		{"kind (1 of 4)", func(req *loomv1.ListCandidatesRequest, call int) { req.Kind = scaleKinds[call%len(scaleKinds)] },
			func(i, call int) bool { return int(f.kind[i]) == call%len(scaleKinds) }},
		{"metadata team (1 of 20)", func(req *loomv1.ListCandidatesRequest, call int) { setMeta(req, "team", teamName(call%scaleTeams)) },
			func(i, call int) bool { return int(f.team[i]) == call%scaleTeams }},
		{"metadata repo (unique)", func(req *loomv1.ListCandidatesRequest, call int) { setMeta(req, "repo", repoURL(f.ids[repo(call)])) },
			func(i, call int) bool { return i == repo(call) }},
		{"id prefix (1 of 10)", func(req *loomv1.ListCandidatesRequest, call int) {
			req.IdPrefix = fmt.Sprintf("org-%d/", call%scaleOrgs)
		},
			func(i, call int) bool { return int(f.org[i]) == call%scaleOrgs }},
		{"current step status = failed", func(req *loomv1.ListCandidatesRequest, _ int) {
			req.CurrentStepStatus = loomv1.StepStatus_STEP_STATUS_FAILED
		}, func(i, _ int) bool { return f.failed[i] }},
		{"current step = step-1", func(req *loomv1.ListCandidatesRequest, _ int) { req.CurrentStep = f.firstStep },
			func(i, _ int) bool { return f.failed[i] }},
	}
	orders := []struct {
		name string
		o    loomv1.CandidateOrder
	}{{"status", loomv1.CandidateOrder_CANDIDATE_ORDER_STATUS}, {"current step", loomv1.CandidateOrder_CANDIDATE_ORDER_CURRENT_STEP},
		{"last change", loomv1.CandidateOrder_CANDIDATE_ORDER_LAST_CHANGE}}
	type rowSpec struct {
		name  string
		pair  bool
		fs    []listFilter
		order loomv1.CandidateOrder
	}
	specs := []rowSpec{{name: "none (by id)"}}
	for _, fl := range filters {
		specs = append(specs, rowSpec{name: fl.name, fs: []listFilter{fl}})
	}
	for _, o := range orders {
		specs = append(specs, rowSpec{name: "order by " + o.name, order: o.o})
	}
	for _, o := range orders {
		specs = append(specs, rowSpec{name: "order by " + o.name + " + team", fs: []listFilter{filters[2]}, order: o.o, pair: true})
	}
	for a := range filters {
		for b := a + 1; b < len(filters); b++ {
			specs = append(specs, rowSpec{name: filters[a].name + " + " + filters[b].name, fs: []listFilter{filters[a], filters[b]}, pair: true})
		}
	}
	var rows []pageRow
	for _, sp := range specs {
		row := pageRow{name: sp.name, pair: sp.pair}
		for i := range n {
			ok := true
			for _, fl := range sp.fs {
				ok = ok && fl.match(i, 0)
			}
			if ok {
				row.want++
			}
		}
		for call := range s.cfg.Pages {
			req := &loomv1.ListCandidatesRequest{MigrationId: m, PageSize: 100, OrderBy: sp.order}
			for _, fl := range sp.fs {
				fl.set(req, call)
			}
			t0 := time.Now()
			res, err := s.disc.ListCandidates(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", sp.name, err)
			}
			row.lat = append(row.lat, time.Since(t0))
			row.server = append(row.server, serverTiming(res.Header()))
			if call == 0 {
				row.total, row.estimated = res.Msg.GetTotalSize(), res.Msg.GetTotalSizeIsEstimate()
				if got, want := len(res.Msg.GetCandidates()), min(100, int(row.want)); got != want {
					return nil, fmt.Errorf("list %s: a page of %d Candidates, want %d", sp.name, got, want)
				}
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// keyClass is the keys of one shape (a Candidate id in it is <c>, a team
// <team>), how many and their bytes (MEMORY USAGE: every key of a class of
// up to 20, else the mean of 20 × the count).
type keyClass struct {
	pattern string
	keys    int
	bytes   int64
	sample  []string
}

// classify names the shape of a key of the bench's Migrations.
func classify(key, tag string) string {
	k := strings.TrimPrefix(key, tag)
	var b strings.Builder
	for len(k) > 0 {
		switch {
		case strings.HasPrefix(k, "org-") && strings.Contains(k, "/svc-"):
			// org-<o>/svc-<7 digits>
			j := strings.Index(k, "/svc-") + len("/svc-")
			for j < len(k) && k[j] >= '0' && k[j] <= '9' {
				j++
			}
			b.WriteString("<c>")
			k = k[j:]
		case strings.HasPrefix(k, "team-") && len(k) >= 7:
			b.WriteString("<team>")
			k = k[7:]
		default:
			b.WriteByte(k[0])
			k = k[1:]
		}
	}
	return b.String()
}

// scanClasses finds every key under tag and sizes each class of them.
func scanClasses(ctx context.Context, rc *redis.Client, tag string) ([]keyClass, int, error) {
	byPattern := map[string]*keyClass{}
	var order []string
	total := 0
	iter := rc.Scan(ctx, 0, tag+"*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		total++
		p := classify(key, tag)
		c, ok := byPattern[p]
		if !ok {
			c = &keyClass{pattern: p}
			byPattern[p] = c
			order = append(order, p)
		}
		c.keys++
		if len(c.sample) < 20 {
			c.sample = append(c.sample, key)
		}
	}
	if err := iter.Err(); err != nil {
		return nil, 0, err
	}
	out := make([]keyClass, 0, len(order))
	for _, p := range order {
		c := byPattern[p]
		var sum int64
		for _, key := range c.sample {
			b, err := rc.MemoryUsage(ctx, key, 0).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return nil, 0, err
			}
			sum += b
		}
		c.bytes = sum * int64(c.keys) / int64(len(c.sample))
		out = append(out, *c)
	}
	sortClasses(out)
	return out, total, nil
}

// sharedDelta is how much each class of keys that no Candidate's id names
// grew from before to after, per Run of runs (exact for a class of up to
// 20 keys, whose every key is sized).
func sharedDelta(before, after []keyClass, runs int) []keyClass {
	was := map[string]keyClass{}
	for _, c := range before {
		was[c.pattern] = c
	}
	var out []keyClass
	for _, c := range after {
		if strings.Contains(c.pattern, "<c>") {
			continue
		}
		d := keyClass{pattern: c.pattern, keys: c.keys - was[c.pattern].keys, bytes: (c.bytes - was[c.pattern].bytes) / int64(max(1, runs))}
		if d.bytes != 0 || d.keys != 0 {
			out = append(out, d)
		}
	}
	sortClasses(out)
	return out
}

func sortClasses(cs []keyClass) {
	for i := 1; i < len(cs); i++ { // biggest first
		for j := i; j > 0 && cs[j].bytes > cs[j-1].bytes; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

// ownKeys sizes the keys of each class whose name holds one Candidate's
// id, for the Candidates ids: the mean per Candidate (a class a Candidate
// has no key of counts 0 for it).
func ownKeys(ctx context.Context, rc *redis.Client, tag string, classes []keyClass, ids []string) ([]keyClass, error) {
	var out []keyClass
	for _, c := range classes {
		if !strings.Contains(c.pattern, "<c>") {
			continue
		}
		kc := keyClass{pattern: c.pattern}
		for _, id := range ids {
			key := tag + strings.ReplaceAll(c.pattern, "<c>", id)
			b, err := rc.MemoryUsage(ctx, key, 0).Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return nil, err
			}
			kc.keys++
			kc.bytes += b
		}
		if len(ids) > 0 {
			kc.bytes /= int64(len(ids))
		}
		out = append(out, kc)
	}
	sortClasses(out)
	return out, nil
}
