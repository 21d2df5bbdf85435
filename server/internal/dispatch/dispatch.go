// Package dispatch is the MigratorNotifier: a Connect client of
// loom.migrator.v1.MigratorService that dispatches steps and asks for
// previews, with a deadline on every call, and sorts the Migrator's failures
// into transient (retry) and refusals (give up).
package dispatch

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	migratorv1 "github.com/loomhq/loom/gen/loom/migrator/v1"
	"github.com/loomhq/loom/gen/loom/migrator/v1/migratorv1connect"
	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/protoconv"
)

// Options configure the Notifier.
type Options struct {
	// HTTPClient makes the calls; nil uses a client with sane transport
	// timeouts.
	HTTPClient *http.Client
	// CallTimeout bounds one ExecuteStep call. A Migrator must accept a
	// step quickly and do the work in the background.
	CallTimeout time.Duration
	// ClientOptions are added to every Connect client (interceptors, ...).
	ClientOptions []connect.ClientOption
	// Policy limits the addresses Loom calls; nil allows every address
	// (tests). Applied to HTTPClient's own transport only when HTTPClient is
	// nil.
	Policy *Policy
	// Signer signs every call (see MigratorService); nil sends unsigned
	// calls.
	Signer *auth.Signer
	// Callbacks signs each dispatch's callback token, bound to its Run
	// execution, step and attempt, which the Migrator's reports must carry;
	// nil sends the token the dispatch has (none, in tests).
	Callbacks *auth.Callbacks
	// TLS configures calls to https:// Migrators: a private CA, a client
	// certificate for mutual TLS. Nil uses the system's roots.
	TLS *tls.Config
	// Meter records dispatch latency and failures per Migration; nil
	// records nothing.
	Meter metric.Meter
}

// Notifier calls Migrators over Connect.
type Notifier struct {
	http      *http.Client
	callbacks *auth.Callbacks
	timeout   time.Duration
	opts      []connect.ClientOption

	mu      sync.Mutex
	clients map[string]migratorv1connect.MigratorServiceClient

	duration metric.Float64Histogram
	failures metric.Int64Counter
}

var _ migration.MigratorNotifier = (*Notifier)(nil)

// New returns a Notifier.
func New(o Options) *Notifier {
	if o.HTTPClient == nil {
		dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		if o.Policy != nil {
			dialer.Control = o.Policy.control
		}
		o.HTTPClient = &http.Client{Transport: &http.Transport{
			// No proxy: the policy must see the Migrator's own address.
			DialContext:           dialer.DialContext,
			TLSClientConfig:       o.TLS,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 2 * time.Minute,
		}}
	}
	if o.Policy != nil || o.Signer != nil {
		base := o.HTTPClient.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		c := *o.HTTPClient
		c.Transport = &guard{base: base, policy: o.Policy, signer: o.Signer}
		o.HTTPClient = &c
	}
	{
		c := *o.HTTPClient
		base := c.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		c.Transport = connectOnly{base: base}
		o.HTTPClient = &c
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 20 * time.Second
	}
	if o.Meter == nil {
		o.Meter = noop.NewMeterProvider().Meter("")
	}
	n := &Notifier{http: o.HTTPClient, callbacks: o.Callbacks, timeout: o.CallTimeout, opts: o.ClientOptions,
		clients: map[string]migratorv1connect.MigratorServiceClient{}}
	// Instruments of a valid name never fail to build.
	n.duration, _ = o.Meter.Float64Histogram("loom.dispatch.duration", metric.WithUnit("s"),
		metric.WithDescription("Time the Migrator took to accept or refuse a dispatched step, by Migration and outcome (accepted, unavailable, refused)."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20))
	n.failures, _ = o.Meter.Int64Counter("loom.dispatch.failures", metric.WithUnit("{dispatch}"),
		metric.WithDescription("Dispatches that failed, by Migration and outcome: unavailable (retried) or refused (the step fails)."))
	return n
}

func (n *Notifier) client(url string) migratorv1connect.MigratorServiceClient {
	url = strings.TrimRight(url, "/")
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.clients[url]
	if !ok {
		c = migratorv1connect.NewMigratorServiceClient(n.http, url, n.opts...)
		n.clients[url] = c
	}
	return c
}

