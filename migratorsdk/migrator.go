package migratorsdk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sync"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	migratorv1 "github.com/loomhq/loom/gen/loom/migrator/v1"
	"github.com/loomhq/loom/gen/loom/migrator/v1/migratorv1connect"
)

// DiscoverFunc returns every Candidate the Migrator finds today. The SDK
// submits them to Loom in batches, as one discovery pass: Candidates of
// earlier passes that are missing are flagged "no longer discovered" (never
// dropped), and Candidates already running or completed are left alone.
type DiscoverFunc func(ctx context.Context) ([]Candidate, error)

// MergeCheckFunc says whether the pull request of an open step was merged.
// The SDK calls it at start and then every Options.MergeCheckEvery for
// every open step of the Migration (read from Loom, so it survives Migrator
// restarts) and reports Merged when it says so. An error wrapping ErrClosed
// means the pull request was closed without being merged: the SDK reports
// the step Failed with the error's message, for an operator to act on.
// Other errors are logged and the step is checked again next time.
type MergeCheckFunc func(ctx context.Context, s OpenStep) (merged bool, err error)

// ErrClosed is what a MergeCheckFunc wraps when a step's pull request was
// closed without being merged, e.g.
// fmt.Errorf("%w: %s was closed by a reviewer", migratorsdk.ErrClosed, url).
var ErrClosed = errors.New("pull request closed without merge")

// Spec is a Migrator: its Migration, a handler per step type, and the
// optional preview, discovery and merge check.
type Spec struct {
	Migration Migration
	// Handlers execute the steps, by step type. Every type used by the
	// Migration's steps needs one.
	Handlers map[string]StepHandler
	// Preview answers Loom's previews; nil answers "unimplemented".
	Preview PreviewFunc
	// Discover finds the Candidates; nil submits none.
	Discover DiscoverFunc
	// CheckMerged detects merged pull requests; nil leaves that to the
	// handlers (d.Merged) or to operators.
	CheckMerged MergeCheckFunc
}

// Options say where the Migrator meets Loom. Only LoomURL is required.
type Options struct {
	// LoomURL is Loom's API, e.g. "http://localhost:8080".
	LoomURL string
	// ListenAddr is where Run serves MigratorService; default
	// "127.0.0.1:9090".
	ListenAddr string
	// AdvertiseURL is the URL Loom calls this Migrator at (the Migration's
	// migrator_url); default "http://" + ListenAddr (127.0.0.1 for an empty
	// host).
	AdvertiseURL string
	// HTTPClient calls Loom; default DefaultHTTPClient().
	HTTPClient *http.Client
	// Token authenticates the Migrator to Loom (a token of the migrator
	// role); empty for a Loom that does not authenticate callers.
	Token string
	// ClientOptions are added to every call to Loom (interceptors, headers).
	ClientOptions []connect.ClientOption
	// Logger receives the Migrator's logs; default slog.Default().
	Logger *slog.Logger
	// DiscoverEvery repeats discovery; 0 discovers once, at start.
	DiscoverEvery time.Duration
	// MergeCheckEvery is how often CheckMerged runs after the check at
	// start; default 15 s. In tests against migratortest, make it short
	// (e.g. 100 ms): a merge is seen at the next check.
	MergeCheckEvery time.Duration
	// ShutdownTimeout bounds how long a stop waits for handlers in flight
	// before cancelling them; default 30 s.
	ShutdownTimeout time.Duration
	// Routes are served beside MigratorService on Run's (or Serve's)
	// listener, by http.ServeMux pattern, e.g. a code host's webhook:
	// {"POST /webhooks/github": hook}. Loom's signature is not checked on
	// them: they authenticate their callers themselves.
	Routes map[string]http.Handler
}

