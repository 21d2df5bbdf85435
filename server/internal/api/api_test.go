package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server/internal/api"
	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/redistest"
	"github.com/loomhq/loom/server/internal/store"
)

// testAPI is the API on a real Redis, served over HTTP/1.1 and cleartext
// HTTP/2 like the production server.
type testAPI struct {
	url       string
	store     *store.Store
	redis     *redistest.Server
	migrators *fakeMigrators
}

// fakeMigrators stands in for the Migrators: previews answer one empty
// preview per step and are kept; dispatches find nobody.
type fakeMigrators struct {
	mu       sync.Mutex
	previews []migration.PreviewRequest
}

func (f *fakeMigrators) ExecuteStep(context.Context, string, migration.Dispatch) error {
	return migration.Unavailable(migration.ReasonMigratorUnavailable, "no Migrator in these tests")
}

func (f *fakeMigrators) PreviewRun(_ context.Context, _ string, p migration.PreviewRequest) ([]migration.StepPreview, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.previews = append(f.previews, p)
	out := make([]migration.StepPreview, len(p.Steps))
	for i, s := range p.Steps {
		out[i] = migration.StepPreview{StepName: s.Name}
	}
	return out, nil
}

func (f *fakeMigrators) asked() []migration.PreviewRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.previews)
}

func newTestAPI(t *testing.T) *testAPI {
	t.Helper()
	rs := redistest.Start(t)
	st := store.New(redis.NewClient(&redis.Options{Addr: rs.Addr()}))
	t.Cleanup(func() { _ = st.Close() })
	clock := func() time.Time { return time.Now().UTC() }
	migrators := &fakeMigrators{}
	h := api.NewHandler(api.Options{
		Registry:  &migration.Registry{Store: st, Now: clock},
		Discovery: &migration.Discovery{Store: st, Now: clock},
		// Reads of Runs come from the store alone; the ExecutionEngine is
		// exercised by the server's end-to-end tests.
		Runs:        &migration.Runs{Store: st, Now: clock, Migrators: migrators},
		History:     &migration.History{Store: st, Now: clock},
		Metrics:     &migration.Metrics{Store: st, Now: clock},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:       st.Ping,
		CORSOrigins: []string{"https://console.example"},
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return &testAPI{url: srv.URL, store: st, redis: rs, migrators: migrators}
}

// h2c is an HTTP client speaking cleartext HTTP/2, as gRPC needs.
func h2c() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}

// protocols are the wire protocols every client test runs over.
var protocols = []struct {
	name   string
	client func() *http.Client
	opts   []connect.ClientOption
}{
	{"connect-json", func() *http.Client { return http.DefaultClient }, []connect.ClientOption{connect.WithProtoJSON()}},
	{"connect-proto", func() *http.Client { return http.DefaultClient }, nil},
	{"grpc", h2c, []connect.ClientOption{connect.WithGRPC()}},
	{"grpc-web", func() *http.Client { return http.DefaultClient }, []connect.ClientOption{connect.WithGRPCWeb()}},
}

type clients struct {
	registry  loomv1connect.RegistryServiceClient
	discovery loomv1connect.DiscoveryServiceClient
	runs      loomv1connect.RunServiceClient
	events    loomv1connect.EventServiceClient
}

func (a *testAPI) clients(hc *http.Client, opts ...connect.ClientOption) clients {
	return clients{
		registry:  loomv1connect.NewRegistryServiceClient(hc, a.url, opts...),
		discovery: loomv1connect.NewDiscoveryServiceClient(hc, a.url, opts...),
		runs:      loomv1connect.NewRunServiceClient(hc, a.url, opts...),
		events:    loomv1connect.NewEventServiceClient(hc, a.url, opts...),
	}
}

func sampleMigration(id string) *loomv1.Migration {
	return &loomv1.Migration{
		Id:          id,
		Name:        "Upgrade Go",
		Description: "Move every service to Go 1.23.",
		Steps: []*loomv1.StepDefinition{
			{Name: "bump-go", Type: "open-pr", Config: map[string]string{"go_version": "1.23"}},
			{Name: "review", Type: "manual-review"},
		},
		RequiredInputs: []*loomv1.InputDefinition{{Name: "target_version", Label: "Target Go version"}},
		MigratorUrl:    "http://127.0.0.1:9999",
	}
}

func sampleCandidate(id, kind string) *loomv1.Candidate {
	return &loomv1.Candidate{
		Id:       id,
		Kind:     kind,
		Metadata: map[string]string{"team": "payments"},
		Files:    []*loomv1.FileGroup{{Name: "go.mod", Files: []*loomv1.FileRef{{Path: "go.mod"}}}},
	}
}

func wantCode(t *testing.T, err error, code connect.Code) *connect.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", code)
	}
	if got := connect.CodeOf(err); got != code {
		t.Fatalf("got code %v (%v), want %v", got, err, code)
	}
	var cerr *connect.Error
	errors.As(err, &cerr)
	return cerr
}

