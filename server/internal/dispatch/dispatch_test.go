package dispatch_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	migratorv1 "github.com/loomhq/loom/gen/loom/migrator/v1"
	"github.com/loomhq/loom/gen/loom/migrator/v1/migratorv1connect"
	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/dispatch"
	"github.com/loomhq/loom/server/internal/migration"
)

// migrator answers every call with err (nil: accepts), after delay.
type migrator struct {
	migratorv1connect.UnimplementedMigratorServiceHandler
	err   error
	delay time.Duration
	got   *migratorv1.ExecuteStepRequest
}

func (m *migrator) ExecuteStep(ctx context.Context, req *connect.Request[migratorv1.ExecuteStepRequest]) (*connect.Response[migratorv1.ExecuteStepResponse], error) {
	m.got = req.Msg
	select {
	case <-time.After(m.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if m.err != nil {
		return nil, m.err
	}
	return connect.NewResponse(&migratorv1.ExecuteStepResponse{}), nil
}

func serve(t *testing.T, m *migrator) string {
	_, h := migratorv1connect.NewMigratorServiceHandler(m)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

var dispatchOne = migration.Dispatch{
	RunID: "m__c", Execution: 3, MigrationID: "m", Attempt: 2, StepIndex: 1,
	Step:      migration.StepDefinition{Name: "s", Type: "t", Config: map[string]string{"k": "v"}},
	Candidate: migration.Candidate{ID: "c", Kind: "service"},
	Inputs:    map[string]string{"target": "1.23"},
}

func TestDispatchCarriesTheStep(t *testing.T) {
	m := &migrator{}
	if err := dispatch.New(dispatch.Options{}).ExecuteStep(context.Background(), serve(t, m), dispatchOne); err != nil {
		t.Fatal(err)
	}
	g := m.got
	if g.RunId != "m__c" || g.Execution != 3 || g.Attempt != 2 || g.StepIndex != 1 || g.Step.Config["k"] != "v" ||
		g.Candidate.Id != "c" || g.Inputs["target"] != "1.23" {
		t.Fatalf("the Migrator got %v", g)
	}
}

// The callback token a dispatch carries is signed here, bound to its Run
// execution, step and attempt: the Migrator's reports must carry it.
func TestDispatchCarriesASignedCallbackToken(t *testing.T) {
	key, _ := auth.NewCallbackKey("c1")
	callbacks, err := auth.NewCallbacks(key)
	if err != nil {
		t.Fatal(err)
	}
	m := &migrator{}
	if err := dispatch.New(dispatch.Options{Callbacks: callbacks}).ExecuteStep(context.Background(), serve(t, m), dispatchOne); err != nil {
		t.Fatal(err)
	}
	b := auth.Binding{RunID: "m__c", Execution: 3, Step: "s", Attempt: 2}
	if err := callbacks.Verify(m.got.CallbackToken, b); err != nil {
		t.Fatalf("token %q: %v", m.got.CallbackToken, err)
	}
	b.Attempt = 3
	if callbacks.Verify(m.got.CallbackToken, b) == nil {
		t.Fatal("the token is good for another attempt")
	}
}

func TestFailuresAreSortedIntoRetryAndRefusal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		m     *migrator
		url   string
		kind  error
		delay time.Duration
	}{
		{"unavailable", &migrator{err: connect.NewError(connect.CodeUnavailable, errors.New("busy"))}, "", migration.ErrUnavailable, 0},
		{"internal", &migrator{err: connect.NewError(connect.CodeInternal, errors.New("bug"))}, "", migration.ErrUnavailable, 0},
		{"invalid argument", &migrator{err: connect.NewError(connect.CodeInvalidArgument, errors.New("no such step type"))}, "", migration.ErrFailedPrecondition, 0},
		{"unimplemented", &migrator{err: connect.NewError(connect.CodeUnimplemented, errors.New("nope"))}, "", migration.ErrFailedPrecondition, 0},
		{"failed precondition", &migrator{err: connect.NewError(connect.CodeFailedPrecondition, errors.New("repo archived"))}, "", migration.ErrFailedPrecondition, 0},
		{"too slow", &migrator{delay: time.Second}, "", migration.ErrUnavailable, 0},
		{"nobody listening", nil, "http://127.0.0.1:1", migration.ErrUnavailable, 0},
	} {

		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if tc.m != nil {
				url = serve(t, tc.m)
			}
			n := dispatch.New(dispatch.Options{CallTimeout: 200 * time.Millisecond})
			err := n.ExecuteStep(context.Background(), url, dispatchOne)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("got %v, want %v", err, tc.kind)
			}
			var ref *migration.Refusal
			if !errors.As(err, &ref) || ref.Metadata["migrator_url"] != url {
				t.Fatalf("refusal %+v does not name the Migrator", ref)
			}
		})
	}
}

// A URL that answers, but not as a Migrator (a web page, another service's
// 404, a proxy's refusal), fails the step at once with what it answered;
// a server error or a rate limit in any form is still worth a retry.
func TestAnAnswerThatIsNoMigratorsIsARefusal(t *testing.T) {
	for _, tc := range []struct {
		name        string
		status      int
		contentType string
		kind        error
	}{
		{"a web page", http.StatusOK, "text/html; charset=utf-8", migration.ErrFailedPrecondition},
		{"another service's 404", http.StatusNotFound, "text/plain", migration.ErrFailedPrecondition},
		{"a proxy's login", http.StatusUnauthorized, "text/html", migration.ErrFailedPrecondition},
		{"a proxy's 502 page", http.StatusBadGateway, "text/html", migration.ErrUnavailable},
		{"rate limited", http.StatusTooManyRequests, "text/plain", migration.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte("<html>hello</html>"))
			}))
			t.Cleanup(srv.Close)
			err := dispatch.New(dispatch.Options{}).ExecuteStep(context.Background(), srv.URL, dispatchOne)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("got %v, want %v", err, tc.kind)
			}
			if tc.kind == migration.ErrFailedPrecondition && !strings.Contains(err.Error(), "not a MigratorService answer") {
				t.Fatalf("the reason does not say what was wrong: %v", err)
			}
		})
	}
}