// Migrator serves a Spec: it announces the Migration, discovers Candidates,
// executes dispatched steps and answers previews.
type Migrator struct {
	spec Spec
	opts Options
	// advertiseListener: AdvertiseURL was derived from ListenAddr, so it is
	// derived again from the port actually bound (ListenAddr ":0").
	advertiseListener bool
	log               *slog.Logger
	client            *Client
	seen              *seenDispatches
	verify            *verifier

	// work is the context of the handlers; cancelled after ShutdownTimeout.
	work       context.Context
	cancelWork context.CancelFunc
	running    sync.WaitGroup
}

var (
	slugPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	typePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)
	// inputPattern is Loom's rule for input names (InputDefinition.name).
	inputPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)
)

// New checks spec and opts and returns the Migrator. It fails fast, saying
// every reason at once, on what would only fail later in Loom or at the
// first dispatch: invalid ids, names or lengths, duplicate step or input
// names, a step type without handler, a handler no step uses, a LoomURL or
// AdvertiseURL that is not an http(s) URL.
func New(spec Spec, opts Options) (*Migrator, error) {
	m := spec.Migration
	var errs []error
	if opts.LoomURL == "" {
		errs = append(errs, errors.New("Options.LoomURL is required"))
	} else if !httpURL(opts.LoomURL) {
		errs = append(errs, fmt.Errorf("Options.LoomURL %q: want an http(s) URL such as http://localhost:8080", opts.LoomURL))
	}
	if opts.AdvertiseURL != "" && !httpURL(opts.AdvertiseURL) {
		errs = append(errs, fmt.Errorf("Options.AdvertiseURL %q: want the http(s) URL Loom reaches this Migrator at", opts.AdvertiseURL))
	}
	for pattern, h := range opts.Routes {
		if h == nil || pattern == "" {
			errs = append(errs, fmt.Errorf("Options.Routes[%q]: a pattern and a handler are required", pattern))
		}
	}
	if !slugPattern.MatchString(m.ID) {
		errs = append(errs, fmt.Errorf("migration id %q: lowercase letters, digits and inner hyphens, 1-63 characters", m.ID))
	}
	if m.Name == "" || utf8.RuneCountInString(m.Name) > 200 {
		errs = append(errs, errors.New("migration name: 1-200 characters"))
	}
	if utf8.RuneCountInString(m.Description) > 2000 || utf8.RuneCountInString(m.Overview) > 65536 {
		errs = append(errs, errors.New("migration description: at most 2,000 characters; overview: at most 65,536"))
	}
	if len(m.Steps) == 0 || len(m.Steps) > 100 {
		errs = append(errs, fmt.Errorf("a migration has 1 to 100 steps, not %d", len(m.Steps)))
	}
	if len(m.Inputs) > 50 {
		errs = append(errs, fmt.Errorf("a migration has at most 50 inputs, not %d", len(m.Inputs)))
	}
	inputs := map[string]bool{}
	for _, in := range m.Inputs {
		if !inputPattern.MatchString(in.Name) {
			errs = append(errs, fmt.Errorf("input name %q: a letter, then letters, digits, '_', '.' and '-', 1-64 characters", in.Name))
		}
		if inputs[in.Name] {
			errs = append(errs, fmt.Errorf("input name %q appears twice", in.Name))
		}
		inputs[in.Name] = true
	}
	if opts.DiscoverEvery < 0 || opts.MergeCheckEvery < 0 || opts.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("Options.DiscoverEvery, MergeCheckEvery and ShutdownTimeout cannot be negative"))
	}
	names := map[string]bool{}
	used := map[string]bool{}
	for _, s := range m.Steps {
		if !slugPattern.MatchString(s.Name) {
			errs = append(errs, fmt.Errorf("step name %q: lowercase letters, digits and inner hyphens, 1-63 characters", s.Name))
		}
		if names[s.Name] {
			errs = append(errs, fmt.Errorf("step name %q appears twice", s.Name))
		}
		names[s.Name] = true
		if !typePattern.MatchString(s.Type) {
			errs = append(errs, fmt.Errorf("step %q: type %q: lowercase letters, digits, '.', '_' and '-'", s.Name, s.Type))
		}
		if len(s.Config) > 100 {
			errs = append(errs, fmt.Errorf("step %q: at most 100 config entries", s.Name))
		}
		if s.ReportTimeout < 0 {
			errs = append(errs, fmt.Errorf("step %q: ReportTimeout cannot be negative", s.Name))
		}
		if spec.Handlers[s.Type] == nil {
			errs = append(errs, fmt.Errorf("step %q: no handler for step type %q in Spec.Handlers", s.Name, s.Type))
		}
		used[s.Type] = true
	}
	for t := range spec.Handlers {
		if !used[t] {
			errs = append(errs, fmt.Errorf("Spec.Handlers has a handler for step type %q, which no step uses", t))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("migrator %s: %w", m.ID, err)
	}
	if opts.ListenAddr == "" {
		opts.ListenAddr = "127.0.0.1:9090"
	}
	advertiseListener := opts.AdvertiseURL == ""
	if opts.AdvertiseURL == "" {
		host, port, err := net.SplitHostPort(opts.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("ListenAddr %q: %w", opts.ListenAddr, err)
		}
		opts.AdvertiseURL = advertised(host, port)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MergeCheckEvery <= 0 {
		opts.MergeCheckEvery = 15 * time.Second
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	work, cancel := context.WithCancel(context.Background())
	copts := append([]connect.ClientOption{connect.WithInterceptors(telemetry())}, opts.ClientOptions...)
	if opts.Token != "" {
		copts = append([]connect.ClientOption{WithToken(opts.Token)}, copts...)
	}
	client := NewClient(opts.LoomURL, opts.HTTPClient, copts...)
	return &Migrator{
		spec:              spec,
		opts:              opts,
		advertiseListener: advertiseListener,
		log:               opts.Logger.With("migration_id", m.ID),
		client:            client,
		seen:              newSeenDispatches(),
		verify:            &verifier{client: client, now: time.Now},
		work:              work,
		cancelWork:        cancel,
	}, nil
}

// httpURL reports whether s is an absolute http(s) URL with a host.
func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// advertised is the URL Loom reaches a Migrator listening on host:port at.
func advertised(host, port string) string {
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Client is the Migrator's client of Loom.
func (m *Migrator) Client() *Client { return m.client }

// Run serves MigratorService on Options.ListenAddr (Connect, gRPC and
// gRPC-Web), announces the Migration (retrying until Loom answers),
// discovers Candidates and checks merges, until ctx ends; then it stops
// accepting steps and waits for the handlers in flight (see
// Options.ShutdownTimeout).
func (m *Migrator) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", m.opts.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.opts.ListenAddr, err)
	}
	return m.Serve(ctx, l)
}

// Serve is Run on a listener the caller opened. It returns at once, with
// the reason, when Loom refuses the announce (a wrong token, a Migration
// Loom finds invalid): retrying could not help.
func (m *Migrator) Serve(ctx context.Context, l net.Listener) error {
	if m.advertiseListener {
		// ListenAddr ":0" (or a listener of the caller's): advertise the port
		// actually bound, not the one asked for.
		host, _, _ := net.SplitHostPort(m.opts.ListenAddr)
		_, port, err := net.SplitHostPort(l.Addr().String())
		if err == nil {
			m.opts.AdvertiseURL = advertised(host, port)
		}
	}
	mux := http.NewServeMux()
	mux.Handle(m.Handler())
	for pattern, h := range m.opts.Routes {
		mux.Handle(pattern, h)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	hs := &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(l) }()
	m.log.Info("migrator is serving", "addr", l.Addr().String(), "advertised_url", m.opts.AdvertiseURL, "loom", m.opts.LoomURL)

	sctx, stopStart := context.WithCancel(ctx)
	defer stopStart()
	started := make(chan error, 1)
	go func() { started <- m.Start(sctx) }()

	var err error
	startDone := false
	for done := false; !done; {
		select {
		case err = <-served:
			err = fmt.Errorf("serve: %w", err)
			done = true
		case serr := <-started:
			startDone = true
			started = nil
			if serr != nil && ctx.Err() == nil {
				m.log.Error("migrator stops: Loom refused it", "error", serr)
				err, done = serr, true
			}
		case <-ctx.Done():
			done = true
		}
	}
	stopStart()
	shut, cancel := context.WithTimeout(context.Background(), m.opts.ShutdownTimeout)
	defer cancel()
	_ = hs.Shutdown(shut)
	m.Stop(shut)
	if !startDone {
		if serr := <-started; serr != nil && !errors.Is(serr, context.Canceled) && err == nil {
			err = serr
		}
	}
	return err
}

// Handler returns MigratorService's path and handler, to mount on a mux of
// your own; then call Start to announce and discover, and Stop at the end.
// The handler refuses calls not signed by the Loom at Options.LoomURL
// (when that Loom signs its calls).
func (m *Migrator) Handler() (string, http.Handler) {
	// A dispatch's answer is a few bytes: gzip would only cost CPU.
	path, h := migratorv1connect.NewMigratorServiceHandler(&service{m: m}, connect.WithInterceptors(telemetry()),
		connect.WithCompressMinBytes(1024))
	return path, m.verify.wrap(h)
}

// Start announces the Migration (retrying until Loom answers), then
// discovers Candidates and checks merges in the background until ctx ends.
// It returns once the Migration is announced and the first discovery pass is
// submitted.
func (m *Migrator) Start(ctx context.Context) error {
	if err := m.Announce(ctx); err != nil {
		return err
	}
	// The steps this Migrator was executing when it last stopped (or died)
	// come back now rather than when their lease runs out.
	go m.resume(ctx)
	if m.spec.Discover != nil {
		if err := m.Discover(ctx); err != nil {
			m.log.Error("discovery failed", "error", err)
		}
		if m.opts.DiscoverEvery > 0 {
			go m.every(ctx, m.opts.DiscoverEvery, func() {
				if err := m.Discover(ctx); err != nil && ctx.Err() == nil {
					m.log.Error("discovery failed", "error", err)
				}
			})
		}
	}
	if m.spec.CheckMerged != nil {
		go func() {
			m.CheckMerges(ctx)
			m.every(ctx, m.opts.MergeCheckEvery, func() { m.CheckMerges(ctx) })
		}()
	}
	return nil
}

// Stop waits for the handlers in flight until ctx ends, then cancels them.
func (m *Migrator) Stop(ctx context.Context) {
	done := make(chan struct{})
	go func() { m.running.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		m.log.Warn("stopping: cancelling step handlers still running")
		m.cancelWork()
		<-done
	}
	m.cancelWork()
}

func (m *Migrator) every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// resume asks Loom to dispatch again the Migration's steps in progress,
// retrying while Loom cannot be reached. Their handlers run again (a step
// this process is still executing is ignored): handlers must be idempotent.
func (m *Migrator) resume(ctx context.Context) {
	var n int64
	err := retry(ctx, func() error {
		var err error
		n, err = m.client.ResumeSteps(ctx, m.spec.Migration.ID)
		return err
	}, func(err error, wait time.Duration) {
		m.log.Warn("could not ask Loom for the steps in progress yet; retrying", "retry_in", wait, "error", err)
	})
	switch {
	case err != nil && ctx.Err() == nil:
		m.log.Error("could not ask Loom for the steps in progress: they come back when their lease runs out", "error", err)
	case n > 0:
		m.log.Info("steps in progress dispatched again", "steps", n)
	}
}

// Announce announces the Migration, retrying while Loom cannot be reached.
func (m *Migrator) Announce(ctx context.Context) error {
	var created, updated bool
	err := retry(ctx, func() error {
		var err error
		created, updated, err = m.client.Announce(ctx, m.spec.Migration, m.opts.AdvertiseURL)
		return err
	}, func(err error, wait time.Duration) {
		m.log.Warn("Loom does not answer the announce yet; retrying", "loom", m.opts.LoomURL, "retry_in", wait, "error", err)
	})
	if err != nil {
		return fmt.Errorf("announce %s: %w", m.spec.Migration.ID, err)
	}
	m.log.Info("migration announced", "created", created, "updated", updated, "migrator_url", m.opts.AdvertiseURL)
	if err := m.verify.load(ctx); err != nil {
		m.log.Warn("could not fetch Loom's signing keys yet; will on the first dispatch", "error", err)
	}
	return nil
}

// Discover runs one discovery pass and submits it in batches.
func (m *Migrator) Discover(ctx context.Context) error {
	cands, err := m.spec.Discover(ctx)
	if err != nil {
		return fmt.Errorf("discover: %w", err)
	}
	round := newRound()
	var total SubmitResult
	for start := 0; start < len(cands) || start == 0; start += MaxSubmitBatch {
		end := min(start+MaxSubmitBatch, len(cands))
		batch := cands[start:end]
		last := end == len(cands)
		if len(batch) == 0 {
			break // nothing discovered: nothing to submit (a submit needs one Candidate)
		}
		var res SubmitResult
		err := retry(ctx, func() error {
			var err error
			res, err = m.client.SubmitCandidates(ctx, m.spec.Migration.ID, batch, last, round)
			return err
		}, func(err error, wait time.Duration) {
			m.log.Warn("submitting candidates failed; retrying", "retry_in", wait, "error", err)
		})
		if err != nil {
			return fmt.Errorf("submit candidates %d-%d: %w", start, end, err)
		}
		total.Added = append(total.Added, res.Added...)
		total.Updated = append(total.Updated, res.Updated...)
		total.Unchanged = append(total.Unchanged, res.Unchanged...)
		total.LeftAlone = append(total.LeftAlone, res.LeftAlone...)
		total.NoLongerDiscovered = append(total.NoLongerDiscovered, res.NoLongerDiscovered...)
	}
	m.log.Info("candidates submitted", "discovered", len(cands), "added", len(total.Added), "updated", len(total.Updated),
		"unchanged", len(total.Unchanged), "left_alone", len(total.LeftAlone), "no_longer_discovered", len(total.NoLongerDiscovered))
	return nil
}

func newRound() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CheckMerges asks Spec.CheckMerged about every open step of the Migration
// now and reports the merged ones (and, for ErrClosed, the failed). The SDK
// calls it periodically; call it yourself when you learn of a merge sooner,
// e.g. from a code host's webhook. Concurrent calls are safe.
func (m *Migrator) CheckMerges(ctx context.Context) {
	if m.spec.CheckMerged == nil {
		return
	}
	open, err := m.client.OpenSteps(ctx, m.spec.Migration.ID)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("listing open steps failed", "error", err)
		}
		return
	}
	for _, s := range open {
		merged, err := m.spec.CheckMerged(ctx, s)
		status, message := StatusMerged, ""
		switch {
		case errors.Is(err, ErrClosed):
			status, message = StatusFailed, truncate(err.Error(), maxMessage)
		case err != nil:
			m.log.Warn("merge check failed; checking again later", "run_id", s.RunID, "step", s.Step, "attempt", s.Attempt, "error", err)
			continue
		case !merged:
			continue
		}
		_, err = m.client.ReportStep(ctx, Report{RunID: s.RunID, Execution: s.Execution, Step: s.Step, Attempt: s.Attempt,
			Status: status, Message: message, CallbackToken: s.CallbackToken})
		switch {
		case err == nil && status == StatusMerged:
			m.log.Info("pull request merged", "run_id", s.RunID, "step", s.Step, "attempt", s.Attempt, "pr_url", s.PRURL)
		case err == nil:
			m.log.Warn("pull request closed without merge: step reported failed", "run_id", s.RunID, "step", s.Step, "attempt", s.Attempt, "pr_url", s.PRURL, "reason", message)
		case IsRefused(err):
			// The Run moved on or was cancelled since Loom listed the step.
			m.log.Info("merge report refused", "run_id", s.RunID, "step", s.Step, "attempt", s.Attempt, "error", err)
		default:
			m.log.Warn("reporting a merge failed; checking again later", "run_id", s.RunID, "step", s.Step, "attempt", s.Attempt, "error", err)
		}
	}
}