func errorInfo(t *testing.T, cerr *connect.Error) *errdetails.ErrorInfo {
	t.Helper()
	for _, d := range cerr.Details() {
		v, err := d.Value()
		if err != nil {
			t.Fatalf("decode error detail: %v", err)
		}
		if info, ok := v.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	t.Fatalf("error %v has no ErrorInfo detail", cerr)
	return nil
}

func TestRegistryAndDiscoveryOverEveryProtocol(t *testing.T) {
	a := newTestAPI(t)
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			ctx := context.Background()
			c := a.clients(p.client(), p.opts...)
			id := "go-upgrade-" + strings.ReplaceAll(p.name, "-", "")

			ann, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration(id)}))
			if err != nil {
				t.Fatalf("announce: %v", err)
			}
			if !ann.Msg.Created || ann.Msg.Updated {
				t.Fatalf("first announce: created=%v updated=%v, want created only", ann.Msg.Created, ann.Msg.Updated)
			}
			if ann.Msg.Migration.GetCreateTime() == nil || len(ann.Msg.Migration.GetSteps()) != 2 {
				t.Fatalf("announce returned %v", ann.Msg.Migration)
			}

			sub, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
				MigrationId: id,
				Candidates:  []*loomv1.Candidate{sampleCandidate("acme/payments", "service"), sampleCandidate("acme/orders", "service")},
			}))
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			if sub.Msg.AddedCount != 2 {
				t.Fatalf("submit added %d, want 2: %v", sub.Msg.AddedCount, sub.Msg)
			}

			list, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: id}))
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			if got := ids(list.Msg.Candidates); got != "acme/orders,acme/payments" {
				t.Fatalf("listed %s", got)
			}
			if list.Msg.Candidates[0].Status != loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED ||
				list.Msg.Candidates[0].MigrationId != id || list.Msg.Candidates[0].Metadata["team"] != "payments" {
				t.Fatalf("candidate came back as %v", list.Msg.Candidates[0])
			}

			got, err := c.registry.GetMigration(ctx, connect.NewRequest(&loomv1.GetMigrationRequest{MigrationId: id}))
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if got.Msg.Migration.GetCandidateCounts().GetNotStarted() != 2 || got.Msg.Migration.GetCandidateCounts().GetTotal() != 2 {
				t.Fatalf("counts %v", got.Msg.Migration.GetCandidateCounts())
			}
			if k := got.Msg.Migration.GetCandidateKinds(); len(k) != 1 || k["service"] != 2 {
				t.Fatalf("kinds %v, want service: 2", k)
			}
			all, err := c.registry.ListMigrations(ctx, connect.NewRequest(&loomv1.ListMigrationsRequest{}))
			if err != nil {
				t.Fatalf("list migrations: %v", err)
			}
			for _, m := range all.Msg.Migrations {
				if m.Id == id && (m.GetCandidateKinds()["service"] != 2 || m.GetCandidateCounts().GetTotal() != 2) {
					t.Fatalf("listed %s with kinds %v counts %v", id, m.GetCandidateKinds(), m.GetCandidateCounts())
				}
			}
		})
	}
}

func ids(cs []*loomv1.Candidate) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Id)
	}
	return strings.Join(out, ",")
}

func TestAnnounceIsIdempotentAndKeepsCandidates(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	c := a.clients(http.DefaultClient)
	m := sampleMigration("keep")
	if _, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: m})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
		MigrationId: "keep", Candidates: []*loomv1.Candidate{sampleCandidate("a", "service")},
	})); err != nil {
		t.Fatal(err)
	}

	again, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: m}))
	if err != nil {
		t.Fatal(err)
	}
	if again.Msg.Created || again.Msg.Updated {
		t.Fatalf("identical re-announce: created=%v updated=%v", again.Msg.Created, again.Msg.Updated)
	}

	m.Description = "Now with a better description."
	m.Steps = append(m.Steps, &loomv1.StepDefinition{Name: "cleanup", Type: "open-pr"})
	changed, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: m}))
	if err != nil {
		t.Fatal(err)
	}
	if !changed.Msg.Updated || len(changed.Msg.Migration.Steps) != 3 {
		t.Fatalf("changed re-announce: updated=%v steps=%d", changed.Msg.Updated, len(changed.Msg.Migration.Steps))
	}
	if !changed.Msg.Migration.UpdateTime.AsTime().After(changed.Msg.Migration.CreateTime.AsTime()) &&
		!changed.Msg.Migration.UpdateTime.AsTime().Equal(changed.Msg.Migration.CreateTime.AsTime()) {
		t.Fatalf("update time %v before create time %v", changed.Msg.Migration.UpdateTime, changed.Msg.Migration.CreateTime)
	}
	if n := changed.Msg.Migration.CandidateCounts.GetTotal(); n != 1 {
		t.Fatalf("re-announce left %d candidates, want 1", n)
	}
	got, err := c.discovery.GetCandidate(ctx, connect.NewRequest(&loomv1.GetCandidateRequest{MigrationId: "keep", CandidateId: "a"}))
	if err != nil || got.Msg.Candidate.Kind != "service" {
		t.Fatalf("candidate after re-announce: %v, %v", got, err)
	}
}

func TestResubmitLeavesRunningAndCompletedAlone(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	c := a.clients(http.DefaultClient)
	if _, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("fleet")})); err != nil {
		t.Fatal(err)
	}
	first := []*loomv1.Candidate{sampleCandidate("idle", "service"), sampleCandidate("busy", "service"), sampleCandidate("done", "service")}
	if _, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{MigrationId: "fleet", Candidates: first})); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := a.store.SetCandidateStatus(ctx, "fleet", "busy", migration.CandidateNotStarted, migration.CandidateRunning, now); err != nil {
		t.Fatal(err)
	}
	for _, to := range []migration.CandidateStatus{migration.CandidateRunning, migration.CandidateCompleted} {
		from := migration.CandidateNotStarted
		if to == migration.CandidateCompleted {
			from = migration.CandidateRunning
		}
		if err := a.store.SetCandidateStatus(ctx, "fleet", "done", from, to, now); err != nil {
			t.Fatal(err)
		}
	}
	before := map[string]*loomv1.Candidate{}
	for _, id := range []string{"busy", "done"} {
		r, err := c.discovery.GetCandidate(ctx, connect.NewRequest(&loomv1.GetCandidateRequest{MigrationId: "fleet", CandidateId: id}))
		if err != nil {
			t.Fatal(err)
		}
		before[id] = r.Msg.Candidate
	}

	// Re-discovery with changed data for everyone, plus a newcomer.
	second := []*loomv1.Candidate{sampleCandidate("idle", "repository"), sampleCandidate("busy", "repository"), sampleCandidate("done", "repository"), sampleCandidate("new", "service")}
	for _, cand := range second {
		cand.Metadata["team"] = "platform"
	}
	res, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{MigrationId: "fleet", Candidates: second}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Msg.LeftAloneIds, ","); got != "busy,done" {
		t.Errorf("left alone %q, want busy,done", got)
	}
	if got := strings.Join(res.Msg.UpdatedIds, ","); got != "idle" {
		t.Errorf("updated %q, want idle", got)
	}
	if got := strings.Join(res.Msg.AddedIds, ","); got != "new" {
		t.Errorf("added %q, want new", got)
	}
	if res.Msg.LeftAloneCount != 2 || res.Msg.UpdatedCount != 1 || res.Msg.AddedCount != 1 {
		t.Errorf("counts %v", res.Msg)
	}
	for id, want := range before {
		r, err := c.discovery.GetCandidate(ctx, connect.NewRequest(&loomv1.GetCandidateRequest{MigrationId: "fleet", CandidateId: id}))
		if err != nil {
			t.Fatal(err)
		}
		if r.Msg.Candidate.String() != want.String() {
			t.Errorf("%s changed by re-discovery:\nbefore %v\nafter  %v", id, want, r.Msg.Candidate)
		}
	}
	running, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{
		MigrationId: "fleet", Status: loomv1.CandidateStatus_CANDIDATE_STATUS_RUNNING,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if ids(running.Msg.Candidates) != "busy" || running.Msg.TotalSize != 1 {
		t.Errorf("running candidates: %s (total %d)", ids(running.Msg.Candidates), running.Msg.TotalSize)
	}
}

