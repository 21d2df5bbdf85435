package github_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/migratorsdk/migratortest"
	"github.com/loomhq/loom/pullrequest"
	"github.com/loomhq/loom/pullrequest/github"
	"github.com/loomhq/loom/pullrequest/github/githubtest"
)

// A Migrator built with package pullrequest over GitHub (the fake),
// driven by a fake Loom: each step opens a pull request; a merge on GitHub
// reaches Loom through the webhook, with no merge check pending (they run
// once an hour here); a pull request closed without merge fails its step,
// and a retry opens a new one.
func TestAMigratorOnGitHub(t *testing.T) {
	ctx := context.Background()
	fake := githubtest.New(t)
	for _, repo := range []string{"acme/payments", "acme/search"} {
		if err := fake.CreateRepo(repo, map[string]string{"README.md": "# " + repo + "\n"}); err != nil {
			t.Fatal(err)
		}
	}
	host, err := github.New(github.Options{BaseURL: fake.URL(), Token: fake.Token()})
	if err != nil {
		t.Fatal(err)
	}
	prs := &pullrequest.Steps{Host: host, Types: []string{"readme"}, Apply: func(ctx context.Context, e *pullrequest.Edit) (string, error) {
		readme, _, err := e.Read(ctx, "README.md")
		if err != nil {
			return "", err
		}
		line := e.Step.Config["line"]
		if strings.Contains(readme, line) {
			return "README.md has the line already", nil
		}
		e.Write("README.md", readme+line+"\n")
		return "", nil
	}}
	spec := migratorsdk.Spec{
		Migration: migratorsdk.Migration{ID: "readme", Name: "README lines", Steps: []migratorsdk.Step{
			{Name: "first", Type: "readme", Description: "Add the first line", Config: map[string]string{"line": "One."}},
			{Name: "second", Type: "readme", Description: "Add the second line", Config: map[string]string{"line": "Two."}},
			{Name: "review", Type: "manual-review"},
		}},
		Handlers: map[string]migratorsdk.StepHandler{
			"readme":        prs.Handler,
			"manual-review": func(ctx context.Context, d *migratorsdk.Dispatch) error { return d.AwaitingReview(ctx, "read it") },
		},
		Preview:     prs.Preview,
		CheckMerged: prs.CheckMerged,
		Discover: func(ctx context.Context) ([]migratorsdk.Candidate, error) {
			repos, err := host.Repositories(ctx, "acme")
			var cands []migratorsdk.Candidate
			for _, r := range repos {
				cands = append(cands, migratorsdk.Candidate{ID: r, Kind: "repository"})
			}
			return cands, err
		},
	}

	loom := migratortest.New(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := withWebhook(spec, migratorsdk.Options{
		LoomURL: loom.URL(), ListenAddr: l.Addr().String(), MergeCheckEvery: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Serve(runCtx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	loom.WaitCandidates(t, "readme", 2)
	if err := fake.AddWebhook("http://"+l.Addr().String()+"/webhooks/github", "s3cret"); err != nil {
		t.Fatal(err)
	}

	// The preview is stacked: the second step starts from the first's change.
	previews, err := loom.Preview(ctx, "readme", "acme/payments", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(previews) != 3 || len(previews[0].Diffs) != 1 || previews[0].Diffs[0].After != "# acme/payments\nOne.\n" ||
		len(previews[1].Diffs) != 1 || previews[1].Diffs[0].Before != previews[0].Diffs[0].After || !previews[2].Skipped {
		t.Fatalf("previews %+v", previews)
	}

	first := loom.MustDispatch(t, "readme", "first", "acme/payments", nil)
	opened := first.MustWait(t, migratorsdk.StatusOpen)
	pulls := fake.Pulls("acme/payments")
	if len(pulls) != 1 || opened.PRURL != pulls[0].URL || opened.Metadata["number"] != "1" || opened.Metadata["branch"] != "loom/first" ||
		opened.Metadata["repository"] != "acme/payments" || opened.Metadata["commit"] != pulls[0].HeadSHA || pulls[0].Title != "Add the first line" {
		t.Fatalf("opened %+v; pull requests %+v", opened, pulls)
	}
	if got, _ := fake.File("acme/payments", "loom/first", "README.md"); got != previews[0].Diffs[0].After {
		t.Fatalf("the branch holds %q, the preview said %q", got, previews[0].Diffs[0].After)
	}
	if err := fake.MergePull("acme/payments", 1); err != nil {
		t.Fatal(err)
	}
	first.MustWait(t, migratorsdk.StatusMerged) // by the webhook: the next merge check is an hour away

	// The second step's pull request is exactly its preview.
	second := loom.MustDispatch(t, "readme", "second", "acme/payments", nil)
	second.MustWait(t, migratorsdk.StatusOpen)
	if got, _ := fake.File("acme/payments", "loom/second", "README.md"); got != previews[1].Diffs[0].After {
		t.Fatalf("the second branch holds %q, the preview said %q", got, previews[1].Diffs[0].After)
	}

	// Closed without merge: the step fails; a retry opens a new pull request.
	other := loom.MustDispatch(t, "readme", "first", "acme/search", nil)
	opened = other.MustWait(t, migratorsdk.StatusOpen)
	if err := fake.ClosePull("acme/search", 1); err != nil {
		t.Fatal(err)
	}
	if rep := other.MustWait(t, migratorsdk.StatusFailed); !strings.Contains(rep.Message, "closed") || !strings.Contains(rep.Message, opened.PRURL) {
		t.Fatalf("failed with %q", rep.Message)
	}
	if err := other.Retry(ctx); err != nil {
		t.Fatal(err)
	}
	reopened := other.MustWait(t, migratorsdk.StatusOpen)
	if reopened.PRURL == opened.PRURL || reopened.Metadata["commit"] != opened.Metadata["commit"] || len(fake.Pulls("acme/search")) != 2 {
		t.Fatalf("retried: %+v, first %+v", reopened, opened)
	}
}

// withWebhook is the snippet of Webhook's documentation: a Migrator whose
// merges arrive by GitHub's webhook.
func withWebhook(spec migratorsdk.Spec, opts migratorsdk.Options, secret string) (*migratorsdk.Migrator, error) {
	var m *migratorsdk.Migrator
	hook, err := github.NewWebhook(secret, func(ctx context.Context, _ []github.ClosedEvent) {
		m.CheckMerges(ctx)
	})
	if err != nil {
		return nil, err
	}
	opts.Routes = map[string]http.Handler{"POST /webhooks/github": hook}
	m, err = migratorsdk.New(spec, opts)
	return m, err
}
