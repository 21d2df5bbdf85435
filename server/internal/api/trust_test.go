package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/reflect/protoreflect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/api"
	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/redistest"
	"github.com/loomhq/loom/server/internal/store"
)

// secureAPI is the API with authentication on, a token per role, and a
// Migrator that owns the Migration "mine" only.
type secureAPI struct {
	url    string
	tokens map[string]string // role (or "migrator") → token
	store  *store.Store
}

func newSecureAPI(t *testing.T, mutate ...func(*api.Options)) *secureAPI {
	t.Helper()
	rs := redistest.Start(t)
	st := store.New(redis.NewClient(&redis.Options{Addr: rs.Addr()}))
	a := &secureAPI{tokens: map[string]string{}, store: st}
	var entries []auth.StaticToken
	for _, role := range []auth.Role{auth.RoleViewer, auth.RoleOperator, auth.RoleMigrator, auth.RoleAdmin} {
		tok, hash, err := auth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		e := auth.StaticToken{Subject: "the-" + string(role), Role: role, SHA256: hash}
		if role == auth.RoleMigrator {
			e.Scope = auth.Scope{IDs: []string{"mine"}}
		}
		entries = append(entries, e)
		a.tokens[string(role)] = tok
	}
	static, err := auth.NewStaticTokens(entries)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := auth.NewCallbackKey("c1")
	callbacks, _ := auth.NewCallbacks(key)
	clock := func() time.Time { return time.Now().UTC() }
	o := api.Options{
		Registry:      &migration.Registry{Store: st, Now: clock},
		Discovery:     &migration.Discovery{Store: st, Now: clock},
		Runs:          &migration.Runs{Store: st, Now: clock},
		History:       &migration.History{Store: st, Now: clock},
		Metrics:       &migration.Metrics{Store: st, Now: clock},
		Rollouts:      &migration.Rollouts{Store: st, Rollout: st, Now: clock},
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:         st.Ping,
		Authenticator: &auth.Authenticator{Static: static},
		Callbacks:     callbacks,
	}
	for _, m := range mutate {
		m(&o)
	}
	srv := httptest.NewUnstartedServer(api.NewHandler(o))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	a.url = srv.URL
	ctx := context.Background()
	for _, id := range []string{"mine", "theirs"} {
		m := sampleMigration(id)
		if _, _, _, err := st.PutMigration(ctx, migrationFromSample(m), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func migrationFromSample(p *loomv1.Migration) migration.Migration {
	m := migration.Migration{ID: p.Id, Name: p.Name, MigratorURL: p.MigratorUrl}
	for _, s := range p.Steps {
		m.Steps = append(m.Steps, migration.StepDefinition{Name: s.Name, Type: s.Type})
	}
	return m
}

// call makes a Connect-protocol JSON call with body and an optional token,
// and returns the Connect code ("" for success).
func (a *secureAPI) call(t *testing.T, procedure, token, body string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.url+procedure, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		return ""
	}
	var e struct{ Code string }
	_ = json.NewDecoder(res.Body).Decode(&e)
	return e.Code
}

// serviceFiles are the files of the loom.v1 services the server serves.
var serviceFiles = []protoreflect.FileDescriptor{
	loomv1.File_loom_v1_registry_service_proto, loomv1.File_loom_v1_discovery_service_proto,
	loomv1.File_loom_v1_run_service_proto, loomv1.File_loom_v1_event_service_proto,
	loomv1.File_loom_v1_history_service_proto, loomv1.File_loom_v1_metrics_service_proto,
	loomv1.File_loom_v1_rollout_service_proto,
}

// ownedBody is a request naming the Migration "mine", whatever the RPC,
// so that the matrix tests roles and not ownership.
func ownedBody(proc string) string {
	for _, fd := range serviceFiles {
		for i := range fd.Services().Len() {
			svc := fd.Services().Get(i)
			for j := range svc.Methods().Len() {
				m := svc.Methods().Get(j)
				if "/"+string(svc.FullName())+"/"+string(m.Name()) != proc {
					continue
				}
				fields := m.Input().Fields()
				switch {
				case fields.ByName("run_id") != nil:
					return `{"run_id": "mine__c"}`
				case fields.ByName("migration_id") != nil:
					return `{"migration_id": "mine"}`
				case fields.ByName("migration") != nil:
					return `{"migration": {"id": "mine"}}`
				}
			}
		}
	}
	return "{}"
}

// procedures lists every RPC the server serves, from the descriptors.
func procedures() []string {
	var out []string
	for _, fd := range serviceFiles {
		for i := range fd.Services().Len() {
			svc := fd.Services().Get(i)
			for j := range svc.Methods().Len() {
				out = append(out, "/"+string(svc.FullName())+"/"+string(svc.Methods().Get(j).Name()))
			}
		}
	}
	return out
}

func TestEveryRPCForEveryRole(t *testing.T) {
	a := newSecureAPI(t)
	procs := procedures()
	if len(procs) < 19 {
		t.Fatalf("found %d procedures", len(procs))
	}
	for _, proc := range procs {
		if _, ok := auth.Rules[proc]; !ok {
			t.Errorf("%s has no rule in auth.Rules: only admins could call it", proc)
		}
		if strings.HasSuffix(proc, "/WatchRun") || strings.HasSuffix(proc, "/WatchEvents") || strings.HasSuffix(proc, "/WatchRollout") {
			continue // a server stream: see TestWatchRunIsAuthorized, TestWatchRolloutIsAuthorized
		}
		t.Run(proc, func(t *testing.T) {
			if code := a.call(t, proc, "", "{}"); code != "unauthenticated" {
				t.Errorf("no token: %q", code)
			}
			if code := a.call(t, proc, "loom_not-a-token", "{}"); code != "unauthenticated" {
				t.Errorf("bad token: %q", code)
			}
			for _, role := range []auth.Role{auth.RoleViewer, auth.RoleOperator, auth.RoleMigrator, auth.RoleAdmin} {
				allowed, _ := auth.Allowed(proc, auth.Principal{Role: role, Scope: auth.AllMigrations})
				code := a.call(t, proc, a.tokens[string(role)], ownedBody(proc))
				denied := code == "permission_denied" || code == "unauthenticated"
				if allowed == denied {
					t.Errorf("%s: got %q, allowed=%v", role, code, allowed)
				}
			}
		})
	}
}

func TestWatchRunIsAuthorized(t *testing.T) {
	a := newSecureAPI(t)
	for _, tc := range []struct {
		token string
		run   string
		code  connect.Code
	}{
		{"", "mine__c", connect.CodeUnauthenticated},
		{a.tokens["migrator"], "theirs__c", connect.CodePermissionDenied},
		{a.tokens["migrator"], "mine__c", connect.CodeNotFound},
		{a.tokens["viewer"], "theirs__c", connect.CodeNotFound},
	} {
		var opts []connect.ClientOption
		if tc.token != "" {
			opts = append(opts, connect.WithInterceptors(bearerFor(tc.token)))
		}
		c := loomv1connect.NewRunServiceClient(http.DefaultClient, a.url, opts...)
		stream, err := c.WatchRun(context.Background(), connect.NewRequest(&loomv1.WatchRunRequest{RunId: tc.run}))
		if err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
		}
		if connect.CodeOf(err) != tc.code {
			t.Errorf("watch %s: %v, want %v", tc.run, err, tc.code)
		}
	}
}

func TestWatchRolloutIsAuthorized(t *testing.T) {
	a := newSecureAPI(t)
	for _, tc := range []struct {
		token, migration string
		code             connect.Code
	}{
		{"", "mine", connect.CodeUnauthenticated},
		{a.tokens["migrator"], "theirs", connect.CodePermissionDenied},
		{a.tokens["migrator"], "mine", connect.CodeNotFound},
		{a.tokens["viewer"], "theirs", connect.CodeNotFound},
	} {
		var opts []connect.ClientOption
		if tc.token != "" {
			opts = append(opts, connect.WithInterceptors(bearerFor(tc.token)))
		}
		c := loomv1connect.NewRolloutServiceClient(http.DefaultClient, a.url, opts...)
		stream, err := c.WatchRollout(context.Background(), connect.NewRequest(&loomv1.WatchRolloutRequest{MigrationId: tc.migration, RolloutId: "ro-000000000001"}))
		if err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
		}
		if connect.CodeOf(err) != tc.code {
			t.Errorf("watch a rollout of %s: %v, want %v", tc.migration, err, tc.code)
		}
	}
}

