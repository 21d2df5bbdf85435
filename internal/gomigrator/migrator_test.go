package gomigrator_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loomhq/loom/internal/gomigrator"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/migratorsdk/migratortest"
)

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t",
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return string(out)
}

// startMigrator serves the example against a fake Loom; checks counts its
// merge checks that returned.
func startMigrator(t *testing.T, fleet string) (loom *migratortest.Loom, checks *atomic.Int32) {
	t.Helper()
	loom = migratortest.New(t)
	checks = new(atomic.Int32)
	spec := gomigrator.Spec(fleet)
	check := spec.CheckMerged
	spec.CheckMerged = func(ctx context.Context, o migratorsdk.OpenStep) (bool, error) {
		defer checks.Add(1)
		return check(ctx, o)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := migratorsdk.New(spec, migratorsdk.Options{
		LoomURL: loom.URL(), ListenAddr: l.Addr().String(), MergeCheckEvery: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	return loom, checks
}

func TestTheExampleMigratesARepository(t *testing.T) {
	ctx := context.Background()
	fleet := t.TempDir()
	if err := gomigrator.GenerateFleet(ctx, fleet, 5); err != nil {
		t.Fatal(err)
	}
	loom, checks := startMigrator(t, fleet)

	// svc-05 already declares go 1.23: only four repositories need the change.
	cands := loom.WaitCandidates(t, gomigrator.MigrationID, 4)
	if len(cands) != 4 || cands[0].ID != "svc-01" || cands[0].Metadata["go"] != "1.19" || cands[0].Metadata["team"] != "payments" {
		t.Fatalf("discovered %+v", cands)
	}

	inputs := map[string]string{"go_version": "1.23", "toolchain": "1.23.4"}
	previews, err := loom.Preview(ctx, gomigrator.MigrationID, "svc-01", inputs)
	if err != nil {
		t.Fatal(err)
	}
	if len(previews) != 3 {
		t.Fatalf("previews %+v", previews)
	}
	bump, pin := previews[0].Diffs, previews[1].Diffs
	if len(bump) != 1 || !strings.Contains(bump[0].Before, "go 1.19") || !strings.Contains(bump[0].After, "go 1.23\n") {
		t.Fatalf("bump-go preview %+v", previews[0])
	}
	// Stacked: the toolchain step starts from the bumped go.mod.
	if len(pin) != 1 || pin[0].Before != bump[0].After || !strings.Contains(pin[0].After, "toolchain go1.23.4") {
		t.Fatalf("pin-toolchain preview %+v", previews[1])
	}
	if !previews[2].Skipped {
		t.Fatalf("review preview %+v", previews[2])
	}
	bad, err := loom.Preview(ctx, gomigrator.MigrationID, "svc-01", map[string]string{"go_version": "latest", "toolchain": "1.23.4"})
	if err != nil || !strings.Contains(bad[0].Error, "go_version") {
		t.Fatalf("preview with a bad input: %+v, %v", bad, err)
	}

	repo := filepath.Join(fleet, "svc-01")
	run := loom.MustDispatch(t, gomigrator.MigrationID, "bump-go", "svc-01", inputs)
	opened := run.MustWait(t, migratorsdk.StatusOpen)
	if opened.Metadata["branch"] != "loom/bump-go" || !strings.HasPrefix(opened.PRURL, "file://") {
		t.Fatalf("opened %+v", opened)
	}
	if got := git(t, repo, "show", "loom/bump-go:go.mod"); got != bump[0].After {
		t.Fatalf("branch holds %q, the preview said %q", got, bump[0].After)
	}
	if got := git(t, repo, "show", "main:go.mod"); !strings.Contains(got, "go 1.19") {
		t.Fatalf("main changed before the merge: %q", got)
	}
	// Merge checks run one after another: two more, and the first of them
	// (not merged) was acted on.
	for want, deadline := checks.Load()+2, time.Now().Add(10*time.Second); checks.Load() < want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("10 s on, %d merge checks", checks.Load())
		}
	}
	if run.Status() != migratorsdk.StatusOpen {
		t.Fatalf("step became %s before its branch was merged", run.Status())
	}
	git(t, repo, "merge", "-q", "loom/bump-go")
	run.MustWait(t, migratorsdk.StatusMerged)

	pinRun := loom.MustDispatch(t, gomigrator.MigrationID, "pin-toolchain", "svc-01", inputs)
	pinRun.MustWait(t, migratorsdk.StatusOpen)
	if got := git(t, repo, "show", "loom/pin-toolchain:go.mod"); got != pin[0].After {
		t.Fatalf("second branch holds %q, the preview said %q", got, pin[0].After)
	}

	review := loom.MustDispatch(t, gomigrator.MigrationID, "review", "svc-01", inputs)
	if rep := review.MustWait(t, migratorsdk.StatusAwaitingReview); !strings.Contains(rep.Message, "go 1.23") {
		t.Fatalf("review instructions %q", rep.Message)
	}
}

func TestAStepAlreadyDoneCompletesWithoutABranch(t *testing.T) {
	ctx := context.Background()
	fleet := t.TempDir()
	if err := gomigrator.GenerateFleet(ctx, fleet, 1); err != nil {
		t.Fatal(err)
	}
	loom, _ := startMigrator(t, fleet)
	loom.WaitCandidates(t, gomigrator.MigrationID, 1)
	// Target 1.19: svc-01 is there already.
	run := loom.MustDispatch(t, gomigrator.MigrationID, "bump-go", "svc-01", map[string]string{"go_version": "1.19", "toolchain": "1.19.1"})
	if rep := run.MustWait(t, migratorsdk.StatusCompleted); rep.Message != "go.mod already says so" {
		t.Fatalf("completed with %q", rep.Message)
	}
	if out := git(t, filepath.Join(fleet, "svc-01"), "branch", "--list", "loom/*"); strings.TrimSpace(out) != "" {
		t.Fatalf("branches created: %s", out)
	}
	failed := loom.MustDispatch(t, gomigrator.MigrationID, "pin-toolchain", "svc-01", map[string]string{"go_version": "1.23", "toolchain": "newest"})
	if rep := failed.MustWait(t, migratorsdk.StatusFailed); !strings.Contains(rep.Message, "input toolchain") {
		t.Fatalf("failed with %q", rep.Message)
	}
}
