package migratorsdk_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/migratorsdk/migratortest"
)

// A Migrator of two step types, tested against the fake Loom of
// migratortest: the first step opens a pull request, the second waits for a
// person's review.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ll, _ := net.Listen("tcp", "127.0.0.1:0")
	loom := migratortest.Start(ll)
	defer loom.Close()

	spec := migratorsdk.Spec{
		Migration: migratorsdk.Migration{
			ID:   "go-upgrade",
			Name: "Upgrade Go",
			Steps: []migratorsdk.Step{
				{Name: "bump-go", Type: "open-pr"},
				{Name: "review", Type: "manual-review"},
			},
		},
		Handlers: map[string]migratorsdk.StepHandler{
			"open-pr": func(ctx context.Context, d *migratorsdk.Dispatch) error {
				return d.Opened(ctx, "https://git.example/"+d.Candidate.ID+"/pull/1")
			},
			"manual-review": func(ctx context.Context, d *migratorsdk.Dispatch) error {
				return d.AwaitingReview(ctx, "check the dashboards")
			},
		},
		Discover: func(context.Context) ([]migratorsdk.Candidate, error) {
			return []migratorsdk.Candidate{{ID: "acme/payments", Kind: "service"}}, nil
		},
	}
	ml, _ := net.Listen("tcp", "127.0.0.1:0")
	m, err := migratorsdk.New(spec, migratorsdk.Options{
		LoomURL:    loom.URL(),
		ListenAddr: ml.Addr().String(),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	go m.Serve(ctx, ml)

	cands, _ := loom.AwaitCandidates(ctx, "go-upgrade", 1)
	fmt.Println("discovered:", cands[0].ID)

	run, _ := loom.Dispatch(ctx, "go-upgrade", "bump-go", "acme/payments", nil)
	report, _ := run.Wait(ctx, migratorsdk.StatusOpen)
	fmt.Println("bump-go:", report.Status, report.PRURL)

	review, _ := loom.Dispatch(ctx, "go-upgrade", "review", "acme/payments", nil)
	report, _ = review.Wait(ctx, migratorsdk.StatusAwaitingReview)
	fmt.Println("review:", report.Status, "-", report.Message)
	// Output:
	// discovered: acme/payments
	// bump-go: open https://git.example/acme/payments/pull/1
	// review: awaiting_review - check the dashboards
}

// New refuses a spec Loom could not run, and says why.
func ExampleNew() {
	_, err := migratorsdk.New(migratorsdk.Spec{
		Migration: migratorsdk.Migration{ID: "go-upgrade", Name: "Upgrade Go", Steps: []migratorsdk.Step{{Name: "bump-go", Type: "open-pr"}}},
	}, migratorsdk.Options{LoomURL: "http://localhost:8080"})
	fmt.Println(err)
	// Output:
	// migrator go-upgrade: step "bump-go": no handler for step type "open-pr" in Spec.Handlers
}

// StackedPreview shows each step's change on top of the previous steps'.
func ExampleStackedPreview() {
	base := func(_ context.Context, repo, path string) (string, bool, error) {
		return "go 1.21\n", path == "go.mod", nil
	}
	apply := func(ctx context.Context, step migratorsdk.Step, files *migratorsdk.FileSet) (string, error) {
		content, _, err := files.Read(ctx, "acme/payments", "go.mod")
		if err != nil {
			return "", err
		}
		files.Write("acme/payments", "go.mod", content+step.Config["line"]+"\n")
		return "", nil
	}
	previews := migratorsdk.StackedPreview(context.Background(), migratorsdk.PreviewRequest{Steps: []migratorsdk.Step{
		{Name: "one", Config: map[string]string{"line": "toolchain go1.23.4"}},
		{Name: "two", Config: map[string]string{"line": "// migrated"}},
	}}, base, apply)
	for _, p := range previews {
		d := p.Diffs[0]
		fmt.Printf("%s: %s %q -> %q\n", p.Step, d.Status, d.Before, d.After)
	}
	// Output:
	// one: modified "go 1.21\n" -> "go 1.21\ntoolchain go1.23.4\n"
	// two: modified "go 1.21\ntoolchain go1.23.4\n" -> "go 1.21\ntoolchain go1.23.4\n// migrated\n"
}