// service implements MigratorService for a Migrator.
type service struct {
	m *Migrator
}

func (s *service) ExecuteStep(ctx context.Context, req *connect.Request[migratorv1.ExecuteStepRequest]) (*connect.Response[migratorv1.ExecuteStepResponse], error) {
	m := s.m
	msg := req.Msg
	if msg.GetRunId() == "" || msg.GetStep() == nil || msg.GetCandidate() == nil || msg.GetAttempt() < 1 || msg.GetExecution() < 1 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("a dispatch needs run_id, execution, step, attempt and candidate"))
	}
	h := m.spec.Handlers[msg.GetStep().GetType()]
	if h == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("no handler for step type %q", msg.GetStep().GetType()))
	}
	if m.work.Err() != nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("the Migrator is stopping"))
	}
	d := &Dispatch{
		RunID:         msg.GetRunId(),
		Execution:     msg.GetExecution(),
		MigrationID:   msg.GetMigrationId(),
		Step:          stepFromProto(msg.GetStep()),
		StepIndex:     int(msg.GetStepIndex()),
		Attempt:       int(msg.GetAttempt()),
		Candidate:     candidateFromProto(msg.GetCandidate()),
		Inputs:        msg.GetInputs(),
		client:        m.client,
		callbackToken: msg.GetCallbackToken(),
	}
	d.log = m.log.With("run_id", d.RunID, "execution", d.Execution, "step", d.Step.Name, "attempt", d.Attempt, "candidate_id", d.Candidate.ID)
	if prev := m.seen.claim(d, time.Now(), false); prev != nil {
		switch atRest, reported := prev.state(); {
		case !atRest:
			// Still at work: its reports will come.
			d.log.Info("duplicate dispatch ignored: the step is still executing")
			return connect.NewResponse(&migratorv1.ExecuteStepResponse{}), nil
		case reported:
			// Loom sends the step again after its handler finished: the last
			// report did not reach it (or was refused while it restarted).
			d.log.Info("step dispatched again after its handler finished: sending its last report again")
			m.running.Add(1)
			go func() {
				defer m.running.Done()
				prev.resend(m.work)
			}()
			return connect.NewResponse(&migratorv1.ExecuteStepResponse{}), nil
		default:
			// It finished without reporting anything: run it again.
			m.seen.claim(d, time.Now(), true)
		}
	}
	// The handler outlives this call: it runs on the Migrator's context, in
	// the dispatch's trace, so that its reports continue the trace Loom
	// started.
	work, span := tracer().Start(trace.ContextWithSpanContext(m.work, trace.SpanContextFromContext(ctx)),
		"step "+d.Step.Type, trace.WithAttributes(
			attribute.String("loom.run_id", d.RunID), attribute.String("loom.step", d.Step.Name),
			attribute.Int("loom.attempt", d.Attempt), attribute.String("loom.candidate_id", d.Candidate.ID)))
	m.running.Add(1)
	go func() {
		defer m.running.Done()
		defer span.End()
		d.log.Info("step dispatched")
		d.execute(work, h)
	}()
	return connect.NewResponse(&migratorv1.ExecuteStepResponse{}), nil
}

func (s *service) PreviewRun(ctx context.Context, req *connect.Request[migratorv1.PreviewRunRequest]) (*connect.Response[migratorv1.PreviewRunResponse], error) {
	if s.m.spec.Preview == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("this Migrator has no preview"))
	}
	if req.Msg.GetCandidate() == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("a preview needs a candidate"))
	}
	previews, err := s.m.spec.Preview(ctx, PreviewRequest{
		MigrationID: req.Msg.GetMigrationId(),
		Steps:       stepsFromProto(req.Msg.GetSteps()),
		Candidate:   candidateFromProto(req.Msg.GetCandidate()),
		Inputs:      req.Msg.GetInputs(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&migratorv1.PreviewRunResponse{Steps: previewsToProto(previews)}), nil
}