func TestListCandidatesPagesAndFilters(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	c := a.clients(http.DefaultClient)
	if _, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("paged")})); err != nil {
		t.Fatal(err)
	}
	var cands []*loomv1.Candidate
	for i := range 25 {
		kind := "service"
		if i%5 == 0 {
			kind = "topic"
		}
		cands = append(cands, sampleCandidate(string(rune('a'+i))+"-svc", kind))
	}
	if _, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{MigrationId: "paged", Candidates: cands})); err != nil {
		t.Fatal(err)
	}

	var seen []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		res, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{
			MigrationId: "paged", PageSize: 10, PageToken: token,
		}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.TotalSize != 25 {
			t.Fatalf("total %d, want 25", res.Msg.TotalSize)
		}
		for _, cand := range res.Msg.Candidates {
			seen = append(seen, cand.Id)
		}
		if token = res.Msg.NextPageToken; token == "" {
			break
		}
	}
	if len(seen) != 25 || seen[0] != "a-svc" || seen[24] != "y-svc" {
		t.Fatalf("paged through %d candidates: %v", len(seen), seen)
	}

	topics, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "paged", Kind: "topic", PageSize: 2}))
	if err != nil {
		t.Fatal(err)
	}
	if ids(topics.Msg.Candidates) != "a-svc,f-svc" || topics.Msg.TotalSize != 5 || topics.Msg.NextPageToken == "" {
		t.Fatalf("topics page: %s total %d", ids(topics.Msg.Candidates), topics.Msg.TotalSize)
	}

	// A token is bound to its filters, its order and its direction.
	for _, other := range []*loomv1.ListCandidatesRequest{
		{MigrationId: "paged", Kind: "service"},
		{MigrationId: "paged", Kind: "topic", Descending: true},
		{MigrationId: "paged", Kind: "topic", OrderBy: loomv1.CandidateOrder_CANDIDATE_ORDER_LAST_CHANGE},
		{MigrationId: "paged", Kind: "topic", Metadata: map[string]string{"team": "payments"}},
		{MigrationId: "paged", Kind: "topic", IdPrefix: "a"},
	} {
		other.PageToken = topics.Msg.NextPageToken
		_, err = c.discovery.ListCandidates(ctx, connect.NewRequest(other))
		cerr := wantCode(t, err, connect.CodeInvalidArgument)
		if !strings.Contains(cerr.Message(), "page_token") {
			t.Fatalf("refusal does not name page_token: %v", cerr)
		}
	}

	// Filters and orders combine; every page of a descending listing by
	// last change carries each row's progress and last change.
	if _, err := c.discovery.UpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.UpdateCandidateInputsRequest{
		MigrationId: "paged", CandidateId: "l-svc", Inputs: map[string]string{"tag": "v2"},
	})); err != nil {
		t.Fatal(err)
	}
	var order []string
	token = ""
	for {
		res, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{
			MigrationId: "paged", Kind: "service", Metadata: map[string]string{"team": "payments"}, IdPrefix: "l",
			OrderBy: loomv1.CandidateOrder_CANDIDATE_ORDER_LAST_CHANGE, Descending: true, PageSize: 1, PageToken: token,
		}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.TotalSize != 1 {
			t.Fatalf("total %d, want 1", res.Msg.TotalSize)
		}
		for _, cand := range res.Msg.Candidates {
			order = append(order, cand.Id)
			if cand.LastChangeTime == nil || len(res.Msg.Progress) != 1 ||
				res.Msg.Progress[cand.Id].GetRunStatus() != loomv1.RunStatus_RUN_STATUS_UNSPECIFIED {
				t.Errorf("row %v progress %v", cand, res.Msg.Progress)
			}
		}
		if token = res.Msg.NextPageToken; token == "" {
			break
		}
	}
	if strings.Join(order, ",") != "l-svc" {
		t.Errorf("listed %v", order)
	}
	res, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{
		MigrationId: "paged", OrderBy: loomv1.CandidateOrder_CANDIDATE_ORDER_LAST_CHANGE, Descending: true, PageSize: 2,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if ids(res.Msg.Candidates) != "l-svc,y-svc" || res.Msg.TotalSize != 25 {
		t.Errorf("latest changes: %s (total %d)", ids(res.Msg.Candidates), res.Msg.TotalSize)
	}
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			c := a.clients(p.client(), p.opts...)
			cases := []struct {
				name  string
				call  func() error
				field string
			}{
				{"migration id with underscore", func() error {
					m := sampleMigration("bad_id")
					_, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: m}))
					return err
				}, "migration.id"},
				{"no steps", func() error {
					m := sampleMigration("bad-steps")
					m.Steps = nil
					_, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: m}))
					return err
				}, "migration.steps"},
				{"duplicate step names", func() error {
					m := sampleMigration("bad-dup")
					m.Steps[1].Name = m.Steps[0].Name
					_, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: m}))
					return err
				}, "migration"},
				{"migrator url not http", func() error {
					m := sampleMigration("bad-url")
					m.MigratorUrl = "ftp://example.com"
					_, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: m}))
					return err
				}, "migration.migrator_url"},
				{"dispatch lease under 10 s", func() error {
					m := sampleMigration("bad-lease")
					m.DispatchLease = durationpb.New(time.Second)
					_, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: m}))
					return err
				}, "migration.dispatch_lease"},
				{"lease for a step type that is no type", func() error {
					m := sampleMigration("bad-lease-type")
					m.DispatchLeaseByType = map[string]*durationpb.Duration{"Build Image": durationpb.New(time.Hour)}
					_, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: m}))
					return err
				}, "migration.dispatch_lease_by_type"},
				{"missing migration", func() error {
					_, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{}))
					return err
				}, "migration"},
				{"candidate id starting with a dash", func() error {
					_, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
						MigrationId: "whatever", Candidates: []*loomv1.Candidate{sampleCandidate("-x", "service")},
					}))
					return err
				}, "candidates[0].id"},
				{"duplicate candidate ids", func() error {
					_, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
						MigrationId: "whatever", Candidates: []*loomv1.Candidate{sampleCandidate("x", "service"), sampleCandidate("x", "service")},
					}))
					return err
				}, "candidates[1].id"},
				{"duplicate step names in a Candidate's own steps", func() error {
					cand := sampleCandidate("x", "service")
					steps := sampleMigration("whatever").Steps
					cand.Steps = append(steps, steps[0])
					_, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
						MigrationId: "whatever", Candidates: []*loomv1.Candidate{cand},
					}))
					return err
				}, "candidates[0].steps[2].name"},
				{"no candidates", func() error {
					_, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{MigrationId: "whatever"}))
					return err
				}, "candidates"},
				{"page size too large", func() error {
					_, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "whatever", PageSize: 5000}))
					return err
				}, "page_size"},
				{"garbage page token", func() error {
					_, err := c.registry.ListMigrations(ctx, connect.NewRequest(&loomv1.ListMigrationsRequest{PageToken: "not-a-token"}))
					return err
				}, "page_token"},
				{"garbage candidate page token", func() error {
					_, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "whatever", PageToken: "not-a-token"}))
					return err
				}, "page_token"},
				{"current step not a step name", func() error {
					_, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "whatever", CurrentStep: "Bump_It"}))
					return err
				}, "current_step"},
				{"undefined current step status", func() error {
					_, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "whatever", CurrentStepStatus: 42}))
					return err
				}, "current_step_status"},
				{"id prefix with a space", func() error {
					_, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "whatever", IdPrefix: "acme pay"}))
					return err
				}, "id_prefix"},
				{"too many metadata filters", func() error {
					_, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "whatever",
						Metadata: map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}}))
					return err
				}, "metadata"},
				{"empty metadata key", func() error {
					_, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "whatever", Metadata: map[string]string{"": "x"}}))
					return err
				}, "metadata"},
				{"undefined order", func() error {
					_, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "whatever", OrderBy: 9}))
					return err
				}, "order_by"},
				{"empty input update", func() error {
					_, err := c.discovery.UpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.UpdateCandidateInputsRequest{MigrationId: "whatever", CandidateId: "x"}))
					return err
				}, "inputs"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					cerr := wantCode(t, tc.call(), connect.CodeInvalidArgument)
					if !strings.Contains(cerr.Message(), tc.field) {
						t.Fatalf("refusal %q does not name %s", cerr.Message(), tc.field)
					}
				})
			}
			res, err := c.registry.ListMigrations(ctx, connect.NewRequest(&loomv1.ListMigrationsRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Msg.Migrations) != 0 {
				t.Fatalf("refused requests stored %d migrations", len(res.Msg.Migrations))
			}
		})
	}
}

