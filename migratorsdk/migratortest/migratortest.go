// Package migratortest is an in-process fake of Loom for a Migrator's own
// tests: it takes announcements, discovered Candidates and step reports like
// Loom does (with the same step transition rules), dispatches steps and asks
// for previews, with no Temporal and no Redis.
//
//	loom := migratortest.New(t)
//	m, err := migratorsdk.New(spec, migratorsdk.Options{LoomURL: loom.URL(), ListenAddr: "127.0.0.1:0",
//		MergeCheckEvery: 100 * time.Millisecond})
//	if err != nil {
//		t.Fatal(err)
//	}
//	go m.Run(t.Context())
//	loom.WaitCandidates(t, "my-migration", 1)
//	run := loom.MustDispatch(t, "my-migration", "bump", "acme/payments", nil)
//	run.MustWait(t, migratorsdk.StatusOpen)
//
// A Migrator sees a merge at its next merge check: in tests, make
// Options.MergeCheckEvery short, as above (the default, 15 s, is longer
// than MustWait waits).
package migratortest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	migratorv1 "github.com/loomhq/loom/gen/loom/migrator/v1"
	"github.com/loomhq/loom/gen/loom/migrator/v1/migratorv1connect"
	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/migratorsdk/internal/convert"
)

// The SDK's conversions (see internal/convert).
var (
	migrationToProto   = convert.MigrationToProto.(func(migratorsdk.Migration, string) *loomv1.Migration)
	migrationFromProto = convert.MigrationFromProto.(func(*loomv1.Migration) migratorsdk.Migration)
	stepsToProto       = convert.StepsToProto.(func([]migratorsdk.Step) []*loomv1.StepDefinition)
	stepsFromProto     = convert.StepsFromProto.(func([]*loomv1.StepDefinition) []migratorsdk.Step)
	candidateToProto   = convert.CandidateToProto.(func(migratorsdk.Candidate) *loomv1.Candidate)
	candidateFromProto = convert.CandidateFromProto.(func(*loomv1.Candidate) migratorsdk.Candidate)
	statusToProto      = convert.StatusToProto.(func(migratorsdk.StepStatus) loomv1.StepStatus)
	statusFromProto    = convert.StatusFromProto.(func(loomv1.StepStatus) migratorsdk.StepStatus)
	previewsFromProto  = convert.PreviewsFromProto.(func([]*loomv1.StepPreview) []migratorsdk.StepPreview)
)

// Loom is a fake Loom serving the Registry, Discovery, Event and (for merge
// checks) Run services over HTTP on a loopback port.
type Loom struct {
	srv *httptest.Server

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced at every change
	unavailable bool
	failWith    connect.Code // when set, every call answers it
	token       string       // when set, calls must carry it as a bearer token
	migrations  map[string]*loomv1.Migration
	candidates  map[string]map[string]*loomv1.Candidate
	submits     []*loomv1.SubmitCandidatesRequest
	runs        map[string]*Run
	// signing, when set, signs calls to Migrators like Loom does.
	signing ed25519.PrivateKey
}

// New starts a fake Loom for the test; it stops when the test ends.
func New(t testing.TB) *Loom {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, l)
}

// Serve starts a fake Loom on a listener the test opened, e.g. to start a
// Migrator before Loom is reachable. It stops when the test ends.
func Serve(t testing.TB, l net.Listener) *Loom {
	loom := Start(l)
	t.Cleanup(loom.Close)
	return loom
}

// Start starts a fake Loom on l outside a test (in an Example, say); Close
// stops it.
func Start(l net.Listener) *Loom {
	loom := &Loom{
		changed:    make(chan struct{}),
		migrations: map[string]*loomv1.Migration{},
		candidates: map[string]map[string]*loomv1.Candidate{},
		runs:       map[string]*Run{},
	}
	mux := http.NewServeMux()
	mux.Handle(loomv1connect.NewRegistryServiceHandler(&registry{l: loom}, connect.WithInterceptors(loom.outage())))
	mux.Handle(loomv1connect.NewDiscoveryServiceHandler(&discovery{l: loom}, connect.WithInterceptors(loom.outage())))
	mux.Handle(loomv1connect.NewEventServiceHandler(&events{l: loom}, connect.WithInterceptors(loom.outage())))
	mux.Handle(loomv1connect.NewRunServiceHandler(&runs{l: loom}, connect.WithInterceptors(loom.outage())))
	loom.srv = httptest.NewUnstartedServer(mux)
	loom.srv.Listener.Close()
	loom.srv.Listener = l
	loom.srv.Start()
	return loom
}