// ExecuteStep dispatches one step.
func (n *Notifier) ExecuteStep(ctx context.Context, url string, d migration.Dispatch) (err error) {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	start := time.Now()
	defer func() { n.observe(ctx, d.MigrationID, start, err) }()
	_, err = n.client(url).ExecuteStep(ctx, connect.NewRequest(&migratorv1.ExecuteStepRequest{
		RunId:         d.RunID,
		Execution:     d.Execution,
		MigrationId:   d.MigrationID,
		Step:          protoconv.StepsToProto([]migration.StepDefinition{d.Step})[0],
		StepIndex:     int32(d.StepIndex),
		Attempt:       int32(d.Attempt),
		Candidate:     protoconv.CandidateToProto(d.Candidate),
		Inputs:        d.Inputs,
		CallbackToken: n.callbackToken(d),
	}))
	return classify(url, err)
}

func (n *Notifier) callbackToken(d migration.Dispatch) string {
	if n.callbacks == nil {
		return d.CallbackToken
	}
	return n.callbacks.Sign(auth.Binding{RunID: d.RunID, Execution: d.Execution, Step: d.Step.Name, Attempt: d.Attempt})
}

// PreviewRun asks for the per-step diffs of one Candidate; ctx bounds it.
func (n *Notifier) PreviewRun(ctx context.Context, url string, p migration.PreviewRequest) ([]migration.StepPreview, error) {
	res, err := n.client(url).PreviewRun(ctx, connect.NewRequest(&migratorv1.PreviewRunRequest{
		MigrationId: p.MigrationID,
		Steps:       protoconv.StepsToProto(p.Steps),
		Candidate:   protoconv.CandidateToProto(p.Candidate),
		Inputs:      p.Inputs,
	}))
	if err != nil {
		return nil, classify(url, err)
	}
	return protoconv.StepPreviewsFromProto(res.Msg.GetSteps()), nil
}

// observe records one dispatch's latency and, if it failed, its failure.
// A dispatch cancelled by Loom itself (the step moved on) is neither.
func (n *Notifier) observe(ctx context.Context, migrationID string, start time.Time, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	outcome := "accepted"
	switch {
	case errors.Is(err, migration.ErrFailedPrecondition):
		outcome = "refused"
	case err != nil:
		outcome = "unavailable"
	}
	attrs := metric.WithAttributes(attribute.String("migration_id", migrationID), attribute.String("outcome", outcome))
	n.duration.Record(ctx, time.Since(start).Seconds(), attrs)
	if err != nil {
		n.failures.Add(ctx, 1, attrs)
	}
}

// refusals are the Migrator's answers that no retry can change; every other
// code is retried.
var refusals = map[connect.Code]bool{
	connect.CodeInvalidArgument:    true,
	connect.CodeNotFound:           true,
	connect.CodeUnimplemented:      true,
	connect.CodeFailedPrecondition: true,
	connect.CodePermissionDenied:   true,
	connect.CodeUnauthenticated:    true,
	connect.CodeOutOfRange:         true,
}

// classify sorts a call's failure: the Migrator's refusals become
// failed-precondition refusals carrying its message; everything else
// (refused connections, timeouts, 5xx) is unavailable and worth a retry.
func classify(url string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var perr *protocolError
	if errors.As(err, &perr) {
		return migration.FailedPrecondition(migration.ReasonMigratorRefused, "the Migrator at %s %s", url, perr.Error()).
			With("migrator_url", url).With("http_status", strconv.Itoa(perr.status))
	}
	code := connect.CodeOf(err)
	msg := err.Error()
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		msg = cerr.Message()
	}
	if refusals[code] {
		return migration.FailedPrecondition(migration.ReasonMigratorRefused, "the Migrator refused (%s): %s", code, msg).
			With("migrator_url", url).With("code", code.String())
	}
	return migration.Unavailable(migration.ReasonMigratorUnavailable, "the Migrator at %s is unavailable (%s): %s", url, code, msg).
		With("migrator_url", url)
}