func TestUnknownIdsAreNotFound(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	c := a.clients(h2c(), connect.WithGRPC())
	_, err := c.registry.GetMigration(ctx, connect.NewRequest(&loomv1.GetMigrationRequest{MigrationId: "nope"}))
	if info := errorInfo(t, wantCode(t, err, connect.CodeNotFound)); info.Reason != migration.ReasonMigrationNotFound || info.Domain != api.ErrorDomain {
		t.Fatalf("error info %v", info)
	}
	_, err = c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
		MigrationId: "nope", Candidates: []*loomv1.Candidate{sampleCandidate("x", "service")},
	}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "nope"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.registry.DeleteMigration(ctx, connect.NewRequest(&loomv1.DeleteMigrationRequest{MigrationId: "nope"}))
	wantCode(t, err, connect.CodeNotFound)

	if _, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("real")})); err != nil {
		t.Fatal(err)
	}
	_, err = c.discovery.GetCandidate(ctx, connect.NewRequest(&loomv1.GetCandidateRequest{MigrationId: "real", CandidateId: "ghost"}))
	if info := errorInfo(t, wantCode(t, err, connect.CodeNotFound)); info.Reason != migration.ReasonCandidateNotFound {
		t.Fatalf("error info %v", info)
	}
	_, err = c.discovery.UpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.UpdateCandidateInputsRequest{
		MigrationId: "real", CandidateId: "ghost", Inputs: map[string]string{"a": "b"},
	}))
	wantCode(t, err, connect.CodeNotFound)
}

