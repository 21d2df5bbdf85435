package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/loomhq/loom/pullrequest"
	"github.com/loomhq/loom/pullrequest/local"
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

func str(s string) *string { return &s }

// fleet makes a host over a root with one repository, "svc".
func fleet(t *testing.T) (*local.Host, string) {
	t.Helper()
	root := t.TempDir()
	repo := filepath.Join(root, "svc")
	if err := local.Init(context.Background(), repo, map[string]string{
		"README.md":    "# svc\n",
		"go.mod":       "module svc\n\ngo 1.21\n",
		"docs/old.md":  "old\n",
		"bin/build.sh": "#!/bin/sh\necho build\n",
	}); err != nil {
		t.Fatal(err)
	}
	// An executable file, to see that a change keeps its mode.
	if err := os.Chmod(filepath.Join(repo, "bin", "build.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "update-index", "--chmod=+x", "bin/build.sh")
	git(t, repo, "commit", "-q", "-m", "executable")
	return local.New(root), repo
}

func TestPublishMakesOneCommitOnTheBranchAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	h, repo := fleet(t)
	mainBefore := git(t, repo, "rev-parse", "main")
	change := pullrequest.Change{Repo: "svc", Branch: "loom/edit", Title: "Edit the service", Body: "Because.", Files: map[string]*string{
		"README.md":    str("# svc\n\nMigrated.\n"),
		"new/dir/a.go": str("package a\n"),
		"docs/old.md":  nil,
		"bin/build.sh": str("#!/bin/sh\necho build2\n"),
	}}
	pr, err := h.Publish(ctx, change)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Repo != "svc" || pr.Branch != "loom/edit" || pr.Number != 0 || len(pr.Commit) != 40 ||
		pr.URL != "file://"+filepath.ToSlash(repo)+"?branch=loom%2Fedit" {
		t.Fatalf("pull request %+v", pr)
	}
	if got := strings.TrimSpace(git(t, repo, "rev-parse", "loom/edit")); got != pr.Commit {
		t.Fatalf("branch at %s, published %s", got, pr.Commit)
	}
	if got := strings.TrimSpace(git(t, repo, "rev-parse", "loom/edit^")); got+"\n" != mainBefore {
		t.Fatalf("the commit's parent is %s, not main", got)
	}
	if got := git(t, repo, "log", "-1", "--format=%an <%ae>|%s|%b", "loom/edit"); got != "Loom <loom@localhost>|Edit the service|Because.\n\n" {
		t.Fatalf("commit %q", got)
	}
	if got := git(t, repo, "diff", "--name-status", "main", "loom/edit"); got != "M\tREADME.md\nM\tbin/build.sh\nD\tdocs/old.md\nA\tnew/dir/a.go\n" {
		t.Fatalf("diff with main:\n%s", got)
	}
	if got := git(t, repo, "ls-tree", "loom/edit", "bin/build.sh"); !strings.HasPrefix(got, "100755 ") {
		t.Fatalf("the executable lost its mode: %s", got)
	}
	// Nothing else moved: main, the checkout, the index.
	if git(t, repo, "rev-parse", "main") != mainBefore || git(t, repo, "status", "--porcelain") != "" || git(t, repo, "branch", "--show-current") != "main\n" {
		t.Fatal("publishing touched main or the checkout")
	}
	if b, _ := os.ReadFile(filepath.Join(repo, "README.md")); string(b) != "# svc\n" {
		t.Fatalf("the checkout's README.md is %q", b)
	}

	// Again: the same commit, nothing new.
	again, err := h.Publish(ctx, change)
	if err != nil || again != pr {
		t.Fatalf("published again: %+v, %v; first %+v", again, err, pr)
	}
	// Even with the branch gone, the commit is the same one (deterministic).
	git(t, repo, "branch", "-D", "loom/edit")
	if again, err := h.Publish(ctx, change); err != nil || again.Commit != pr.Commit {
		t.Fatalf("published after the branch was deleted: %+v, %v; first %+v", again, err, pr)
	}
	// Another Host value (a restarted Migrator) agrees.
	if again, err := local.New(filepath.Dir(repo)).Publish(ctx, change); err != nil || again != pr {
		t.Fatalf("published by another host: %+v, %v", again, err)
	}

	// Changed content replaces the branch's commit, still on main.
	change.Files["README.md"] = str("# svc\n\nMigrated twice.\n")
	updated, err := h.Publish(ctx, change)
	if err != nil {
		t.Fatal(err)
	}
	if updated.Commit == pr.Commit || updated.URL != pr.URL {
		t.Fatalf("updated %+v, first %+v", updated, pr)
	}
	if got := git(t, repo, "show", "loom/edit:README.md"); got != "# svc\n\nMigrated twice.\n" {
		t.Fatalf("branch holds %q", got)
	}
	if got := git(t, repo, "rev-list", "--count", "main..loom/edit"); got != "1\n" {
		t.Fatalf("%s commits on the branch, want 1", got)
	}
}

func TestPublishBuildsOnTheBaseAsItIsNow(t *testing.T) {
	ctx := context.Background()
	h, repo := fleet(t)
	change := pullrequest.Change{Repo: "svc", Branch: "loom/edit", Title: "Edit", Files: map[string]*string{"README.md": str("# svc\n\nMigrated.\n")}}
	first, err := h.Publish(ctx, change)
	if err != nil {
		t.Fatal(err)
	}
	// main moves on: publishing the same files again rebases the branch.
	if err := os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module svc\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "commit", "-q", "-am", "go 1.22")
	second, err := h.Publish(ctx, change)
	if err != nil {
		t.Fatal(err)
	}
	if second.Commit == first.Commit || git(t, repo, "rev-parse", "loom/edit^") != git(t, repo, "rev-parse", "main") {
		t.Fatal("the branch was not rebuilt on the new main")
	}
	if got := git(t, repo, "show", "loom/edit:go.mod"); !strings.Contains(got, "go 1.22") {
		t.Fatalf("the branch dropped main's change: %q", got)
	}
}

