package github_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/pullrequest"
	"github.com/loomhq/loom/pullrequest/github"
	"github.com/loomhq/loom/pullrequest/github/githubtest"
)

func str(s string) *string { return &s }

const (
	routeCommits = "POST /repos/{owner}/{repo}/git/commits"
	routePulls   = "POST /repos/{owner}/{repo}/pulls"
	routeEdit    = "PATCH /repos/{owner}/{repo}/pulls/{pull_number}"
	routeToken   = "POST /app/installations/{installation_id}/access_tokens"
)

func newFake(t *testing.T) (*githubtest.Server, *github.Host) {
	t.Helper()
	fake := githubtest.New(t)
	if err := fake.CreateRepo("acme/svc", map[string]string{
		"README.md":   "# svc\n",
		"go.mod":      "module svc\n\ngo 1.21\n",
		"docs/old.md": "old\n",
	}); err != nil {
		t.Fatal(err)
	}
	host, err := github.New(github.Options{BaseURL: fake.URL(), Token: fake.Token()})
	if err != nil {
		t.Fatal(err)
	}
	return fake, host
}

func TestPublishOpensOnePullRequestAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	fake, host := newFake(t)
	mainBefore, _ := fake.Branch("acme/svc", "main")
	change := pullrequest.Change{Repo: "acme/svc", Branch: "loom/edit", Title: "Edit the service", Body: "Because.", Files: map[string]*string{
		"README.md":    str("# svc\n\nMigrated.\n"),
		"new/dir/a.go": str("package a\n"),
		"docs/old.md":  nil,
		"gone.txt":     nil, // not there: nothing to delete
	}}
	pr, err := host.Publish(ctx, change)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Number != 1 || pr.Repo != "acme/svc" || pr.Branch != "loom/edit" || !strings.HasSuffix(pr.URL, "/acme/svc/pull/1") || strings.Contains(pr.URL, "/api/v3/") {
		t.Fatalf("pull request %+v", pr)
	}
	if head, _ := fake.Branch("acme/svc", "loom/edit"); head != pr.Commit {
		t.Fatalf("branch at %s, published %s", head, pr.Commit)
	}
	if parents := fake.Parents("acme/svc", pr.Commit); len(parents) != 1 || parents[0] != mainBefore {
		t.Fatalf("the commit's parents are %v, want main %s", parents, mainBefore)
	}
	for path, want := range map[string]string{"README.md": "# svc\n\nMigrated.\n", "new/dir/a.go": "package a\n", "go.mod": "module svc\n\ngo 1.21\n"} {
		if got, ok := fake.File("acme/svc", "loom/edit", path); !ok || got != want {
			t.Errorf("%s on the branch: %q %v", path, got, ok)
		}
	}
	if _, ok := fake.File("acme/svc", "loom/edit", "docs/old.md"); ok {
		t.Error("docs/old.md was not deleted")
	}
	if mainNow, _ := fake.Branch("acme/svc", "main"); mainNow != mainBefore {
		t.Fatal("main moved")
	}
	pulls := fake.Pulls("acme/svc")
	if len(pulls) != 1 || pulls[0].Title != "Edit the service" || pulls[0].Body != "Because." || pulls[0].Head != "loom/edit" ||
		pulls[0].Base != "main" || pulls[0].State != "open" || pulls[0].URL != pr.URL {
		t.Fatalf("pull requests %+v", pulls)
	}

	// Again: the same pull request and commit, nothing created.
	commits, creates := fake.Commits("acme/svc"), fake.Requests(routePulls)
	again, err := host.Publish(ctx, change)
	if err != nil || again != pr {
		t.Fatalf("published again: %+v, %v; first %+v", again, err, pr)
	}
	// A Host of its own (a restarted Migrator) agrees.
	other, err := github.New(github.Options{BaseURL: fake.URL(), Token: fake.Token()})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := other.Publish(ctx, change); err != nil || again != pr {
		t.Fatalf("published by another host: %+v, %v", again, err)
	}
	if fake.Commits("acme/svc") != commits || fake.Requests(routePulls) != creates || fake.Requests(routeEdit) != 0 {
		t.Fatalf("publishing again created commits (%d → %d) or pull requests", commits, fake.Commits("acme/svc"))
	}

	// Changed content moves the branch (force) and the pull request follows;
	// a changed title updates it.
	change.Files["README.md"] = str("# svc\n\nMigrated twice.\n")
	change.Title = "Edit the service, better"
	updated, err := host.Publish(ctx, change)
	if err != nil {
		t.Fatal(err)
	}
	if updated.Number != 1 || updated.Commit == pr.Commit {
		t.Fatalf("updated %+v, first %+v", updated, pr)
	}
	if got, _ := fake.File("acme/svc", "loom/edit", "README.md"); got != "# svc\n\nMigrated twice.\n" {
		t.Fatalf("branch holds %q", got)
	}
	if parents := fake.Parents("acme/svc", updated.Commit); len(parents) != 1 || parents[0] != mainBefore {
		t.Fatalf("the new commit is not on main: %v", parents)
	}
	pulls = fake.Pulls("acme/svc")
	if len(pulls) != 1 || pulls[0].Title != "Edit the service, better" || pulls[0].HeadSHA != updated.Commit {
		t.Fatalf("pull requests after the update %+v", pulls)
	}

	// A change that leaves main as it is.
	_, err = host.Publish(ctx, pullrequest.Change{Repo: "acme/svc", Branch: "loom/same", Title: "Same", Files: map[string]*string{"README.md": str("# svc\n")}})
	if !errors.Is(err, pullrequest.ErrNoChanges) {
		t.Fatalf("a change equal to main: %v", err)
	}
	if _, ok := fake.Branch("acme/svc", "loom/same"); ok {
		t.Fatal("a branch was made for no change")
	}
}

