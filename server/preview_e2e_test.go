package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/server"
	"github.com/loomhq/loom/server/auth"
)

// addToken adds a static token to a tokens file and returns it.
func addToken(t *testing.T, tokensFile string, e auth.StaticToken) string {
	t.Helper()
	b, err := os.ReadFile(tokensFile)
	if err != nil {
		t.Fatal(err)
	}
	var f auth.TokensFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	tok, hash, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	e.SHA256 = hash
	f.Tokens = append(f.Tokens, e)
	if b, err = jsonMarshal(f); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokensFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return tok
}

// A viewer previews a Migration's Runs only when its Migrator announced
// viewers_may_preview, never starts one, and its preview changes nothing:
// no stored input, no Run, no event, no dispatch. Through the real server,
// on Temporal and Redis, with the trust configuration of loom serve.
func TestViewersPreviewOnlyWhereTheMigratorAllows(t *testing.T) {
	tokensFile, keysFile, tokens := credentials(t)
	viewerToken := addToken(t, tokensFile, auth.StaticToken{Subject: "vera", Role: auth.RoleViewer})
	w := newWorld(t)
	w.configure = func(c *server.Config) {
		c.Security = server.SecurityConfig{TokensFile: tokensFile, KeysFile: keysFile, AllowMigratorNets: []string{"127.0.0.0/8"}}
	}
	l := w.startLoom()
	operator, migrator, stranger, viewer := l.as(tokens["operator"]), l.as(tokens["migrator"]), l.as(tokens["stranger"]), l.as(viewerToken)
	history := loomv1connect.NewHistoryServiceClient(http.DefaultClient, l.url, migratorsdk.WithToken(viewerToken))

	migrator.setup(t, w.migrator.url, "acme/payments")
	announce := func(c *loom, id string, allow bool) {
		t.Helper()
		_, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: &loomv1.Migration{
			Id:   id,
			Name: "Upgrade Go",
			Steps: []*loomv1.StepDefinition{
				{Name: "bump-go", Type: "open-pr", Config: map[string]string{"file": "go.mod"}},
				{Name: "review", Type: "manual-review"},
			},
			RequiredInputs:    []*loomv1.InputDefinition{{Name: "target_version"}},
			MigratorUrl:       w.migrator.url,
			ViewersMayPreview: allow,
		}}))
		if err != nil {
			t.Fatal(err)
		}
	}
	preview := func(c *loom, migrationID string) (*loomv1.PreviewRunResponse, error) {
		res, err := c.runs.PreviewRun(ctx, connect.NewRequest(&loomv1.PreviewRunRequest{
			MigrationId: migrationID, CandidateId: "acme/payments", Inputs: map[string]string{"target_version": "1.23"},
		}))
		if err != nil {
			return nil, err
		}
		return res.Msg, nil
	}
	refusedToViewer := func(migrationID string) {
		t.Helper()
		_, err := preview(viewer, migrationID)
		wantCode(t, err, connect.CodePermissionDenied, "")
		if !strings.Contains(err.Error(), "viewers_may_preview") {
			t.Errorf("the refusal does not say what would allow it: %v", err)
		}
	}

	// Announced without it (the default): operators preview, viewers not.
	refusedToViewer("go-upgrade")
	if _, err := preview(operator, "go-upgrade"); err != nil {
		t.Fatal(err)
	}
	who, err := viewer.registry.GetCaller(ctx, connect.NewRequest(&loomv1.GetCallerRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(who.Msg.AllowedIfMigrationAllows, []string{loomv1connect.RunServicePreviewRunProcedure}) ||
		slices.Contains(who.Msg.AllowedProcedures, loomv1connect.RunServicePreviewRunProcedure) ||
		slices.Contains(who.Msg.AllowedProcedures, loomv1connect.RunServiceStartRunProcedure) {
		t.Fatalf("GetCaller for a viewer: allowed %v, allowed if the Migration allows %v", who.Msg.AllowedProcedures, who.Msg.AllowedIfMigrationAllows)
	}

	// The Migrator allows it: the viewer sees the same diffs as an operator.
	announce(migrator, "go-upgrade", true)
	got, err := viewer.registry.GetMigration(ctx, connect.NewRequest(&loomv1.GetMigrationRequest{MigrationId: "go-upgrade"}))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Msg.Migration.ViewersMayPreview {
		t.Fatal("GetMigration does not say viewers may preview")
	}
	events := func() int {
		t.Helper()
		res, err := history.ListEvents(ctx, connect.NewRequest(&loomv1.ListEventsRequest{MigrationId: "go-upgrade", PageSize: 1000}))
		if err != nil {
			t.Fatal(err)
		}
		return len(res.Msg.Events)
	}
	before := events()
	res, err := preview(viewer, "go-upgrade")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 || len(res.Steps[0].Diffs) != 1 || res.Steps[0].Diffs[0].After != "go 1.23\n" {
		t.Fatalf("the viewer's preview: %v", res.Steps)
	}

	// It changed nothing.
	c := viewer.candidate(t, "acme/payments")
	if c.Status != loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED || len(c.Inputs) != 0 {
		t.Fatalf("after a viewer's preview the Candidate is %v with inputs %v", c.Status, c.Inputs)
	}
	_, err = viewer.runs.GetRun(ctx, connect.NewRequest(&loomv1.GetRunRequest{RunId: "go-upgrade__acme/payments"}))
	wantCode(t, err, connect.CodeNotFound, loomv1.ErrorReason_RUN_NOT_FOUND)
	if after := events(); after != before {
		t.Fatalf("a viewer's preview recorded %d events", after-before)
	}
	w.noDispatch()

	// Previewing is not starting.
	_, err = viewer.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/payments", Inputs: map[string]string{"target_version": "1.23"},
	}))
	wantCode(t, err, connect.CodePermissionDenied, "")

	// Another Migration, whose Migrator did not allow it, stays closed, and
	// so does one that does not exist.
	announce(stranger, "helm-upgrade", false)
	if _, err := stranger.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
		MigrationId: "helm-upgrade", Candidates: []*loomv1.Candidate{{Id: "acme/payments", Kind: "service"}},
	})); err != nil {
		t.Fatal(err)
	}
	refusedToViewer("helm-upgrade")
	refusedToViewer("nowhere")

	// Announced again without it: the permission is gone.
	announce(migrator, "go-upgrade", false)
	refusedToViewer("go-upgrade")
}