func TestPublishRefusals(t *testing.T) {
	ctx := context.Background()
	h, repo := fleet(t)
	_, err := h.Publish(ctx, pullrequest.Change{Repo: "svc", Branch: "loom/same", Title: "Same", Files: map[string]*string{"README.md": str("# svc\n")}})
	if !errors.Is(err, pullrequest.ErrNoChanges) {
		t.Fatalf("a change equal to main: %v", err)
	}
	if out := git(t, repo, "branch", "--list", "loom/*"); out != "" {
		t.Fatalf("branches made: %s", out)
	}
	for name, c := range map[string]pullrequest.Change{
		"outside the root": {Repo: "../svc", Branch: "loom/x", Title: "x", Files: map[string]*string{"a": str("a")}},
		"no such repo":     {Repo: "nope", Branch: "loom/x", Title: "x", Files: map[string]*string{"a": str("a")}},
		"bad branch":       {Repo: "svc", Branch: "loom/x..y", Title: "x", Files: map[string]*string{"a": str("a")}},
		"base branch":      {Repo: "svc", Branch: "main", Title: "x", Files: map[string]*string{"a": str("a")}},
		"no title":         {Repo: "svc", Branch: "loom/x", Files: map[string]*string{"a": str("a")}},
		"path escapes":     {Repo: "svc", Branch: "loom/x", Title: "x", Files: map[string]*string{"../a": str("a")}},
		"path in .git":     {Repo: "svc", Branch: "loom/x", Title: "x", Files: map[string]*string{".git/config": str("a")}},
		"absolute path":    {Repo: "svc", Branch: "loom/x", Title: "x", Files: map[string]*string{"/etc/passwd": str("a")}},
	} {
		if _, err := h.Publish(ctx, c); err == nil {
			t.Errorf("%s: published", name)
		}
	}
	// A branch checked out in the repository is left alone.
	git(t, repo, "checkout", "-q", "-b", "loom/mine")
	_, err = h.Publish(ctx, pullrequest.Change{Repo: "svc", Branch: "loom/mine", Title: "x", Files: map[string]*string{"a": str("a")}})
	if err == nil || !strings.Contains(err.Error(), "checked out") {
		t.Fatalf("publish on the checked-out branch: %v", err)
	}
}