func TestDeleteRefusedWhileRunning(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	c := a.clients(http.DefaultClient)
	if _, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("del")})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
		MigrationId: "del", Candidates: []*loomv1.Candidate{sampleCandidate("a", "service"), sampleCandidate("b", "service")},
	})); err != nil {
		t.Fatal(err)
	}
	if err := a.store.SetCandidateStatus(ctx, "del", "a", migration.CandidateNotStarted, migration.CandidateRunning, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err := c.registry.DeleteMigration(ctx, connect.NewRequest(&loomv1.DeleteMigrationRequest{MigrationId: "del"}))
	if info := errorInfo(t, wantCode(t, err, connect.CodeFailedPrecondition)); info.Reason != migration.ReasonMigrationHasRunning {
		t.Fatalf("error info %v", info)
	}
	if _, err := c.discovery.GetCandidate(ctx, connect.NewRequest(&loomv1.GetCandidateRequest{MigrationId: "del", CandidateId: "b"})); err != nil {
		t.Fatalf("refused delete removed a candidate: %v", err)
	}

	if err := a.store.SetCandidateStatus(ctx, "del", "a", migration.CandidateRunning, migration.CandidateNotStarted, time.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := c.registry.DeleteMigration(ctx, connect.NewRequest(&loomv1.DeleteMigrationRequest{MigrationId: "del"}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.DeletedCandidates != 2 {
		t.Fatalf("deleted %d candidates, want 2", res.Msg.DeletedCandidates)
	}
	_, err = c.registry.GetMigration(ctx, connect.NewRequest(&loomv1.GetMigrationRequest{MigrationId: "del"}))
	wantCode(t, err, connect.CodeNotFound)
}

func TestUpdateCandidateInputs(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	c := a.clients(http.DefaultClient, connect.WithProtoJSON())
	if _, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("inputs")})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
		MigrationId: "inputs", Candidates: []*loomv1.Candidate{sampleCandidate("a", "service")},
	})); err != nil {
		t.Fatal(err)
	}
	set := func(in map[string]string, remove ...string) map[string]string {
		t.Helper()
		r, err := c.discovery.UpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.UpdateCandidateInputsRequest{
			MigrationId: "inputs", CandidateId: "a", Inputs: in, RemoveInputs: remove,
		}))
		if err != nil {
			t.Fatal(err)
		}
		return r.Msg.Candidate.Inputs
	}
	if got := set(map[string]string{"target_version": "1.23", "owner": "me"}); len(got) != 2 || got["target_version"] != "1.23" {
		t.Fatalf("inputs %v", got)
	}
	if got := set(map[string]string{"target_version": "1.24"}, "owner"); len(got) != 1 || got["target_version"] != "1.24" {
		t.Fatalf("inputs %v", got)
	}
	// Re-discovery does not touch stored inputs.
	if _, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
		MigrationId: "inputs", Candidates: []*loomv1.Candidate{sampleCandidate("a", "repository")},
	})); err != nil {
		t.Fatal(err)
	}
	r, err := c.discovery.GetCandidate(ctx, connect.NewRequest(&loomv1.GetCandidateRequest{MigrationId: "inputs", CandidateId: "a"}))
	if err != nil || r.Msg.Candidate.Inputs["target_version"] != "1.24" || r.Msg.Candidate.Kind != "repository" {
		t.Fatalf("after re-discovery: %v %v", r, err)
	}
}

// PreviewRun refuses a preview that lacks a required input as StartRun
// refuses the start (the same code, reason and inputs named), before the
// Migrator is asked; inputs stored on the Candidate count.
func TestPreviewRefusesMissingInputsLikeStart(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	setup := a.clients(http.DefaultClient)
	if _, err := setup.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("preview")})); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
		MigrationId: "preview", Candidates: []*loomv1.Candidate{sampleCandidate("acme/payments", "service")},
	})); err != nil {
		t.Fatal(err)
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			c := a.clients(p.client(), p.opts...)
			// Blank counts as missing, as it does for a start.
			inputs := map[string]string{"target_version": "  ", "other": "x"}
			_, previewErr := c.runs.PreviewRun(ctx, connect.NewRequest(&loomv1.PreviewRunRequest{MigrationId: "preview", CandidateId: "acme/payments", Inputs: inputs}))
			_, startErr := c.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "preview", CandidateId: "acme/payments", Inputs: inputs}))
			for name, err := range map[string]error{"preview": previewErr, "start": startErr} {
				cerr := wantCode(t, err, connect.CodeFailedPrecondition)
				if info := errorInfo(t, cerr); info.Reason != migration.ReasonMissingInputs || info.Metadata["missing"] != "target_version" {
					t.Errorf("%s: error info %v, want %s naming target_version", name, info, migration.ReasonMissingInputs)
				}
				if !strings.Contains(cerr.Message(), "target_version") {
					t.Errorf("%s: message %q does not name the input", name, cerr.Message())
				}
			}
		})
	}
	if asked := a.migrators.asked(); len(asked) != 0 {
		t.Fatalf("the Migrator was asked for a preview Loom refused: %+v", asked)
	}
	if _, err := setup.discovery.UpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.UpdateCandidateInputsRequest{
		MigrationId: "preview", CandidateId: "acme/payments", Inputs: map[string]string{"target_version": "1.23"},
	})); err != nil {
		t.Fatal(err)
	}
	res, err := setup.runs.PreviewRun(ctx, connect.NewRequest(&loomv1.PreviewRunRequest{MigrationId: "preview", CandidateId: "acme/payments"}))
	if err != nil {
		t.Fatalf("preview with the input stored on the Candidate: %v", err)
	}
	asked := a.migrators.asked()
	if len(res.Msg.Steps) != 2 || len(asked) != 1 || asked[0].Inputs["target_version"] != "1.23" {
		t.Fatalf("preview %v; the Migrator was asked %+v", res.Msg, asked)
	}
}