func TestAMigratorTouchesOnlyItsOwnMigrations(t *testing.T) {
	a := newSecureAPI(t)
	mig := a.tokens["migrator"]
	for _, tc := range []struct {
		proc, body, want string
	}{
		{"/loom.v1.RegistryService/Announce", `{"migration": {"id": "theirs", "name": "x", "steps": [{"name": "s", "type": "t"}], "migrator_url": "http://m.example"}}`, "permission_denied"},
		{"/loom.v1.RegistryService/Announce", `{"migration": {"id": "mine", "name": "x", "steps": [{"name": "s", "type": "t"}], "migrator_url": "http://m.example"}}`, ""},
		{"/loom.v1.DiscoveryService/SubmitCandidates", `{"migration_id": "theirs", "candidates": [{"id": "c", "kind": "k"}]}`, "permission_denied"},
		{"/loom.v1.DiscoveryService/SubmitCandidates", `{"migration_id": "mine", "candidates": [{"id": "c", "kind": "k"}]}`, ""},
		{"/loom.v1.DiscoveryService/ListCandidates", `{"migration_id": "theirs"}`, "permission_denied"},
		{"/loom.v1.RegistryService/GetMigration", `{"migration_id": "theirs"}`, "permission_denied"},
		{"/loom.v1.RunService/GetRun", `{"run_id": "theirs__c"}`, "permission_denied"},
		{"/loom.v1.EventService/ReportStepStatus", `{"run_id": "theirs__c", "execution": 1, "step_name": "s", "attempt": 1, "status": "STEP_STATUS_FAILED"}`, "permission_denied"},
	} {
		if code := a.call(t, tc.proc, mig, tc.body); code != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.proc, tc.body, code, tc.want)
		}
	}
	// The refused submit changed nothing.
	if page, err := a.store.ListCandidates(context.Background(), "theirs", migration.CandidateFilter{}, migration.PageRequest{}); err != nil || page.Total != 0 {
		t.Fatalf("theirs has %d candidates (%v)", page.Total, err)
	}
	// Listing shows the Migrator its own Migrations only.
	c := loomv1connect.NewRegistryServiceClient(http.DefaultClient, a.url, connect.WithInterceptors(bearerFor(mig)))
	res, err := c.ListMigrations(context.Background(), connect.NewRequest(&loomv1.ListMigrationsRequest{}))
	if err != nil || len(res.Msg.Migrations) != 1 || res.Msg.Migrations[0].Id != "mine" {
		t.Fatalf("a migrator's listing: %v %v", res, err)
	}
	admin := loomv1connect.NewRegistryServiceClient(http.DefaultClient, a.url, connect.WithInterceptors(bearerFor(a.tokens["admin"])))
	if res, err := admin.ListMigrations(context.Background(), connect.NewRequest(&loomv1.ListMigrationsRequest{})); err != nil || len(res.Msg.Migrations) != 2 {
		t.Fatalf("an admin's listing: %v %v", res, err)
	}
}