func TestRead(t *testing.T) {
	ctx := context.Background()
	h, repo := fleet(t)
	if c, ok, err := h.Read(ctx, "svc", "go.mod"); err != nil || !ok || c != "module svc\n\ngo 1.21\n" {
		t.Fatalf("go.mod: %q %v %v", c, ok, err)
	}
	if c, ok, err := h.Read(ctx, "svc", "nope.txt"); err != nil || ok || c != "" {
		t.Fatalf("a missing file: %q %v %v", c, ok, err)
	}
	if _, _, err := h.Read(ctx, "svc", "docs"); err == nil {
		t.Fatal("read a directory")
	}
	if _, _, err := h.Read(ctx, "nope", "go.mod"); err == nil {
		t.Fatal("read in a missing repository")
	}
	// The checkout does not matter, only main; an absolute path works too.
	if err := os.WriteFile(filepath.Join(repo, "go.mod"), []byte("dirty\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, ok, err := h.Read(ctx, repo, "go.mod"); err != nil || !ok || c != "module svc\n\ngo 1.21\n" {
		t.Fatalf("go.mod by absolute path: %q %v %v", c, ok, err)
	}
	names, err := h.Repositories()
	if err != nil || len(names) != 1 || names[0] != "svc" {
		t.Fatalf("repositories %v %v", names, err)
	}
}

func TestStates(t *testing.T) {
	ctx := context.Background()
	h, repo := fleet(t)
	publish := func(branch string) pullrequest.PullRequest {
		t.Helper()
		pr, err := h.Publish(ctx, pullrequest.Change{Repo: "svc", Branch: branch, Title: branch, Files: map[string]*string{branch + ".txt": str(branch)}})
		if err != nil {
			t.Fatal(err)
		}
		return pr
	}
	state := func(pr pullrequest.PullRequest) pullrequest.State {
		t.Helper()
		s, err := h.State(ctx, pr)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	merged, closed := publish("loom/merged"), publish("loom/closed")
	if state(merged) != pullrequest.Open || state(closed) != pullrequest.Open {
		t.Fatal("new pull requests are not open")
	}
	if err := h.Merge(ctx, merged); err != nil {
		t.Fatal(err)
	}
	if state(merged) != pullrequest.Merged || state(closed) != pullrequest.Open {
		t.Fatalf("after merging one: %s, %s", state(merged), state(closed))
	}
	// Deleting a merged branch keeps it merged; deleting another closes it.
	git(t, repo, "branch", "-d", "loom/merged")
	if err := h.DeleteBranch(ctx, closed); err != nil {
		t.Fatal(err)
	}
	if state(merged) != pullrequest.Merged || state(closed) != pullrequest.Closed {
		t.Fatalf("after deleting the branches: %s, %s", state(merged), state(closed))
	}
	// Republishing a closed one opens it again (on main as it is now).
	if again := publish("loom/closed"); again.Commit == closed.Commit || state(again) != pullrequest.Open {
		t.Fatalf("republished %+v: %s", again, state(again))
	}
	// A fast-forward merge counts too.
	ff := publish("loom/ff")
	git(t, repo, "merge", "-q", "--ff-only", "loom/ff")
	if state(ff) != pullrequest.Merged {
		t.Fatal("a fast-forward merge was not seen")
	}
}

func TestConcurrentPublishesOnOneRepository(t *testing.T) {
	ctx := context.Background()
	h, repo := fleet(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			branch := fmt.Sprintf("loom/step-%d", i%4) // two publishes per branch
			_, err := h.Publish(ctx, pullrequest.Change{Repo: "svc", Branch: branch, Title: branch, Files: map[string]*string{"f.txt": str(branch)}})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := git(t, repo, "branch", "--list", "loom/*"); strings.Count(got, "loom/step-") != 4 {
		t.Fatalf("branches:\n%s", got)
	}
}
