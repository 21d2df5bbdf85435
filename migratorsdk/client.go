package migratorsdk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
)

// Client is a typed client of the Loom services a Migrator calls.
type Client struct {
	registry  loomv1connect.RegistryServiceClient
	discovery loomv1connect.DiscoveryServiceClient
	events    loomv1connect.EventServiceClient
	runs      loomv1connect.RunServiceClient
}

// NewClient returns a client of the Loom API at loomURL (e.g.
// "http://localhost:8080"). A nil httpClient uses DefaultHTTPClient(). Add
// WithToken(token) to authenticate.
func NewClient(loomURL string, httpClient *http.Client, opts ...connect.ClientOption) *Client {
	if httpClient == nil {
		httpClient = DefaultHTTPClient()
	}
	return &Client{
		registry:  loomv1connect.NewRegistryServiceClient(httpClient, loomURL, opts...),
		discovery: loomv1connect.NewDiscoveryServiceClient(httpClient, loomURL, opts...),
		events:    loomv1connect.NewEventServiceClient(httpClient, loomURL, opts...),
		runs:      loomv1connect.NewRunServiceClient(httpClient, loomURL, opts...),
	}
}

// DefaultHTTPClient is the HTTP client the SDK calls Loom with when given
// none: each call ends within 30 s, and up to 100 idle connections to Loom
// are kept, so that many handlers reporting at once reuse connections
// instead of opening (and leaving in TIME_WAIT) one per report, as
// http.DefaultClient's 2 idle connections per host would.
func DefaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 100
	t.MaxIdleConns = 100
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// Announce creates or updates the Migration, to be dispatched at migratorURL.
func (c *Client) Announce(ctx context.Context, m Migration, migratorURL string) (created, updated bool, err error) {
	res, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: migrationToProto(m, migratorURL)}))
	if err != nil {
		return false, false, err
	}
	return res.Msg.GetCreated(), res.Msg.GetUpdated(), nil
}

// MaxSubmitBatch is the most Candidates one SubmitCandidates call carries.
const MaxSubmitBatch = 1000

// SubmitCandidates submits at most MaxSubmitBatch Candidates. complete ends
// a discovery pass named round (see Migrator.Discover, which batches).
func (c *Client) SubmitCandidates(ctx context.Context, migrationID string, cs []Candidate, complete bool, round string) (SubmitResult, error) {
	req := &loomv1.SubmitCandidatesRequest{MigrationId: migrationID, Complete: complete, Round: round}
	for _, cand := range cs {
		req.Candidates = append(req.Candidates, candidateToProto(cand))
	}
	res, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(req))
	if err != nil {
		return SubmitResult{}, err
	}
	m := res.Msg
	return SubmitResult{Added: m.GetAddedIds(), Updated: m.GetUpdatedIds(), Unchanged: m.GetUnchangedIds(),
		LeftAlone: m.GetLeftAloneIds(), NoLongerDiscovered: m.GetNoLongerDiscoveredIds()}, nil
}

// ReportStep sends one step report. changed is false for a repeat of the
// step's current state.
func (c *Client) ReportStep(ctx context.Context, r Report) (changed bool, err error) {
	res, err := c.events.ReportStepStatus(ctx, connect.NewRequest(&loomv1.ReportStepStatusRequest{
		RunId:         r.RunID,
		Execution:     r.Execution,
		StepName:      r.Step,
		Attempt:       int32(r.Attempt),
		Status:        statusToProto(r.Status),
		PrUrl:         r.PRURL,
		Metadata:      r.Metadata,
		Message:       r.Message,
		CallbackToken: r.CallbackToken,
	}))
	if err != nil {
		return false, err
	}
	return res.Msg.GetChanged(), nil
}

// ResumeSteps asks Loom to dispatch again every step of the Migration that
// is in progress (see Migrator.Start), and says how many it did.
func (c *Client) ResumeSteps(ctx context.Context, migrationID string) (int64, error) {
	res, err := c.events.ResumeSteps(ctx, connect.NewRequest(&loomv1.ResumeStepsRequest{MigrationId: migrationID}))
	if err != nil {
		return 0, err
	}
	return res.Msg.GetResumed(), nil
}

