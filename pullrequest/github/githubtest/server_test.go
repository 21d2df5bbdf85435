package githubtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/pullrequest/github/githubtest"
	"github.com/loomhq/loom/pullrequest/local"
)

// The fake hashes git objects as git does: a repository with the same files
// has the same tree in the fake as in git.
func TestTheFakesTreesAreGitsTrees(t *testing.T) {
	files := map[string]string{
		"README.md":         "# svc\n",
		"go.mod":            "module svc\n",
		"a/b/c.go":          "package b\n",
		"a/b.txt":           "b\n",
		"a-b":               "sorts between a and a/ as git sorts trees\n",
		"docs/guide/one.md": "one\n",
	}
	fake := githubtest.New(t)
	if err := fake.CreateRepo("acme/svc", files); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "svc")
	if err := local.Init(context.Background(), dir, files); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "main^{tree}").Output()
	if err != nil {
		t.Fatal(err)
	}
	head, _ := fake.Branch("acme/svc", "main")
	tree := treeOf(t, fake, head)
	if want := strings.TrimSpace(string(out)); tree != want {
		t.Fatalf("the fake's tree is %s, git's %s", tree, want)
	}

	// The commit too: git makes the same one from the fields the API shows.
	var c struct {
		Author struct {
			Name, Email string
			Date        time.Time
		}
		Message string
	}
	if err := json.Unmarshal([]byte(mustGet(t, fake, "repos/acme/svc/git/commits/"+head)), &c); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "-C", dir, "commit-tree", tree, "-m", strings.TrimSuffix(c.Message, "\n"))
	date := fmt.Sprintf("%d +0000", c.Author.Date.Unix())
	cmd.Env = append(cmd.Environ(), "GIT_AUTHOR_NAME="+c.Author.Name, "GIT_AUTHOR_EMAIL="+c.Author.Email, "GIT_AUTHOR_DATE="+date,
		"GIT_COMMITTER_NAME="+c.Author.Name, "GIT_COMMITTER_EMAIL="+c.Author.Email, "GIT_COMMITTER_DATE="+date, "GIT_CONFIG_GLOBAL=/dev/null")
	out, err = cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(out)); head != want {
		t.Fatalf("the fake's commit is %s, git's %s", head, want)
	}
}

func treeOf(t *testing.T, fake *githubtest.Server, commit string) string {
	t.Helper()
	var tree string
	// Through the API, as a client sees it.
	req := mustGet(t, fake, "repos/acme/svc/git/commits/"+commit)
	if i := strings.Index(req, `"tree":{"sha":"`); i >= 0 {
		tree = req[i+len(`"tree":{"sha":"`):][:40]
	}
	return tree
}
