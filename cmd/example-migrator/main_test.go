package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/loomhq/loom/internal/gomigrator"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/migratorsdk/migratortest"
	"github.com/loomhq/loom/pullrequest/github/githubtest"
)

func TestFlagsThatCannotWork(t *testing.T) {
	for args, want := range map[string]string{
		"-host gitlab": `-host "gitlab": want local or github`,
		"-host github": "-host github needs -github-owner",
		"-host github -generate 3 -github-owner acme":   "-generate makes a local fleet",
		"-host github -github-owner acme -github-token": "flag needs an argument",
	} {
		cfg, err := parseFlags(strings.Fields(args))
		if err == nil {
			_, err = newMigrator(t.Context(), cfg)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// With -host github the example Migrator opens real pull requests (on the
// fake GitHub here) and, with a webhook secret, sees a merge at once: its
// own merge checks run every 15 s, longer than the test waits.
func TestTheExampleOnGitHub(t *testing.T) {
	fake := githubtest.New(t)
	for name, goVersion := range map[string]string{"svc-01": "1.19", "svc-02": "1.23"} {
		if err := fake.CreateRepo("acme/"+name, map[string]string{"go.mod": "module " + name + "\n\ngo " + goVersion + "\n", "OWNERS": "payments\n"}); err != nil {
			t.Fatal(err)
		}
	}
	loom := migratortest.New(t)
	cfg, err := parseFlags([]string{"-host", "github", "-github-url", fake.URL(), "-github-token", fake.Token(), "-github-owner", "acme",
		"-github-webhook-secret", "s3cret", "-loom", loom.URL(), "-token", "", "-listen", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := newMigrator(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	cands := loom.WaitCandidates(t, gomigrator.MigrationID, 1)
	if c := cands[0]; c.ID != "acme/svc-01" || c.Metadata["repository"] != strings.TrimSuffix(fake.URL(), "api/v3/")+"acme/svc-01" ||
		c.Metadata["team"] != "payments" || len(c.Files) != 1 {
		t.Fatalf("discovered %+v", cands)
	}
	_, migratorURL, _ := loom.Migration(gomigrator.MigrationID)
	if err := fake.AddWebhook(migratorURL+"/webhooks/github", "s3cret"); err != nil {
		t.Fatal(err)
	}

	inputs := map[string]string{"go_version": "1.23", "toolchain": "1.23.4"}
	run := loom.MustDispatch(t, gomigrator.MigrationID, "bump-go", "acme/svc-01", inputs)
	opened := run.MustWait(t, migratorsdk.StatusOpen)
	pulls := fake.Pulls("acme/svc-01")
	if len(pulls) != 1 || pulls[0].URL != opened.PRURL || pulls[0].Title != "Raise the go directive of go.mod" {
		t.Fatalf("opened %+v, pull requests %+v", opened, pulls)
	}
	if gomod, _ := fake.File("acme/svc-01", "loom/bump-go", "go.mod"); gomod != "module svc-01\n\ngo 1.23\n" {
		t.Fatalf("the branch's go.mod: %q", gomod)
	}
	if err := fake.MergePull("acme/svc-01", pulls[0].Number); err != nil {
		t.Fatal(err)
	}
	run.MustWait(t, migratorsdk.StatusMerged)
}