// OpenSteps lists the steps of the Migration's running Runs whose pull
// request waits for its merge.
func (c *Client) OpenSteps(ctx context.Context, migrationID string) ([]OpenStep, error) {
	var out []OpenStep
	token := ""
	for {
		res, err := c.runs.ListRuns(ctx, connect.NewRequest(&loomv1.ListRunsRequest{
			MigrationId:       migrationID,
			Status:            loomv1.RunStatus_RUN_STATUS_RUNNING,
			CurrentStepStatus: loomv1.StepStatus_STEP_STATUS_OPEN,
			PageSize:          1000,
			PageToken:         token,
		}))
		if err != nil {
			return nil, err
		}
		for _, r := range res.Msg.GetRuns() {
			for _, s := range r.GetStepResults() {
				if s.GetStepName() == r.GetCurrentStep() {
					out = append(out, OpenStep{RunID: r.GetId(), Execution: r.GetExecution(), Step: s.GetStepName(),
						Attempt: int(s.GetAttempt()), CandidateID: r.GetCandidateId(), PRURL: s.GetPrUrl(), Metadata: s.GetMetadata(),
						CallbackToken: s.GetCallbackToken()})
				}
			}
		}
		if token = res.Msg.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// IsRefused reports whether err is Loom refusing a request for good (a
// stale or illegal report, an unknown Run, bad input): retrying it cannot
// succeed. Other errors (Loom unreachable, overloaded) are worth a retry.
func IsRefused(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeFailedPrecondition, connect.CodeNotFound, connect.CodeInvalidArgument,
		connect.CodeAlreadyExists, connect.CodePermissionDenied, connect.CodeUnauthenticated, connect.CodeUnimplemented:
		return true
	}
	return false
}

// RefusalReason returns the reason Loom gave for refusing a request: the
// `reason` of the google.rpc.ErrorInfo it attaches, read as the API's
// ErrorReason, e.g. loomv1.ErrorReason_STEP_NOT_CURRENT (docs/api.md lists
// them, and which RPC answers which). It returns
// loomv1.ErrorReason_ERROR_REASON_UNSPECIFIED when err carries no reason,
// or one this SDK does not know (a newer Loom's): act on the code then.
func RefusalReason(err error) loomv1.ErrorReason {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return loomv1.ErrorReason_ERROR_REASON_UNSPECIFIED
	}
	for _, d := range cerr.Details() {
		if v, derr := d.Value(); derr == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
				return loomv1.ErrorReason(loomv1.ErrorReason_value[info.GetReason()])
			}
		}
	}
	return loomv1.ErrorReason_ERROR_REASON_UNSPECIFIED
}

// errorDomain is the domain of the ErrorInfo Loom attaches to refusals.
const errorDomain = "loom.dev"

// retryFor bounds how long a call to Loom is retried while Loom cannot be
// reached. It outlasts a Loom restart or a store outage by far; a step
// whose report is given up on is not lost, since Loom dispatches it again
// when its lease runs out and the SDK then sends the report again.
const retryFor = time.Hour

// transient reports whether Loom may answer differently if asked again:
// it was unreachable, overloaded, or restarting. A connection cut
// mid-answer is Unknown, or Canceled although ctx is alive (the peer went
// away, not the caller). Anything else, Internal included, would fail the
// same way again.
func transient(ctx context.Context, err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeResourceExhausted, connect.CodeAborted, connect.CodeUnknown:
		return true
	case connect.CodeCanceled:
		return ctx.Err() == nil
	}
	return false
}

// retry calls f until it succeeds, fails in a way a retry cannot help
// (see transient), ctx ends, or retryFor has passed, waiting with capped
// exponential backoff in between. onRetry sees each transient failure.
func retry(ctx context.Context, f func() error, onRetry func(err error, wait time.Duration)) error {
	wait := 100 * time.Millisecond
	deadline := time.Now().Add(retryFor)
	for {
		err := f()
		if err == nil || !transient(ctx, err) {
			return err
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("gave up after retrying for %s: %w", retryFor, err)
		}
		if onRetry != nil {
			onRetry(err, wait)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// WithToken authenticates every call to Loom with a bearer token (a Loom
// token of the migrator role, or your identity provider's access token).
func WithToken(token string) connect.ClientOption {
	return connect.WithInterceptors(bearer(token))
}

type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// SigningKeys returns the public keys Loom signs its calls with; none when
// Loom does not sign (it does not authenticate callers).
func (c *Client) SigningKeys(ctx context.Context) (map[string][]byte, error) {
	res, err := c.registry.ListSigningKeys(ctx, connect.NewRequest(&loomv1.ListSigningKeysRequest{}))
	if connect.CodeOf(err) == connect.CodeUnimplemented {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keys := map[string][]byte{}
	for _, k := range res.Msg.GetKeys() {
		if k.GetAlgorithm() == "Ed25519" {
			keys[k.GetId()] = k.GetPublicKey()
		}
	}
	return keys, nil
}
