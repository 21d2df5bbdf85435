package pullrequest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/migratorsdk/migratortest"
	"github.com/loomhq/loom/pullrequest"
	"github.com/loomhq/loom/pullrequest/github"
	"github.com/loomhq/loom/pullrequest/github/githubtest"
	"github.com/loomhq/loom/pullrequest/local"
)

// readmeMigrator adds a line to README.md in every repository repos
// lists, as a pull request of its own (branch loom/add-line) on host, then
// asks a person for a review. host is a local.Host (git repositories on
// this machine) or a github.Host: the Migrator is the same.
func readmeMigrator(host pullrequest.Host, repos func(context.Context) ([]string, error)) migratorsdk.Spec {
	prs := &pullrequest.Steps{Host: host, Types: []string{"readme-line"}, Apply: addLine}
	return migratorsdk.Spec{
		Migration: migratorsdk.Migration{
			ID:   "readme-line",
			Name: "Add a line to README.md",
			Steps: []migratorsdk.Step{
				{Name: "add-line", Type: "readme-line", Description: "Add a line to README.md"},
				{Name: "review", Type: "manual-review", Description: "A person reads the new README.md"},
			},
			Inputs: []migratorsdk.Input{{Name: "line", Label: "The line to add"}},
		},
		Handlers: map[string]migratorsdk.StepHandler{
			"readme-line": prs.Handler,
			"manual-review": func(ctx context.Context, d *migratorsdk.Dispatch) error {
				return d.AwaitingReview(ctx, "Read README.md of "+d.Candidate.ID+", then finish the review in Loom.")
			},
		},
		Preview:     prs.Preview,
		CheckMerged: prs.CheckMerged,
		Discover: func(ctx context.Context) ([]migratorsdk.Candidate, error) {
			names, err := repos(ctx)
			var cands []migratorsdk.Candidate
			for _, r := range names {
				cands = append(cands, migratorsdk.Candidate{ID: r, Kind: "repository"})
			}
			return cands, err
		},
	}
}

// addLine is the step's change, which both the preview and the handler run.
func addLine(ctx context.Context, e *pullrequest.Edit) (string, error) {
	line := e.Inputs["line"]
	if line == "" || strings.Contains(line, "\n") {
		return "", errors.New("input line: want one line of text")
	}
	readme, _, err := e.Read(ctx, "README.md")
	if err != nil {
		return "", err
	}
	if strings.Contains(readme, line+"\n") {
		return "README.md has the line already", nil
	}
	e.Write("README.md", readme+line+"\n")
	return "", nil
}