// Close stops the fake Loom.
func (l *Loom) Close() { l.srv.Close() }

// URL is the fake Loom's API, for migratorsdk.Options.LoomURL.
func (l *Loom) URL() string { return l.srv.URL }

// SetUnavailable makes every call answer Unavailable (true) or work again.
func (l *Loom) SetUnavailable(down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unavailable = down
}

// FailWith makes every call answer code, as a Loom failing that way
// would (e.g. connect.CodeInternal); 0 makes it work again. SetUnavailable
// is the same for connect.CodeUnavailable.
func (l *Loom) FailWith(code connect.Code) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failWith = code
}

// RequireToken makes the fake refuse, as Unauthenticated, every call that
// does not carry token as a bearer token (migratorsdk.Options.Token), like
// a Loom that authenticates callers; "" accepts every call again.
func (l *Loom) RequireToken(token string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.token = token
}

func (l *Loom) outage() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			l.mu.Lock()
			down, token, code := l.unavailable, l.token, l.failWith
			l.mu.Unlock()
			if down {
				return nil, connect.NewError(connect.CodeUnavailable, errors.New("fake Loom is unavailable"))
			}
			if code != 0 {
				return nil, connect.NewError(code, fmt.Errorf("fake Loom fails with %v", code))
			}
			if token != "" && req.Header().Get("Authorization") != "Bearer "+token {
				return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("a valid bearer token is required"))
			}
			return next(ctx, req)
		}
	}
}