// Bulk actions are operators' (and admins'): viewers and Migrators are
// refused before anything is read or done, even with a request that is
// valid; an operator's change is recorded with the operator as its actor.
func TestBulkActionsAreForOperators(t *testing.T) {
	a := newSecureAPI(t)
	ctx := context.Background()
	if _, err := a.store.SubmitCandidates(ctx, migration.Submission{MigrationID: "mine", Candidates: []migration.Candidate{{ID: "c", Kind: "service"}}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	const sel = `"migration_id": "mine", "selection": {"candidate_ids": ["c"]}`
	bodies := map[string]string{
		"/loom.v1.RunService/BulkRetrySteps":                  `{` + sel + `}`,
		"/loom.v1.RunService/BulkCancelRuns":                  `{` + sel + `, "reason": "r"}`,
		"/loom.v1.RunService/BulkFinishReviews":               `{` + sel + `, "step_name": "review", "outcome": "STEP_STATUS_COMPLETED"}`,
		"/loom.v1.RunService/BulkMarkStepsMerged":             `{` + sel + `, "step_name": "bump-go"}`,
		"/loom.v1.DiscoveryService/BulkUpdateCandidateInputs": `{` + sel + `, "inputs": {"k": "v"}}`,
	}
	for _, proc := range procedures() {
		if strings.Contains(proc, "/Bulk") && bodies[proc] == "" {
			t.Errorf("%s: no request in this test", proc)
		}
	}
	for proc, body := range bodies {
		for role, want := range map[string]string{"viewer": "permission_denied", "migrator": "permission_denied", "operator": "", "admin": ""} {
			if role == "operator" && strings.HasSuffix(proc, "/BulkUpdateCandidateInputs") {
				continue // below, after the refusals
			}
			if code := a.call(t, proc, a.tokens[role], body); code != want {
				t.Errorf("%s as %s: %q, want %q", proc, role, code, want)
			}
		}
	}
	// Only the admin's update went through; the refused ones changed nothing.
	inputsEvents := func() []migration.Event {
		page, err := a.store.ListEvents(ctx, "mine", migration.EventFilter{Kinds: []migration.EventKind{migration.EventCandidateInputsUpdated}}, migration.PageRequest{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		return page.Events
	}
	if evs := inputsEvents(); len(evs) != 1 || evs[0].Actor != "the-admin" {
		t.Fatalf("inputs events after the refusals: %+v", evs)
	}
	if code := a.call(t, "/loom.v1.DiscoveryService/BulkUpdateCandidateInputs", a.tokens["operator"], bodies["/loom.v1.DiscoveryService/BulkUpdateCandidateInputs"]); code != "" {
		t.Fatalf("the operator's update: %q", code)
	}
	if evs := inputsEvents(); len(evs) != 2 || evs[0].Actor != "the-operator" || evs[0].CandidateID != "c" {
		t.Fatalf("inputs events: %+v", evs)
	}
}

// Skipping a step and adopting a pull request are operators' (and
// admins'): a viewer or a Migrator is refused before the Run is read.
func TestSkipAndAdoptAreForOperators(t *testing.T) {
	a := newSecureAPI(t)
	for proc, body := range map[string]string{
		"/loom.v1.RunService/SkipStep":         `{"run_id": "mine__c", "step_name": "s", "attempt": 1, "reason": "done by hand"}`,
		"/loom.v1.RunService/AdoptPullRequest": `{"run_id": "mine__c", "step_name": "s", "attempt": 1, "pr_url": "https://git.example/pr/1"}`,
	} {
		for _, role := range []string{"viewer", "migrator"} {
			if code := a.call(t, proc, a.tokens[role], body); code != "permission_denied" {
				t.Errorf("%s as %s: %q, want permission_denied", proc, role, code)
			}
		}
		// An operator and an admin get past the rules (to the request's
		// validation here: this server has no engine to act on a Run).
		for _, role := range []string{"operator", "admin"} {
			if code := a.call(t, proc, a.tokens[role], strings.Replace(body, `"attempt": 1`, `"attempt": 0`, 1)); code != "invalid_argument" {
				t.Errorf("%s as %s: %q, want invalid_argument", proc, role, code)
			}
		}
	}
}

func TestReportsNeedTheirCallbackToken(t *testing.T) {
	a := newSecureAPI(t)
	body := func(token string) string {
		return `{"run_id": "mine__c", "execution": 1, "step_name": "s", "attempt": 1, "status": "STEP_STATUS_FAILED", "callback_token": "` + token + `"}`
	}
	for name, tok := range map[string]string{
		"none":   "",
		"forged": "lct1.c1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"junk":   "not-a-token",
	} {
		if code := a.call(t, "/loom.v1.EventService/ReportStepStatus", a.tokens["migrator"], body(tok)); code != "unauthenticated" {
			t.Errorf("%s callback token: %q", name, code)
		}
	}
}

func TestHealthAndReflectionStayOpenUnlessProtected(t *testing.T) {
	open := newSecureAPI(t)
	hc := grpchealth.NewClient(h2c(), open.url, connect.WithGRPC())
	if _, err := hc.Check(context.Background(), &grpchealth.CheckRequest{}); err != nil {
		t.Fatalf("open health: %v", err)
	}
	closed := newSecureAPI(t, func(o *api.Options) { o.ProtectHealth = true })
	hc = grpchealth.NewClient(h2c(), closed.url, connect.WithGRPC())
	if _, err := hc.Check(context.Background(), &grpchealth.CheckRequest{}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("protected health without a token: %v", err)
	}
	hc = grpchealth.NewClient(h2c(), closed.url, connect.WithGRPC(), connect.WithInterceptors(bearerFor(closed.tokens["viewer"])))
	if _, err := hc.Check(context.Background(), &grpchealth.CheckRequest{}); err != nil {
		t.Fatalf("protected health with a token: %v", err)
	}
}

func TestLimits(t *testing.T) {
	a := newSecureAPI(t, func(o *api.Options) { o.RateLimit, o.Burst, o.MaxRequestBytes = 1, 3, 1024 })
	tok := a.tokens["viewer"]
	var codes []string
	for range 6 {
		codes = append(codes, a.call(t, "/loom.v1.RegistryService/ListMigrations", tok, "{}"))
	}
	if !slices.Contains(codes, "resource_exhausted") || codes[0] != "" {
		t.Fatalf("calls beyond the burst: %v", codes)
	}
	// Another caller has its own budget.
	if code := a.call(t, "/loom.v1.RegistryService/ListMigrations", a.tokens["operator"], "{}"); code != "" {
		t.Fatalf("another caller: %q", code)
	}
	big := `{"migration_id": "mine", "candidates": [{"id": "c", "kind": "k", "metadata": {"k": "` + strings.Repeat("x", 4000) + `"}}]}`
	if code := a.call(t, "/loom.v1.DiscoveryService/SubmitCandidates", a.tokens["admin"], big); code != "resource_exhausted" {
		t.Fatalf("a request over the size limit: %q", code)
	}
}

// TestReadmeListsTheRules keeps the table of RPCs and roles of
// docs/production.md true.
func TestReadmeListsTheRules(t *testing.T) {
	f, err := os.Open("../../../docs/production.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `") || !strings.Contains(line, "Service/") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows["/loom.v1."+strings.Trim(cells[0], "`")] = cells[1:]
	}
	for _, proc := range procedures() {
		row, ok := rows[proc]
		if !ok {
			t.Errorf("docs/production.md's table lacks %s", proc)
			continue
		}
		for i, role := range []auth.Role{auth.RoleViewer, auth.RoleOperator, auth.RoleMigrator, auth.RoleAdmin} {
			p := auth.Principal{Role: role, Scope: auth.Scope{IDs: []string{"x"}}}
			ok, owned := auth.Allowed(proc, p)
			want := "—"
			switch {
			case ok && owned:
				want = "own"
			case ok:
				want = "✓"
			case auth.AllowedIfMigrationAllows(proc, p):
				want = "if allowed"
			}
			if row[i] != want {
				t.Errorf("docs/production.md says %s for %s on %s; the rules say %s", row[i], role, proc, want)
			}
		}
	}
}

type bearerFor string

func (b bearerFor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearerFor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearerFor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func TestGetCallerSaysWhatEachRoleMayCall(t *testing.T) {
	a := newSecureAPI(t)
	registry := loomv1connect.NewRegistryServiceClient(http.DefaultClient, a.url)
	for _, role := range []auth.Role{auth.RoleViewer, auth.RoleOperator, auth.RoleMigrator, auth.RoleAdmin} {
		req := connect.NewRequest(&loomv1.GetCallerRequest{})
		req.Header().Set("Authorization", "Bearer "+a.tokens[string(role)])
		res, err := registry.GetCaller(context.Background(), req)
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		var want []string
		for _, proc := range procedures() {
			if ok, _ := auth.Allowed(proc, auth.Principal{Role: role}); ok {
				want = append(want, proc)
			}
		}
		slices.Sort(want)
		got := res.Msg
		if !got.Authenticated || got.Role != string(role) || got.Subject != "the-"+string(role) || !slices.Equal(got.AllowedProcedures, want) {
			t.Errorf("%s: %v, want procedures %v", role, got, want)
		}
	}
	// Without a token, nothing is said.
	_, err := registry.GetCaller(context.Background(), connect.NewRequest(&loomv1.GetCallerRequest{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("no token: %v", err)
	}
	// A Loom that does not authenticate lets everyone call everything.
	open := newSecureAPI(t, func(o *api.Options) { o.Authenticator = nil })
	res, err := loomv1connect.NewRegistryServiceClient(http.DefaultClient, open.url).GetCaller(context.Background(), connect.NewRequest(&loomv1.GetCallerRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	all := procedures()
	slices.Sort(all)
	if res.Msg.Authenticated || res.Msg.Role != "" || !slices.Equal(res.Msg.AllowedProcedures, all) {
		t.Errorf("without authentication: %v", res.Msg)
	}
}