// ListEvents keeps, with reported_statuses, the reports (of a Migrator, of
// a review) of those statuses and the events of other kinds; the filter
// is part of what a page token continues, and its items are validated.
func TestListEventsFiltersReportedStatuses(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	setup := a.clients(http.DefaultClient)
	if _, err := setup.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("hist")})); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
		MigrationId: "hist", Candidates: []*loomv1.Candidate{sampleCandidate("a", "service")},
	})); err != nil {
		t.Fatal(err)
	}
	// A Run whose first step opens a pull request, then is reported failed.
	now := time.Now().UTC()
	m, err := a.store.GetMigration(ctx, "hist")
	if err != nil {
		t.Fatal(err)
	}
	run := migration.NewRun(migration.Manifest{RunID: migration.RunID("hist", "a"), Execution: 1, MigrationID: "hist",
		Steps: m.Steps, Candidate: migration.Candidate{ID: "a"}, Inputs: map[string]string{"target_version": "1.23"}}, now)
	if _, err := a.store.BeginRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	run.BeginStep(0, 1, now)
	if _, err := a.store.SaveRun(ctx, run, []migration.Event{run.DispatchedEvent(now)}, nil); err != nil {
		t.Fatal(err)
	}
	for _, st := range []migration.StepStatus{migration.StepOpen, migration.StepFailed} {
		act := migration.StepAction{Kind: migration.ActionReport, Execution: 1, Step: "bump-go", Attempt: 1, Status: st,
			PRURL: "https://git.example/a/pull/1", Message: "reported " + string(st), Actor: "migrator"}
		if _, err := run.Apply(act, now); err != nil {
			t.Fatal(err)
		}
		if _, err := a.store.SaveRun(ctx, run, run.ActionEvents(act, now), nil); err != nil {
			t.Fatal(err)
		}
	}
	failed := []loomv1.StepStatus{loomv1.StepStatus_STEP_STATUS_FAILED}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			hist := loomv1connect.NewHistoryServiceClient(p.client(), a.url, p.opts...)
			res, err := hist.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "hist",
				Kinds: []loomv1.EventKind{loomv1.EventKind_EVENT_KIND_STEP_FAILED, loomv1.EventKind_EVENT_KIND_STEP_REPORTED}, ReportedStatuses: failed}))
			if err != nil {
				t.Fatal(err)
			}
			if ev := res.Msg.Events; len(ev) != 1 || ev[0].Details["status"] != "failed" || ev[0].Details["message"] != "reported failed" {
				t.Fatalf("failures: %v", ev)
			}
			// Without kinds: every event but the open report, newest first.
			res, err = hist.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "hist", CandidateId: "a", ReportedStatuses: failed, PageSize: 2}))
			if err != nil {
				t.Fatal(err)
			}
			if ev := res.Msg.Events; len(ev) != 2 || ev[0].Kind != loomv1.EventKind_EVENT_KIND_STEP_REPORTED || ev[1].Kind != loomv1.EventKind_EVENT_KIND_STEP_DISPATCHED {
				t.Fatalf("first page: %v", ev)
			}
			// The token continues this filter only.
			_, err = hist.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "hist", CandidateId: "a", PageSize: 2,
				ReportedStatuses: []loomv1.StepStatus{loomv1.StepStatus_STEP_STATUS_OPEN}, PageToken: res.Msg.NextPageToken}))
			if info := errorInfo(t, wantCode(t, err, connect.CodeInvalidArgument)); info.Reason != migration.ReasonInvalidPageToken {
				t.Fatalf("a token of another filter: %v", info)
			}
			next, err := hist.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "hist", CandidateId: "a", ReportedStatuses: failed, PageSize: 2,
				PageToken: res.Msg.NextPageToken}))
			if err != nil {
				t.Fatal(err)
			}
			if ev := next.Msg.Events; len(ev) != 2 || ev[0].Kind != loomv1.EventKind_EVENT_KIND_RUN_STARTED || ev[1].Kind != loomv1.EventKind_EVENT_KIND_CANDIDATE_DISCOVERED {
				t.Fatalf("second page: %v", ev)
			}
			// A token made by hand, of this filter, naming no event: refused,
			// not an internal error from Redis.
			forged := &loomv1.ListEventsRequest{MigrationId: "hist", CandidateId: "a", ReportedStatuses: failed, PageSize: 2}
			forged.PageToken = forgedToken("not-an-event", forgedFilterKey(forged))
			_, err = hist.ListEvents(ctx, connect.NewRequest(forged))
			if info := errorInfo(t, wantCode(t, err, connect.CodeInvalidArgument)); info.Reason != migration.ReasonInvalidPageToken {
				t.Fatalf("a forged token: %v", info)
			}
			_, err = hist.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "hist",
				ReportedStatuses: []loomv1.StepStatus{loomv1.StepStatus_STEP_STATUS_FAILED, loomv1.StepStatus_STEP_STATUS_UNSPECIFIED}}))
			if cerr := wantCode(t, err, connect.CodeInvalidArgument); !strings.Contains(cerr.Message(), "reported_statuses[1]") {
				t.Fatalf("refusal %q does not name reported_statuses[1]", cerr.Message())
			}
		})
	}
}

// ListEvents with candidate_id_prefix keeps the events of the Candidates
// whose id starts with it; the prefix is part of what a page token
// continues, it combines with candidate_id (both must hold), and a prefix
// that no Candidate id could start with is refused naming the field.
func TestListEventsFiltersCandidatePrefix(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	setup := a.clients(http.DefaultClient)
	if _, err := setup.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("hist")})); err != nil {
		t.Fatal(err)
	}
	ids := []string{"acme/api", "other/api", "acme/web", "acmeish"}
	var cs []*loomv1.Candidate
	for _, id := range ids {
		cs = append(cs, sampleCandidate(id, "service"))
	}
	if _, err := setup.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{MigrationId: "hist", Candidates: cs})); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := setup.discovery.UpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.UpdateCandidateInputsRequest{
			MigrationId: "hist", CandidateId: id, Inputs: map[string]string{"target_version": "1.23"},
		})); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			hist := loomv1connect.NewHistoryServiceClient(p.client(), a.url, p.opts...)
			list := func(req *loomv1.ListEventsRequest) ([]string, string) {
				t.Helper()
				res, err := hist.ListEvents(ctx, connect.NewRequest(req))
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, e := range res.Msg.Events {
					got = append(got, e.CandidateId)
				}
				return got, res.Msg.NextPageToken
			}
			if got, _ := list(&loomv1.ListEventsRequest{MigrationId: "hist", CandidateIdPrefix: "acme/"}); strings.Join(got, " ") != "acme/web acme/api" {
				t.Fatalf("acme/: %v", got)
			}
			first, token := list(&loomv1.ListEventsRequest{MigrationId: "hist", CandidateIdPrefix: "acme", PageSize: 2})
			if strings.Join(first, " ") != "acmeish acme/web" || token == "" {
				t.Fatalf("acme, first page: %v %q", first, token)
			}
			if next, _ := list(&loomv1.ListEventsRequest{MigrationId: "hist", CandidateIdPrefix: "acme", PageSize: 2, PageToken: token}); strings.Join(next, " ") != "acme/api" {
				t.Fatalf("acme, next page: %v", next)
			}
			// The token continues this prefix only.
			_, err := hist.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "hist", CandidateIdPrefix: "acme/", PageSize: 2, PageToken: token}))
			if info := errorInfo(t, wantCode(t, err, connect.CodeInvalidArgument)); info.Reason != migration.ReasonInvalidPageToken {
				t.Fatalf("a token of another prefix: %v", info)
			}
			// With candidate_id: its events if its id has the prefix, else none.
			if got, _ := list(&loomv1.ListEventsRequest{MigrationId: "hist", CandidateId: "acme/web", CandidateIdPrefix: "acme/"}); len(got) != 2 {
				t.Fatalf("acme/web with acme/: %v", got)
			}
			if got, _ := list(&loomv1.ListEventsRequest{MigrationId: "hist", CandidateId: "other/api", CandidateIdPrefix: "acme/"}); len(got) != 0 {
				t.Fatalf("other/api with acme/: %v", got)
			}
			_, err = hist.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "hist", CandidateIdPrefix: "/acme"}))
			if cerr := wantCode(t, err, connect.CodeInvalidArgument); !strings.Contains(cerr.Message(), "candidate_id_prefix") {
				t.Fatalf("refusal %q does not name candidate_id_prefix", cerr.Message())
			}
		})
	}
}