// notify wakes every waiter; call with l.mu held.
func (l *Loom) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// waitFor calls cond under the lock until it is true or ctx ends.
func (l *Loom) waitFor(ctx context.Context, cond func() bool) error {
	for {
		l.mu.Lock()
		ok, ch := cond(), l.changed
		l.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Migration returns an announced Migration and the URL it is dispatched at.
func (l *Loom) Migration(id string) (m migratorsdk.Migration, migratorURL string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.migrations[id]
	if !ok {
		return migratorsdk.Migration{}, "", false
	}
	return migrationFromProto(p), p.GetMigratorUrl(), true
}

// AwaitAnnounced waits until the Migration is announced.
func (l *Loom) AwaitAnnounced(ctx context.Context, id string) (migratorsdk.Migration, error) {
	if err := l.waitFor(ctx, func() bool { _, ok := l.migrations[id]; return ok }); err != nil {
		return migratorsdk.Migration{}, fmt.Errorf("migration %s was not announced: %w", id, err)
	}
	m, _, _ := l.Migration(id)
	return m, nil
}

// WaitAnnounced waits up to 10 s for the Migration to be announced.
func (l *Loom) WaitAnnounced(t testing.TB, id string) migratorsdk.Migration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := l.AwaitAnnounced(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Register records a Migration and its Candidates as if its Migrator had
// announced and discovered them: a dispatch can then be sent to a Migrator
// at migratorURL that never talked to this fake (to test that it refuses a
// Loom that is not its own, say).
func (l *Loom) Register(m migratorsdk.Migration, migratorURL string, candidates ...migratorsdk.Candidate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.migrations[m.ID] = migrationToProto(m, migratorURL)
	l.candidates[m.ID] = map[string]*loomv1.Candidate{}
	for _, c := range candidates {
		l.candidates[m.ID][c.ID] = candidateToProto(c)
	}
	l.notify()
}

// Candidates returns the submitted Candidates of a Migration, by id.
func (l *Loom) Candidates(migrationID string) []migratorsdk.Candidate {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []migratorsdk.Candidate
	for _, c := range l.candidates[migrationID] {
		out = append(out, candidateFromProto(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// AwaitCandidates waits until the Migration has at least n Candidates.
func (l *Loom) AwaitCandidates(ctx context.Context, migrationID string, n int) ([]migratorsdk.Candidate, error) {
	if err := l.waitFor(ctx, func() bool { return len(l.candidates[migrationID]) >= n }); err != nil {
		return nil, fmt.Errorf("migration %s has %d candidates, want %d: %w", migrationID, len(l.Candidates(migrationID)), n, err)
	}
	return l.Candidates(migrationID), nil
}

// WaitCandidates waits up to 10 s until the Migration has n Candidates.
func (l *Loom) WaitCandidates(t testing.TB, migrationID string, n int) []migratorsdk.Candidate {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := l.AwaitCandidates(ctx, migrationID, n)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// Submissions returns every SubmitCandidates request received, in order.
func (l *Loom) Submissions() []*loomv1.SubmitCandidatesRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*loomv1.SubmitCandidatesRequest(nil), l.submits...)
}

// Run is one dispatched step of a Candidate, as the fake Loom tracks it.
type Run struct {
	l           *Loom
	ID          string
	MigrationID string
	Candidate   string
	Step        migratorsdk.Step
	StepIndex   int
	Execution   int64
	inputs      map[string]string
	url         string

	// Guarded by l.mu.
	attempt int
	token   string // the current attempt's callback token
	status  migratorsdk.StepStatus
	prURL   string
	meta    map[string]string
	message string
	reports []migratorsdk.Report
	// received counts every report on the Run, repeats included.
	received int
	// behind: reports are refused as not current until DispatchAgain.
	behind bool
}

// Dispatch sends one step of a Migration for a Candidate to the Migrator
// the Migration was announced with (execution 1, attempt 1), as Loom would.
func (l *Loom) Dispatch(ctx context.Context, migrationID, stepName, candidateID string, inputs map[string]string) (*Run, error) {
	l.mu.Lock()
	m, ok := l.migrations[migrationID]
	cand := l.candidates[migrationID][candidateID]
	l.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("migration %s was not announced", migrationID)
	}
	if cand == nil {
		return nil, fmt.Errorf("candidate %s was not submitted to %s", candidateID, migrationID)
	}
	if err := missingInputs(m, inputs); err != nil {
		return nil, err
	}
	steps := stepsFromProto(m.GetSteps())
	if len(cand.GetSteps()) > 0 {
		steps = stepsFromProto(cand.GetSteps())
	}
	for i, s := range steps {
		if s.Name != stepName {
			continue
		}
		r := &Run{l: l, ID: migrationID + "__" + candidateID, MigrationID: migrationID, Candidate: candidateID,
			Step: s, StepIndex: i, Execution: 1, inputs: inputs, url: m.GetMigratorUrl(), attempt: 1, status: migratorsdk.StatusInProgress}
		l.mu.Lock()
		l.runs[r.ID] = r
		l.notify()
		l.mu.Unlock()
		return r, r.dispatch(ctx)
	}
	return nil, fmt.Errorf("migration %s has no step %q", migrationID, stepName)
}

// MustDispatch is Dispatch failing the test on error.
func (l *Loom) MustDispatch(t testing.TB, migrationID, stepName, candidateID string, inputs map[string]string) *Run {
	t.Helper()
	r, err := l.Dispatch(context.Background(), migrationID, stepName, candidateID, inputs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *Run) dispatch(ctx context.Context) error { return r.send(ctx, true) }

// missingInputs refuses, as Loom's StartRun and PreviewRun do, inputs
// without a value for one of the Migration's.
func missingInputs(m *loomv1.Migration, inputs map[string]string) error {
	var missing []string
	for _, in := range m.GetRequiredInputs() {
		if inputs[in.GetName()] == "" {
			missing = append(missing, in.GetName())
		}
	}
	if len(missing) > 0 {
		return refusal(loomv1.ErrorReason_MISSING_INPUTS, "missing required inputs: %s", strings.Join(missing, ", "))
	}
	return nil
}

// refusal is a FAILED_PRECONDITION with the ErrorInfo reason Loom gives.
func refusal(reason loomv1.ErrorReason, format string, args ...any) error {
	err := connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(format, args...))
	if d, derr := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: reason.String(), Domain: "loom.dev"}); derr == nil {
		err.AddDetail(d)
	}
	return err
}

// send sends the Run's current attempt to the Migrator: with a new callback
// token for a new attempt, the same one when dispatching it again.
func (r *Run) send(ctx context.Context, newToken bool) error {
	r.l.mu.Lock()
	attempt := r.attempt
	cand := r.l.candidates[r.MigrationID][r.Candidate]
	if newToken {
		r.token = newCallbackToken()
	}
	token, url := r.token, r.url
	r.l.mu.Unlock()
	c := migratorv1connect.NewMigratorServiceClient(r.l.migratorClient(), url)
	_, err := c.ExecuteStep(ctx, connect.NewRequest(&migratorv1.ExecuteStepRequest{
		RunId: r.ID, Execution: r.Execution, MigrationId: r.MigrationID,
		Step: stepsToProto([]migratorsdk.Step{r.Step})[0], StepIndex: int32(r.StepIndex), Attempt: int32(attempt),
		Candidate: cand, Inputs: r.inputs, CallbackToken: token,
	}))
	return err
}

func newCallbackToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "test." + base64.RawURLEncoding.EncodeToString(b)
}

// EnableSigning makes the fake Loom sign its calls to Migrators and publish
// the key, as a Loom that authenticates callers does: the Migrator then
// refuses calls that are not signed.
func (l *Loom) EnableSigning() {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	l.mu.Lock()
	l.signing = priv
	l.mu.Unlock()
}

// migratorClient is the HTTP client of calls to Migrators: signed when
// EnableSigning was called.
func (l *Loom) migratorClient() *http.Client {
	l.mu.Lock()
	key := l.signing
	l.mu.Unlock()
	if key == nil {
		return http.DefaultClient
	}
	return &http.Client{Transport: signer{key: key}}
}

// signer signs requests with the header format of MigratorService.
type signer struct{ key ed25519.PrivateKey }

func (s signer) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	t := time.Now().Unix()
	sum := sha256.Sum256(body)
	msg := "loom-signature-v1\n" + r.Method + "\n" + r.URL.Path + "\n" + strconv.FormatInt(t, 10) + "\n" + hex.EncodeToString(sum[:])
	sig := ed25519.Sign(s.key, []byte(msg))
	r.Header.Set("Loom-Signature", "v1;key=test;t="+strconv.FormatInt(t, 10)+";sig="+base64.RawURLEncoding.EncodeToString(sig))
	return http.DefaultTransport.RoundTrip(r)
}

// Retry dispatches a failed step again as its next attempt.
func (r *Run) Retry(ctx context.Context) error {
	r.l.mu.Lock()
	if r.status != migratorsdk.StatusFailed {
		r.l.mu.Unlock()
		return fmt.Errorf("step %s is %s, not failed", r.Step.Name, r.status)
	}
	r.attempt++
	// Like Loom, the new attempt starts clean: the old pull request,
	// message and metadata belong to the attempt that failed.
	r.status, r.prURL, r.message, r.meta = migratorsdk.StatusInProgress, "", "", nil
	r.l.notify()
	r.l.mu.Unlock()
	return r.dispatch(ctx)
}

// Behind makes the fake act as a Loom that dispatched the step and then
// restarted before it recorded the end of the step before: it refuses the
// Migrator's reports on the step with STEP_NOT_CURRENT until DispatchAgain.
func (r *Run) Behind() {
	r.l.mu.Lock()
	r.behind = true
	r.l.mu.Unlock()
}

// DispatchAgain sends the step's current attempt again, with the same
// callback token, as Loom does once it has caught up with the Run (or when
// it did not get the Migrator's answer to a dispatch).
func (r *Run) DispatchAgain(ctx context.Context) error {
	r.l.mu.Lock()
	r.behind = false
	r.l.mu.Unlock()
	return r.send(ctx, false)
}

// Status is the step's current status.
func (r *Run) Status() migratorsdk.StepStatus {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	return r.status
}

// Attempt is the step's current attempt.
func (r *Run) Attempt() int {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	return r.attempt
}

// Reports returns every accepted report of the step, in order.
func (r *Run) Reports() []migratorsdk.Report {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	return append([]migratorsdk.Report(nil), r.reports...)
}

// Received counts the reports on the Run that reached the fake, repeats
// and refused ones included (Reports has only those that changed it).
func (r *Run) Received() int {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	return r.received
}

// Wait waits until the step reaches status and returns the report that set
// it.
func (r *Run) Wait(ctx context.Context, status migratorsdk.StepStatus) (migratorsdk.Report, error) {
	var got migratorsdk.Report
	err := r.l.waitFor(ctx, func() bool {
		for _, rep := range r.reports {
			if rep.Status == status && rep.Attempt == r.attempt {
				got = rep
				return true
			}
		}
		return false
	})
	if err != nil {
		return got, fmt.Errorf("step %s of %s never became %s (it is %s): %w", r.Step.Name, r.ID, status, r.Status(), err)
	}
	return got, nil
}

// MustWait is Wait with a 10 s limit, failing the test when it ends.
func (r *Run) MustWait(t testing.TB, status migratorsdk.StepStatus) migratorsdk.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := r.Wait(ctx, status)
	if err != nil && status == migratorsdk.StatusMerged && r.Status() == migratorsdk.StatusOpen {
		t.Fatalf("%v; a Migrator reports a merge at its next merge check: make Options.MergeCheckEvery short in tests (it is 15 s by default)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// Preview asks the Migrator for the diffs of a Candidate.
func (l *Loom) Preview(ctx context.Context, migrationID, candidateID string, inputs map[string]string) ([]migratorsdk.StepPreview, error) {
	l.mu.Lock()
	m, ok := l.migrations[migrationID]
	cand := l.candidates[migrationID][candidateID]
	l.mu.Unlock()
	if !ok || cand == nil {
		return nil, fmt.Errorf("unknown migration %s or candidate %s", migrationID, candidateID)
	}
	if err := missingInputs(m, inputs); err != nil {
		return nil, err
	}
	steps := m.GetSteps()
	if len(cand.GetSteps()) > 0 {
		steps = cand.GetSteps()
	}
	c := migratorv1connect.NewMigratorServiceClient(l.migratorClient(), m.GetMigratorUrl())
	res, err := c.PreviewRun(ctx, connect.NewRequest(&migratorv1.PreviewRunRequest{MigrationId: migrationID, Steps: steps, Candidate: cand, Inputs: inputs}))
	if err != nil {
		return nil, err
	}
	return previewsFromProto(res.Msg.GetSteps()), nil
}

// allowed is Loom's step transition table for a Migrator's reports.
var allowed = map[migratorsdk.StepStatus][]migratorsdk.StepStatus{
	migratorsdk.StatusInProgress:     {migratorsdk.StatusInProgress, migratorsdk.StatusOpen, migratorsdk.StatusAwaitingReview, migratorsdk.StatusMerged, migratorsdk.StatusCompleted, migratorsdk.StatusFailed},
	migratorsdk.StatusOpen:           {migratorsdk.StatusOpen, migratorsdk.StatusMerged, migratorsdk.StatusFailed},
	migratorsdk.StatusAwaitingReview: {migratorsdk.StatusCompleted, migratorsdk.StatusFailed},
}

// report applies a Migrator's report; call with l.mu held.
func (r *Run) report(rep migratorsdk.Report) (changed bool, err error) {
	if rep.CallbackToken != r.token && !(rep.Attempt < r.attempt) {
		return false, connect.NewError(connect.CodeUnauthenticated, errors.New("callback_token: not the token of this dispatch"))
	}
	switch {
	case rep.Execution != r.Execution:
		return false, refusal(loomv1.ErrorReason_STALE_EXECUTION, "execution %d is not the current one (%d)", rep.Execution, r.Execution)
	case rep.Step != r.Step.Name:
		return false, refusal(loomv1.ErrorReason_STEP_NOT_CURRENT, "step %q is not the current step (%q is)", rep.Step, r.Step.Name)
	case r.behind:
		return false, refusal(loomv1.ErrorReason_STEP_NOT_CURRENT, "step %q is not the current step (the one before it is)", rep.Step)
	case rep.Attempt != r.attempt:
		return false, refusal(loomv1.ErrorReason_STALE_ATTEMPT, "attempt %d is not the current one (%d)", rep.Attempt, r.attempt)
	}
	if r.status == migratorsdk.StatusMerged || r.status == migratorsdk.StatusCompleted {
		if rep.Status == r.status {
			return false, nil // a late duplicate of the final report
		}
		// Loom has moved the Run on to its next step.
		return false, refusal(loomv1.ErrorReason_STEP_NOT_CURRENT, "step %q is %s: the Run has moved on", r.Step.Name, r.status)
	}
	ok := false
	for _, s := range allowed[r.status] {
		ok = ok || s == rep.Status
	}
	if !ok {
		return false, refusal(loomv1.ErrorReason_TRANSITION_NOT_ALLOWED, "step %q is %s: %s is not allowed", r.Step.Name, r.status, rep.Status)
	}
	if rep.Status == migratorsdk.StatusOpen && rep.PRURL == "" && r.prURL == "" {
		return false, connect.NewError(connect.CodeInvalidArgument, errors.New("pr_url: required when status is open"))
	}
	same := rep.Status == r.status && (rep.PRURL == "" || rep.PRURL == r.prURL) && (rep.Message == "" || rep.Message == r.message) && (len(rep.Metadata) == 0 || equalMaps(rep.Metadata, r.meta))
	if same {
		return false, nil
	}
	r.status = rep.Status
	if rep.PRURL != "" {
		r.prURL = rep.PRURL
	}
	if rep.Message != "" {
		r.message = rep.Message
	}
	if len(rep.Metadata) > 0 {
		r.meta = rep.Metadata
	}
	r.reports = append(r.reports, rep)
	return true, nil
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

type registry struct {
	loomv1connect.UnimplementedRegistryServiceHandler
	l *Loom
}

func (s *registry) Announce(_ context.Context, req *connect.Request[loomv1.AnnounceRequest]) (*connect.Response[loomv1.AnnounceResponse], error) {
	m := req.Msg.GetMigration()
	if m.GetId() == "" || len(m.GetSteps()) == 0 || !strings.HasPrefix(m.GetMigratorUrl(), "http") {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("migration: id, steps and an http(s) migrator_url are required"))
	}
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	_, existed := s.l.migrations[m.GetId()]
	s.l.migrations[m.GetId()] = m
	s.l.notify()
	return connect.NewResponse(&loomv1.AnnounceResponse{Migration: m, Created: !existed, Updated: existed}), nil
}

func (s *registry) ListSigningKeys(context.Context, *connect.Request[loomv1.ListSigningKeysRequest]) (*connect.Response[loomv1.ListSigningKeysResponse], error) {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	res := &loomv1.ListSigningKeysResponse{}
	if s.l.signing != nil {
		res.Keys = append(res.Keys, &loomv1.SigningKey{Id: "test", Algorithm: "Ed25519", PublicKey: s.l.signing.Public().(ed25519.PublicKey)})
	}
	return connect.NewResponse(res), nil
}

func (s *registry) GetMigration(_ context.Context, req *connect.Request[loomv1.GetMigrationRequest]) (*connect.Response[loomv1.GetMigrationResponse], error) {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	m, ok := s.l.migrations[req.Msg.GetMigrationId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("migration %q not found", req.Msg.GetMigrationId()))
	}
	return connect.NewResponse(&loomv1.GetMigrationResponse{Migration: m}), nil
}

type discovery struct {
	loomv1connect.UnimplementedDiscoveryServiceHandler
	l *Loom
}

func (s *discovery) SubmitCandidates(_ context.Context, req *connect.Request[loomv1.SubmitCandidatesRequest]) (*connect.Response[loomv1.SubmitCandidatesResponse], error) {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	id := req.Msg.GetMigrationId()
	if _, ok := s.l.migrations[id]; !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("migration %q not found", id))
	}
	if n := len(req.Msg.GetCandidates()); n == 0 || n > migratorsdk.MaxSubmitBatch {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("candidates: 1 to %d per request, got %d", migratorsdk.MaxSubmitBatch, n))
	}
	if s.l.candidates[id] == nil {
		s.l.candidates[id] = map[string]*loomv1.Candidate{}
	}
	res := &loomv1.SubmitCandidatesResponse{}
	for _, c := range req.Msg.GetCandidates() {
		if _, ok := s.l.candidates[id][c.GetId()]; ok {
			res.UpdatedIds = append(res.UpdatedIds, c.GetId())
		} else {
			res.AddedIds = append(res.AddedIds, c.GetId())
		}
		s.l.candidates[id][c.GetId()] = c
	}
	res.AddedCount, res.UpdatedCount = int32(len(res.AddedIds)), int32(len(res.UpdatedIds))
	s.l.submits = append(s.l.submits, req.Msg)
	s.l.notify()
	return connect.NewResponse(res), nil
}