func TestReadmeMigrator(t *testing.T) {
	root := t.TempDir()
	if err := local.Init(t.Context(), filepath.Join(root, "svc-01"), map[string]string{"README.md": "# svc-01\n"}); err != nil {
		t.Fatal(err)
	}
	host, loom := local.New(root), migratortest.New(t)
	m, err := migratorsdk.New(readmeMigrator(host, localRepos(host)), migratorsdk.Options{LoomURL: loom.URL(), ListenAddr: "127.0.0.1:0", MergeCheckEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go m.Run(t.Context())
	loom.WaitCandidates(t, "readme-line", 1)
	inputs := map[string]string{"line": "Migrated by Loom."}
	run := loom.MustDispatch(t, "readme-line", "add-line", "svc-01", inputs)
	opened := run.MustWait(t, migratorsdk.StatusOpen)
	if err := host.Merge(t.Context(), pullrequest.PullRequest{Repo: "svc-01", Branch: opened.Metadata["branch"]}); err != nil {
		t.Fatal(err)
	}
	run.MustWait(t, migratorsdk.StatusMerged)
	if readme, _, err := host.Read(t.Context(), "svc-01", "README.md"); err != nil || readme != "# svc-01\nMigrated by Loom.\n" {
		t.Fatalf("README.md after the merge: %q %v", readme, err)
	}
	loom.MustDispatch(t, "readme-line", "review", "svc-01", inputs).MustWait(t, migratorsdk.StatusAwaitingReview)
}

// The same Migrator on GitHub (the fake of githubtest).
func TestReadmeMigratorOnGitHub(t *testing.T) {
	fake := githubtest.New(t)
	if err := fake.CreateRepo("acme/svc-01", map[string]string{"README.md": "# svc-01\n"}); err != nil {
		t.Fatal(err)
	}
	host, err := github.New(github.Options{BaseURL: fake.URL(), Token: fake.Token()})
	if err != nil {
		t.Fatal(err)
	}
	repos := func(ctx context.Context) ([]string, error) { return host.Repositories(ctx, "acme") }
	loom := migratortest.New(t)
	m, err := migratorsdk.New(readmeMigrator(host, repos), migratorsdk.Options{LoomURL: loom.URL(), ListenAddr: "127.0.0.1:0", MergeCheckEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go m.Run(t.Context())
	loom.WaitCandidates(t, "readme-line", 1)
	run := loom.MustDispatch(t, "readme-line", "add-line", "acme/svc-01", map[string]string{"line": "Migrated by Loom."})
	run.MustWait(t, migratorsdk.StatusOpen)
	if err := fake.MergePull("acme/svc-01", 1); err != nil {
		t.Fatal(err)
	}
	run.MustWait(t, migratorsdk.StatusMerged)
	if readme, _, err := host.Read(t.Context(), "acme/svc-01", "README.md"); err != nil || readme != "# svc-01\nMigrated by Loom.\n" {
		t.Fatalf("README.md after the merge: %q %v", readme, err)
	}
}

// The README-line Migrator above, over a fleet of one local git repository
// and the fake Loom of migratortest: preview, open, merge, review.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	root, _ := os.MkdirTemp("", "fleet-")
	defer os.RemoveAll(root)
	_ = local.Init(ctx, filepath.Join(root, "svc-01"), map[string]string{"README.md": "# svc-01\n"})
	host := local.New(root)

	ll, _ := net.Listen("tcp", "127.0.0.1:0")
	loom := migratortest.Start(ll)
	defer loom.Close()
	ml, _ := net.Listen("tcp", "127.0.0.1:0")
	m, err := migratorsdk.New(readmeMigrator(host, localRepos(host)), migratorsdk.Options{LoomURL: loom.URL(), ListenAddr: ml.Addr().String(),
		MergeCheckEvery: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println(err)
		return
	}
	go m.Serve(ctx, ml)
	_, _ = loom.AwaitCandidates(ctx, "readme-line", 1)

	inputs := map[string]string{"line": "Migrated by Loom."}
	previews, _ := loom.Preview(ctx, "readme-line", "svc-01", inputs)
	for _, p := range previews {
		if p.Skipped {
			fmt.Printf("preview %s: skipped (%s)\n", p.Step, p.SkipReason)
			continue
		}
		fmt.Printf("preview %s: %s %s %q -> %q\n", p.Step, p.Diffs[0].Status, p.Diffs[0].Path, p.Diffs[0].Before, p.Diffs[0].After)
	}

	run, _ := loom.Dispatch(ctx, "readme-line", "add-line", "svc-01", inputs)
	opened, _ := run.Wait(ctx, migratorsdk.StatusOpen)
	fmt.Println("add-line:", opened.Status, "on branch", opened.Metadata["branch"])
	pr, _ := pullrequest.FromOpenStep(migratorsdk.OpenStep{PRURL: opened.PRURL, Metadata: opened.Metadata})
	_ = host.Merge(ctx, pr) // a person merges the pull request
	merged, _ := run.Wait(ctx, migratorsdk.StatusMerged)
	fmt.Println("add-line:", merged.Status)

	review, _ := loom.Dispatch(ctx, "readme-line", "review", "svc-01", inputs)
	report, _ := review.Wait(ctx, migratorsdk.StatusAwaitingReview)
	fmt.Println("review:", report.Status, "-", report.Message)
	// Output:
	// preview add-line: modified README.md "# svc-01\n" -> "# svc-01\nMigrated by Loom.\n"
	// preview review: skipped (a manual-review step changes no files)
	// add-line: open on branch loom/add-line
	// add-line: merged
	// review: awaiting_review - Read README.md of svc-01, then finish the review in Loom.
}

// localRepos lists the repositories under a local host's root.
func localRepos(host *local.Host) func(context.Context) ([]string, error) {
	return func(context.Context) ([]string, error) { return host.Repositories() }
}