func TestRunRequestsAreValidated(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	c := a.clients(h2c(), connect.WithGRPC())
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"run id without separator", func() error {
			_, err := c.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: "no-separator"}))
			return err
		}, "run_id"},
		{"retry of attempt 0", func() error {
			_, err := c.runs.RetryStep(ctx, connect.NewRequest(&loomv1.RetryStepRequest{RunId: "m__c", StepName: "s"}))
			return err
		}, "attempt"},
		{"review outcome that is not an outcome", func() error {
			_, err := c.runs.FinishReview(ctx, connect.NewRequest(&loomv1.FinishReviewRequest{
				RunId: "m__c", StepName: "s", Attempt: 1, Outcome: loomv1.StepStatus_STEP_STATUS_OPEN,
			}))
			return err
		}, "outcome"},
		{"open without a PR URL", func() error {
			_, err := c.events.ReportStepStatus(ctx, connect.NewRequest(&loomv1.ReportStepStatusRequest{
				RunId: "m__c", Execution: 1, StepName: "s", Attempt: 1, Status: loomv1.StepStatus_STEP_STATUS_OPEN,
			}))
			return err
		}, "pr_url"},
		{"report without a status", func() error {
			_, err := c.events.ReportStepStatus(ctx, connect.NewRequest(&loomv1.ReportStepStatusRequest{
				RunId: "m__c", Execution: 1, StepName: "s", Attempt: 1,
			}))
			return err
		}, "status"},
		{"report of execution 0", func() error {
			_, err := c.events.ReportStepStatus(ctx, connect.NewRequest(&loomv1.ReportStepStatusRequest{
				RunId: "m__c", StepName: "s", Attempt: 1, Status: loomv1.StepStatus_STEP_STATUS_FAILED,
			}))
			return err
		}, "execution"},
		{"skip without a reason", func() error {
			_, err := c.runs.SkipStep(ctx, connect.NewRequest(&loomv1.SkipStepRequest{RunId: "m__c", StepName: "s", Attempt: 1}))
			return err
		}, "reason"},
		{"skip with a reason too long", func() error {
			_, err := c.runs.SkipStep(ctx, connect.NewRequest(&loomv1.SkipStepRequest{RunId: "m__c", StepName: "s", Attempt: 1, Reason: strings.Repeat("x", 1025)}))
			return err
		}, "reason"},
		{"skip of attempt 0", func() error {
			_, err := c.runs.SkipStep(ctx, connect.NewRequest(&loomv1.SkipStepRequest{RunId: "m__c", StepName: "s", Reason: "r"}))
			return err
		}, "attempt"},
		{"adopt without a PR URL", func() error {
			_, err := c.runs.AdoptPullRequest(ctx, connect.NewRequest(&loomv1.AdoptPullRequestRequest{RunId: "m__c", StepName: "s", Attempt: 1}))
			return err
		}, "pr_url"},
		{"adopt of a PR URL that is not http(s)", func() error {
			_, err := c.runs.AdoptPullRequest(ctx, connect.NewRequest(&loomv1.AdoptPullRequestRequest{RunId: "m__c", StepName: "s", Attempt: 1, PrUrl: "ftp://git.example/pr/1"}))
			return err
		}, "pr_url"},
		{"adopt of a PR URL that is no URL", func() error {
			_, err := c.runs.AdoptPullRequest(ctx, connect.NewRequest(&loomv1.AdoptPullRequestRequest{RunId: "m__c", StepName: "s", Attempt: 1, PrUrl: "pull 7"}))
			return err
		}, "pr_url"},
		{"start without a candidate", func() error {
			_, err := c.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{MigrationId: "m"}))
			return err
		}, "candidate_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cerr := wantCode(t, tc.call(), connect.CodeInvalidArgument)
			if !strings.Contains(cerr.Message(), tc.field) {
				t.Fatalf("refusal %q does not name %s", cerr.Message(), tc.field)
			}
		})
	}
	_, err := c.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: "m__never-started"}))
	if info := errorInfo(t, wantCode(t, err, connect.CodeNotFound)); info.Reason != migration.ReasonRunNotFound {
		t.Fatalf("error info %v", info)
	}
}