type events struct {
	loomv1connect.UnimplementedEventServiceHandler
	l *Loom
}

func (s *events) ReportStepStatus(_ context.Context, req *connect.Request[loomv1.ReportStepStatusRequest]) (*connect.Response[loomv1.ReportStepStatusResponse], error) {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	r, ok := s.l.runs[req.Msg.GetRunId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("run %q not found", req.Msg.GetRunId()))
	}
	r.received++
	changed, err := r.report(migratorsdk.Report{
		RunID: req.Msg.GetRunId(), Execution: req.Msg.GetExecution(), Step: req.Msg.GetStepName(), Attempt: int(req.Msg.GetAttempt()),
		Status: statusFromProto(req.Msg.GetStatus()), PRURL: req.Msg.GetPrUrl(), Message: req.Msg.GetMessage(), Metadata: req.Msg.GetMetadata(),
		CallbackToken: req.Msg.GetCallbackToken(),
	})
	if err != nil {
		return nil, err
	}
	s.l.notify()
	return connect.NewResponse(&loomv1.ReportStepStatusResponse{Changed: changed, Step: &loomv1.StepResult{
		StepName: r.Step.Name, Status: statusToProto(r.status), PrUrl: r.prURL, Message: r.message, Metadata: r.meta, Attempt: int32(r.attempt),
	}}), nil
}