func TestStatesOnGitHub(t *testing.T) {
	ctx := context.Background()
	fake, host := newFake(t)
	publish := func(branch, file string) pullrequest.PullRequest {
		t.Helper()
		pr, err := host.Publish(ctx, pullrequest.Change{Repo: "acme/svc", Branch: branch, Title: branch, Files: map[string]*string{file: str(branch + "\n")}})
		if err != nil {
			t.Fatal(err)
		}
		return pr
	}
	state := func(pr pullrequest.PullRequest) pullrequest.State {
		t.Helper()
		s, err := host.State(ctx, pr)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	merged, closed := publish("loom/merged", "a.txt"), publish("loom/closed", "b.txt")
	if state(merged) != pullrequest.Open || state(closed) != pullrequest.Open {
		t.Fatal("new pull requests are not open")
	}
	// main moves on first: the merge is a real three-way merge.
	if _, err := fake.Push("acme/svc", "main", map[string]*string{"c.txt": str("c\n")}, "c"); err != nil {
		t.Fatal(err)
	}
	if err := fake.MergePull("acme/svc", merged.Number); err != nil {
		t.Fatal(err)
	}
	if err := fake.ClosePull("acme/svc", closed.Number); err != nil {
		t.Fatal(err)
	}
	if state(merged) != pullrequest.Merged || state(closed) != pullrequest.Closed {
		t.Fatalf("states %s, %s", state(merged), state(closed))
	}
	for _, f := range []string{"a.txt", "c.txt", "README.md"} {
		if _, ok := fake.File("acme/svc", "main", f); !ok {
			t.Errorf("main has no %s after the merge", f)
		}
	}
	// Found from the URL alone, or the branch alone, too.
	if s, err := host.State(ctx, pullrequest.PullRequest{Repo: "acme/svc", URL: merged.URL}); err != nil || s != pullrequest.Merged {
		t.Fatalf("by URL: %s %v", s, err)
	}
	if s, err := host.State(ctx, pullrequest.PullRequest{Repo: "acme/svc", Branch: "loom/closed"}); err != nil || s != pullrequest.Closed {
		t.Fatalf("by branch: %s %v", s, err)
	}
	// Publishing a closed one again opens a new pull request.
	reopened := publish("loom/closed", "b.txt")
	if reopened.Number == closed.Number || state(reopened) != pullrequest.Open {
		t.Fatalf("republished %+v: %s", reopened, state(reopened))
	}
	// A conflicting change cannot be merged.
	conflict := publish("loom/conflict", "c.txt")
	if _, err := fake.Push("acme/svc", "main", map[string]*string{"c.txt": str("changed on main\n")}, "c again"); err != nil {
		t.Fatal(err)
	}
	if err := fake.MergePull("acme/svc", conflict.Number); err == nil || !strings.Contains(err.Error(), "conflict in c.txt") {
		t.Fatalf("merging a conflict: %v", err)
	}
}

func TestReadOnGitHub(t *testing.T) {
	ctx := context.Background()
	fake, host := newFake(t)
	if c, ok, err := host.Read(ctx, "acme/svc", "go.mod"); err != nil || !ok || c != "module svc\n\ngo 1.21\n" {
		t.Fatalf("go.mod: %q %v %v", c, ok, err)
	}
	if c, ok, err := host.Read(ctx, "acme/svc", "nope.txt"); err != nil || ok || c != "" {
		t.Fatalf("a missing file: %q %v %v", c, ok, err)
	}
	if _, _, err := host.Read(ctx, "acme/svc", "docs"); err == nil {
		t.Fatal("read a directory")
	}
	if _, _, err := host.Read(ctx, "acme/nope", "go.mod"); err == nil {
		t.Fatal("read in a missing repository")
	}
	if _, _, err := host.Read(ctx, "nope", "go.mod"); err == nil {
		t.Fatal("read in a repository without owner")
	}
	// Over 1 MB, the contents API has no content: the blob has it.
	big := strings.Repeat("0123456789abcdef\n", 70000)
	if _, err := fake.Push("acme/svc", "main", map[string]*string{"big.txt": &big}, "big"); err != nil {
		t.Fatal(err)
	}
	if c, ok, err := host.Read(ctx, "acme/svc", "big.txt"); err != nil || !ok || c != big {
		t.Fatalf("big.txt: %d bytes, %v %v", len(c), ok, err)
	}
	if fake.Requests("GET /repos/{owner}/{repo}/git/blobs/{file_sha}") != 1 {
		t.Fatal("the big file was not read from its blob")
	}
	// Another base branch.
	if _, err := fake.Push("acme/svc", "release", map[string]*string{"go.mod": str("module svc\n\ngo 1.20\n")}, "release"); err != nil {
		t.Fatal(err)
	}
	release, err := github.New(github.Options{BaseURL: fake.URL(), Token: fake.Token(), Base: "release"})
	if err != nil {
		t.Fatal(err)
	}
	if c, _, err := release.Read(ctx, "acme/svc", "go.mod"); err != nil || !strings.Contains(c, "1.20") {
		t.Fatalf("go.mod on release: %q %v", c, err)
	}
	pr, err := release.Publish(ctx, pullrequest.Change{Repo: "acme/svc", Branch: "loom/r", Title: "r", Files: map[string]*string{"r.txt": str("r")}})
	if err != nil || fake.Pulls("acme/svc")[0].Base != "release" {
		t.Fatalf("a pull request on release: %+v %v", pr, err)
	}

	names, err := host.Repositories(ctx, "acme")
	if err != nil || len(names) != 1 || names[0] != "acme/svc" {
		t.Fatalf("repositories: %v %v", names, err)
	}
}

func TestCredentials(t *testing.T) {
	ctx := context.Background()
	fake, _ := newFake(t)
	for name, opts := range map[string]github.Options{
		"no credentials":   {BaseURL: fake.URL()},
		"both":             {BaseURL: fake.URL(), Token: "x", App: &github.App{ID: 1, InstallationID: 2, PrivateKey: fake.AddApp(1, 2)}},
		"App without key":  {BaseURL: fake.URL(), App: &github.App{ID: 1, InstallationID: 2}},
		"App without ids":  {BaseURL: fake.URL(), App: &github.App{PrivateKey: fake.AddApp(3, 4)}},
		"not a URL":        {BaseURL: "ftp://x", Token: "x"},
		"key not a key":    {BaseURL: fake.URL(), App: &github.App{ID: 1, InstallationID: 2, PrivateKey: []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")}},
		"relative baseurl": {BaseURL: "/api/v3/", Token: "x"},
	} {
		if _, err := github.New(opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	wrong, err := github.New(github.Options{BaseURL: fake.URL(), Token: "ghp_wrong"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := wrong.Read(ctx, "acme/svc", "go.mod"); err == nil || !strings.Contains(err.Error(), "Bad credentials") {
		t.Fatalf("a wrong token: %v", err)
	}
	// A key of another App is refused at the token exchange.
	fake.AddApp(10, 20)
	impostor, err := github.New(github.Options{BaseURL: fake.URL(), App: &github.App{ID: 10, InstallationID: 20, PrivateKey: fake.AddApp(11, 21)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := impostor.Read(ctx, "acme/svc", "go.mod"); err == nil || !strings.Contains(err.Error(), "installation token") {
		t.Fatalf("a key of another App: %v", err)
	}
}

func TestGitHubAppAuthentication(t *testing.T) {
	ctx := context.Background()
	fake, _ := newFake(t)
	key := fake.AddApp(42, 4242)
	host, err := github.New(github.Options{BaseURL: fake.URL(), App: &github.App{ID: 42, InstallationID: 4242, PrivateKey: key}})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := host.Publish(ctx, pullrequest.Change{Repo: "acme/svc", Branch: "loom/app", Title: "As an App", Files: map[string]*string{"app.txt": str("app\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := host.State(ctx, pr); err != nil || s != pullrequest.Open {
		t.Fatalf("state %s %v", s, err)
	}
	// One token exchange served the many calls.
	if n := fake.Requests(routeToken); n != 1 {
		t.Fatalf("%d token exchanges, want 1", n)
	}
	// A token about to expire is renewed before it does.
	fake.SetTokenLifetime(time.Minute + 2*time.Second)
	host, err = github.New(github.Options{BaseURL: fake.URL(), App: &github.App{ID: 42, InstallationID: 4242, PrivateKey: key}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := host.Read(ctx, "acme/svc", "app.txt"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := host.Read(ctx, "acme/svc", "README.md"); err != nil {
		t.Fatal(err)
	}
	if n := fake.Requests(routeToken); n != 2 {
		t.Fatalf("%d token exchanges, want 2", n)
	}
	time.Sleep(2 * time.Second)
	if _, _, err := host.Read(ctx, "acme/svc", "README.md"); err != nil {
		t.Fatal(err)
	}
	if n := fake.Requests(routeToken); n != 3 {
		t.Fatalf("%d token exchanges after the token neared its expiry, want 3", n)
	}
}

// The fake answers like GitHub: its error shapes are what go-github and
// the Host see.
func TestTheFakeSpeaksGitHub(t *testing.T) {
	fake, _ := newFake(t)
	do := func(method, path, token, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, fake.URL()+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "token "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	get := func(path, token string) (*http.Response, string) { return do(http.MethodGet, path, token, "") }
	if resp, body := get("repos/acme/svc", ""); resp.StatusCode != 401 || !strings.Contains(body, `"message":"Requires authentication"`) {
		t.Errorf("no token: %d %s", resp.StatusCode, body)
	}
	if resp, body := get("repos/acme/svc/git/ref/heads/nope", fake.Token()); resp.StatusCode != 404 || !strings.Contains(body, `"message":"Not Found"`) || !strings.Contains(body, `"documentation_url"`) {
		t.Errorf("missing ref: %d %s", resp.StatusCode, body)
	}
	if resp, body := get("repos/acme/svc/contents/README.md", fake.Token()); resp.StatusCode != 200 || !strings.Contains(body, `"encoding":"base64"`) || !strings.Contains(body, `"type":"file"`) {
		t.Errorf("contents: %d %s", resp.StatusCode, body)
	}
	if resp, body := get("repos/acme/svc/contents/", fake.Token()); resp.StatusCode != 200 || !strings.HasPrefix(body, "[") || !strings.Contains(body, `"type":"dir"`) {
		t.Errorf("root directory: %d %s", resp.StatusCode, body)
	}
	// A second pull request of the same branch: 422 with GitHub's message.
	host := mustHost(t, fake)
	if _, err := host.Publish(context.Background(), pullrequest.Change{Repo: "acme/svc", Branch: "loom/x", Title: "x", Files: map[string]*string{"x": str("x")}}); err != nil {
		t.Fatal(err)
	}
	resp, body := do(http.MethodPost, "repos/acme/svc/pulls", fake.Token(), `{"title":"x","head":"acme:loom/x","base":"main"}`)
	if resp.StatusCode != 422 || !strings.Contains(body, `"message":"Validation Failed"`) || !strings.Contains(body, "A pull request already exists for acme:loom/x.") {
		t.Fatalf("a second pull request of loom/x: %d %s", resp.StatusCode, body)
	}
	resp, body = do(http.MethodPost, "repos/acme/svc/git/refs", fake.Token(), `{"ref":"refs/heads/loom/x","sha":"`+strings.Repeat("0", 40)+`"}`)
	if resp.StatusCode != 422 || !strings.Contains(body, `"message":"Object does not exist"`) {
		t.Fatalf("a ref to nothing: %d %s", resp.StatusCode, body)
	}
}

func mustHost(t *testing.T, fake *githubtest.Server) *github.Host {
	t.Helper()
	h, err := github.New(github.Options{BaseURL: fake.URL(), Token: fake.Token()})
	if err != nil {
		t.Fatal(err)
	}
	return h
}