func TestCORSPreflightForConfiguredOrigin(t *testing.T) {
	a := newTestAPI(t)
	for _, tc := range []struct {
		origin string
		allow  bool
	}{{"https://console.example", true}, {"https://evil.example", false}} {
		req, _ := http.NewRequest(http.MethodOptions, a.url+"/"+loomv1connect.RegistryServiceName+"/ListMigrations", nil)
		req.Header.Set("Origin", tc.origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "connect-protocol-version,content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		got := res.Header.Get("Access-Control-Allow-Origin")
		if tc.allow && got != tc.origin || !tc.allow && got != "" {
			t.Errorf("origin %s: Access-Control-Allow-Origin %q", tc.origin, got)
		}
	}
}

// Over JSON, an enum value given by a name its enum does not define is
// refused with invalid_argument naming the field, wherever it is (a filter,
// a list, a nested message), rather than dropped, which would widen a
// listing to everything; fields the server does not know are still
// ignored, so a newer client works with an older server.
func TestUndefinedEnumNamesAreRefusedOverJSON(t *testing.T) {
	a := newTestAPI(t)
	post := func(procedure, body string) (int, string) {
		t.Helper()
		res, err := http.Post(a.url+procedure, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, tc := range []struct{ procedure, body, field string }{
		{"/loom.v1.RunService/ListRuns", `{"migration_id": "m", "status": "NOPE"}`, "status"},
		{"/loom.v1.RunService/ListRuns", `{"migrationId": "m", "currentStepStatus": "STEP_STATUS_DONE"}`, "current_step_status"},
		{"/loom.v1.DiscoveryService/ListCandidates", `{"migration_id": "m", "status": "RUNNING"}`, "status"},
		{"/loom.v1.HistoryService/ListEvents", `{"migration_id": "m", "kinds": ["EVENT_KIND_STEP_REPORTED", "EVENT_KIND_NOPE"]}`, "kinds[1]"},
		{"/loom.v1.HistoryService/ListEvents", `{"migration_id": "m", "reported_statuses": ["STEP_STATUS_FAILED", "FAILED"]}`, "reported_statuses[1]"},
	} {
		code, body := post(tc.procedure, tc.body)
		if code != http.StatusBadRequest || !strings.Contains(body, `"invalid_argument"`) || !strings.Contains(body, tc.field+`: \"`) {
			t.Errorf("%s %s: %d %s; want invalid_argument naming %s", tc.procedure, tc.body, code, body, tc.field)
		}
	}
	// Defined names and unknown fields pass.
	if code, body := post("/loom.v1.RunService/ListRuns", `{"migration_id": "m", "status": "RUN_STATUS_RUNNING", "from_the_future": 1}`); code == http.StatusBadRequest {
		t.Errorf("a valid request refused: %s", body)
	}
}

// With Redis down, calls answer unavailable (retry later) with the reason
// STORE_UNAVAILABLE, over every protocol, and work again once it is back.
func TestRedisDownAnswersUnavailable(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	c := a.clients(http.DefaultClient)
	if _, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("go-upgrade")})); err != nil {
		t.Fatal(err)
	}
	a.redis.Stop()
	for _, p := range protocols {
		c := a.clients(p.client(), p.opts...)
		_, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "go-upgrade"}))
		if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "store (Redis) cannot be reached") {
			t.Errorf("%s: ListCandidates with Redis down: %v, want unavailable", p.name, err)
		}
		if reason := errorReason(err); reason != migration.ReasonStoreUnavailable {
			t.Errorf("%s: reason %q, want %s", p.name, reason, migration.ReasonStoreUnavailable)
		}
		_, err = c.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: "go-upgrade__x"}))
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Errorf("%s: GetRun with Redis down: %v, want unavailable", p.name, err)
		}
		// A bulk action cannot resolve its selection: the whole call is
		// unavailable, not a list of per-Candidate failures.
		_, err = c.runs.BulkRetrySteps(ctx, connect.NewRequest(&loomv1.BulkRetryStepsRequest{MigrationId: "go-upgrade",
			Selection: &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{}}}))
		if connect.CodeOf(err) != connect.CodeUnavailable || errorReason(err) != migration.ReasonStoreUnavailable {
			t.Errorf("%s: BulkRetrySteps with Redis down: %v, want unavailable", p.name, err)
		}
		_, err = c.discovery.BulkUpdateCandidateInputs(ctx, connect.NewRequest(&loomv1.BulkUpdateCandidateInputsRequest{MigrationId: "go-upgrade",
			Selection: byIDs("a"), Inputs: map[string]string{"go_version": "1.23"}}))
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Errorf("%s: BulkUpdateCandidateInputs with Redis down: %v, want unavailable", p.name, err)
		}
	}
	// A new, empty Redis: the store answers again (within the second
	// go-redis waits between dials), here that the Migration is unknown.
	a.redis.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.discovery.ListCandidates(ctx, connect.NewRequest(&loomv1.ListCandidatesRequest{MigrationId: "go-upgrade"}))
		if connect.CodeOf(err) == connect.CodeNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after Redis came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func errorReason(err error) string {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return ""
	}
	for _, d := range cerr.Details() {
		if v, derr := d.Value(); derr == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				return info.Reason
			}
		}
	}
	return ""
}

// forgedToken makes a page token as the api package does (pagetoken.go),
// as a client could by hand.
func forgedToken(after, filter string) string {
	b, _ := json.Marshal(map[string]string{"a": after, "f": filter})
	return base64.RawURLEncoding.EncodeToString(b)
}

// forgedFilterKey is the filter key ListEvents binds its page tokens to,
// for a request with no times and no kinds.
func forgedFilterKey(m *loomv1.ListEventsRequest) string {
	key := m.GetMigrationId() + "|" + m.GetCandidateId() + "|" + m.GetStartTime().String() + "|" + m.GetEndTime().String()
	for _, st := range m.GetReportedStatuses() {
		key += "|reported:" + st.String()
	}
	return key
}

// A watch from an after_id that is no event id is refused naming the
// field, before anything is read.
func TestWatchEventsRefusesAnAfterIDThatIsNoEventID(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	setup := a.clients(http.DefaultClient)
	if _, err := setup.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("hist")})); err != nil {
		t.Fatal(err)
	}
	hist := loomv1connect.NewHistoryServiceClient(http.DefaultClient, a.url)
	for _, id := range []string{"nope", "12-x", "-1", "1733570000000-0-0"} {
		stream, err := hist.WatchEvents(ctx, connect.NewRequest(&loomv1.WatchEventsRequest{MigrationId: "hist", AfterId: id}))
		if err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
		}
		cerr := wantCode(t, err, connect.CodeInvalidArgument)
		if info := errorInfo(t, cerr); info.Reason != migration.ReasonInvalidEventID || !strings.Contains(cerr.Message(), "after_id") {
			t.Fatalf("after_id %q: %v %v", id, cerr, info)
		}
	}
}

// Every unary answer, refusals included, says how long the server spent on
// it (Server-Timing), and a browser of a configured origin may read it.
func TestEveryAnswerCarriesServerTiming(t *testing.T) {
	a := newTestAPI(t)
	dur := func(h http.Header) float64 {
		t.Helper()
		v, ok := strings.CutPrefix(h.Get("Server-Timing"), "handler;dur=")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || f < 0 || f > 60_000 {
			t.Fatalf("Server-Timing %q", h.Get("Server-Timing"))
		}
		return f
	}
	for _, body := range []string{`{}`, `{"migration_id": "nope"}`} {
		req, _ := http.NewRequest(http.MethodPost, a.url+"/loom.v1.DiscoveryService/ListCandidates", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", "https://console.example")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		dur(res.Header)
		if exposed := res.Header.Get("Access-Control-Expose-Headers"); !strings.Contains(exposed, "Server-Timing") {
			t.Errorf("%s: Access-Control-Expose-Headers %q", body, exposed)
		}
	}
	// Over gRPC the same header is in the response metadata.
	c := a.clients(h2c(), connect.WithGRPC())
	res, err := c.registry.ListMigrations(context.Background(), connect.NewRequest(&loomv1.ListMigrationsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	dur(res.Header())
}