// ResumeSteps dispatches again, in the background, the Runs of the
// Migration whose step is in progress, to the Migrator's current URL, as
// Loom does when a Migrator starts.
func (s *events) ResumeSteps(_ context.Context, req *connect.Request[loomv1.ResumeStepsRequest]) (*connect.Response[loomv1.ResumeStepsResponse], error) {
	s.l.mu.Lock()
	m, ok := s.l.migrations[req.Msg.GetMigrationId()]
	if !ok {
		s.l.mu.Unlock()
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("migration %q not found", req.Msg.GetMigrationId()))
	}
	var todo []*Run
	for _, r := range s.l.runs {
		if r.MigrationID == req.Msg.GetMigrationId() && r.status == migratorsdk.StatusInProgress {
			r.url = m.GetMigratorUrl()
			todo = append(todo, r)
		}
	}
	s.l.mu.Unlock()
	for _, r := range todo {
		go func() { _ = r.send(context.Background(), false) }()
	}
	return connect.NewResponse(&loomv1.ResumeStepsResponse{Resumed: int64(len(todo))}), nil
}

type runs struct {
	loomv1connect.UnimplementedRunServiceHandler
	l *Loom
}

// ListRuns lists the fake's Runs of a Migration, filtered by current step
// status: enough for the SDK's merge checks.
func (s *runs) ListRuns(_ context.Context, req *connect.Request[loomv1.ListRunsRequest]) (*connect.Response[loomv1.ListRunsResponse], error) {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	res := &loomv1.ListRunsResponse{}
	ids := make([]string, 0, len(s.l.runs))
	for id := range s.l.runs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		r := s.l.runs[id]
		st := statusToProto(r.status)
		if r.MigrationID != req.Msg.GetMigrationId() || (req.Msg.GetCurrentStepStatus() != loomv1.StepStatus_STEP_STATUS_UNSPECIFIED && st != req.Msg.GetCurrentStepStatus()) {
			continue
		}
		res.Runs = append(res.Runs, &loomv1.Run{
			Id: r.ID, MigrationId: r.MigrationID, CandidateId: r.Candidate, Execution: r.Execution,
			Status: loomv1.RunStatus_RUN_STATUS_RUNNING, CurrentStep: r.Step.Name, CurrentStepStatus: st,
			StepResults: []*loomv1.StepResult{{StepName: r.Step.Name, Status: st, PrUrl: r.prURL, Metadata: r.meta, Attempt: int32(r.attempt), CallbackToken: r.token}},
		})
	}
	res.TotalSize = int64(len(res.Runs))
	return connect.NewResponse(res), nil
}
