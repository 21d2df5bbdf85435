// Package github is a pullrequest.Host over GitHub's REST API (GitHub.com
// or GitHub Enterprise Server), through github.com/google/go-github, with a
// personal or fine-grained token or as a GitHub App installation. A
// repository is named "owner/name".
//
// Publish writes a change with the Git Data API, never through a checkout:
// it reads the base branch's head, creates the changed files' blobs and a
// tree on top of the base tree, and a commit whose parent is the base
// branch's head, points the branch at it (creating it, or moving it with
// force), then finds the branch's open pull request (updating its title
// and body) or creates it. When the branch's head already has the wanted
// tree, its commit is kept: publishing again creates nothing.
//
// Merges reach a Migrator two ways: its merge checks ask State for every
// open step periodically (polling, the fallback that always works), and
// Webhook receives GitHub's pull_request deliveries so that a merge is
// reported at once. See Webhook.
//
// A call that fails for a passing reason (no answer, a 5xx, a rate limit)
// is retried within a budget before the Host reports it: see RetryPolicy.
//
// Package githubtest is a fake GitHub for tests.
package github

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v93/github"

	"github.com/loomhq/loom/pullrequest"
	"github.com/loomhq/loom/pullrequest/internal/keyed"
)

// DefaultBaseURL is GitHub.com's REST API.
const DefaultBaseURL = "https://api.github.com/"

// Options say how to reach GitHub. Exactly one of Token and App is
// required.
type Options struct {
	// BaseURL is the REST API's root: default DefaultBaseURL; for GitHub
	// Enterprise Server https://HOST/api/v3/.
	BaseURL string
	// Token authenticates every call (Authorization: Bearer): a personal
	// access token or a fine-grained token with read and write access to
	// contents and pull requests.
	Token string
	// App authenticates as an installation of a GitHub App, with an
	// installation access token the Host gets from the App's private key
	// and renews before it expires.
	App *App
	// HTTPClient makes the calls (its Transport and Timeout are used, and
	// it is not changed); default one with a 30 s timeout. With retries
	// on, the Timeout bounds each attempt and Retry.Budget the call.
	HTTPClient *http.Client
	// Base is the branch pull requests merge into; default each
	// repository's default branch.
	Base string
	// Retry says how a call that failed for a passing reason (no answer,
	// a 5xx, a rate limit) is retried before the Host reports its error:
	// by default with exponential backoff from 500 ms, as GitHub's
	// Retry-After or X-RateLimit-Reset ask, for up to a minute per call
	// and never past the context's deadline. Retry.Off turns retries
	// off. See RetryPolicy.
	Retry RetryPolicy
}

// App is a GitHub App installation's credentials. The App needs the
// permissions contents (read and write), pull requests (read and write)
// and metadata (read), and, for Webhook, the pull request event.
type App struct {
	// ID is the App's id (its settings page, "App ID").
	ID int64
	// InstallationID is the installation on the account that owns the
	// repositories (the number at the end of the installation's settings
	// URL).
	InstallationID int64
	// PrivateKey is one of the App's private keys, PEM-encoded, as GitHub
	// generates it.
	PrivateKey []byte
}

// Host is a pullrequest.Host over GitHub. It is safe for concurrent use;
// publishes to one repository are serialised.
type Host struct {
	client *gh.Client
	base   string
	locks  keyed.Mutex

	mu       sync.Mutex
	defaults map[string]string // repository → its default branch
}

var _ pullrequest.Host = (*Host)(nil)

// New returns a Host with opts, or says what is wrong with them.
func New(opts Options) (*Host, error) {
	base := opts.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("github: Options.BaseURL %q: want the REST API's http(s) URL, e.g. %s", opts.BaseURL, DefaultBaseURL)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient // go-github wraps the client's transport: leave the caller's alone
		hc = &c
	}
	if !opts.Retry.Off {
		next := hc.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		// The client's Timeout would end the retries with the attempt:
		// it bounds each attempt instead.
		hc.Transport = &retryTransport{next: next, policy: opts.Retry.withDefaults(), attempt: hc.Timeout}
		hc.Timeout = 0
	}
	clientOpts := []gh.ClientOptionsFunc{gh.WithURLs(&base, &base), gh.WithUserAgent("loom-pullrequest")}
	switch {
	case opts.Token != "" && opts.App != nil:
		return nil, errors.New("github: Options.Token and Options.App are exclusive")
	case opts.Token != "":
		clientOpts = append(clientOpts, gh.WithAuthToken(opts.Token))
	case opts.App != nil:
		t, err := newAppTransport(*opts.App, u, hc)
		if err != nil {
			return nil, err
		}
		hc.Transport = t
	default:
		return nil, errors.New("github: Options.Token or Options.App is required")
	}
	client, err := gh.NewClient(append(clientOpts, gh.WithHTTPClient(hc))...)
	if err != nil {
		return nil, fmt.Errorf("github: %w", err)
	}
	return &Host{client: client, base: opts.Base, defaults: map[string]string{}}, nil
}

func splitRepo(repo string) (owner, name string, err error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("github: repository %q: want owner/name", repo)
	}
	return owner, name, nil
}

func notFound(resp *gh.Response) bool { return resp != nil && resp.StatusCode == http.StatusNotFound }

// baseBranch is the branch pull requests of the repository merge into. It
// also checks, once, that the repository exists.
func (h *Host) baseBranch(ctx context.Context, owner, name string) (string, error) {
	key := owner + "/" + name
	h.mu.Lock()
	b, ok := h.defaults[key]
	h.mu.Unlock()
	if ok {
		return b, nil
	}
	r, _, err := h.client.Repositories.Get(ctx, owner, name)
	if err != nil {
		return "", fmt.Errorf("github: get repository %s: %w", key, err)
	}
	b = h.base
	if b == "" {
		b = r.GetDefaultBranch()
	}
	if b == "" {
		return "", fmt.Errorf("github: repository %s has no default branch (is it empty?)", key)
	}
	h.mu.Lock()
	h.defaults[key] = b
	h.mu.Unlock()
	return b, nil
}

// Read returns a file as the base branch has it (the contents API, and
// the blobs API for files over 1 MB).
func (h *Host) Read(ctx context.Context, repo, path string) (string, bool, error) {
	if err := pullrequest.ValidPath(path); err != nil {
		return "", false, err
	}
	owner, name, err := splitRepo(repo)
	if err != nil {
		return "", false, err
	}
	base, err := h.baseBranch(ctx, owner, name)
	if err != nil {
		return "", false, err
	}
	file, dir, resp, err := h.client.Repositories.GetContents(ctx, owner, name, path, &gh.RepositoryContentGetOptions{Ref: base})
	var ghErr *gh.ErrorResponse
	switch {
	case notFound(resp) && errors.As(err, &ghErr) && strings.HasPrefix(ghErr.Message, "No commit found"):
		return "", false, fmt.Errorf("github: read %s of %s: branch %s: %w", path, repo, base, err)
	case notFound(resp):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("github: read %s of %s: %w", path, repo, err)
	case dir != nil || file == nil:
		return "", false, fmt.Errorf("github: read %s of %s: it is a directory, not a file", path, repo)
	case file.GetType() != "file" && file.GetType() != "symlink":
		return "", false, fmt.Errorf("github: read %s of %s: it is a %s, not a file", path, repo, file.GetType())
	}
	if file.GetEncoding() == "none" || (file.Content == nil && file.GetSize() > 0) {
		// Over 1 MB the contents API leaves the content out.
		blob, _, err := h.client.Git.GetBlob(ctx, owner, name, file.GetSHA())
		if err != nil {
			return "", false, fmt.Errorf("github: read %s of %s: %w", path, repo, err)
		}
		b, err := base64.StdEncoding.DecodeString(blob.Content)
		if err != nil {
			return "", false, fmt.Errorf("github: read %s of %s: blob: %w", path, repo, err)
		}
		return string(b), true, nil
	}
	content, err := file.GetContent()
	if err != nil {
		return "", false, fmt.Errorf("github: read %s of %s: %w", path, repo, err)
	}
	return content, true, nil
}

// Publish writes c as one commit on c.Branch and opens or updates its pull
// request (see pullrequest.Host and the package's documentation).
func (h *Host) Publish(ctx context.Context, c pullrequest.Change) (pullrequest.PullRequest, error) {
	if err := c.Validate(); err != nil {
		return pullrequest.PullRequest{}, err
	}
	owner, name, err := splitRepo(c.Repo)
	if err != nil {
		return pullrequest.PullRequest{}, err
	}
	defer h.locks.Lock(c.Repo)()
	base, err := h.baseBranch(ctx, owner, name)
	if err != nil {
		return pullrequest.PullRequest{}, err
	}
	if c.Branch == base {
		return pullrequest.PullRequest{}, fmt.Errorf("github: change of %s: the branch is the base branch %s", c.Repo, base)
	}
	p := &publish{h: h, owner: owner, name: name, base: base, c: c}
	commit, err := p.commit(ctx)
	if err != nil {
		return pullrequest.PullRequest{}, fmt.Errorf("github: publish %s on %s: %w", c.Branch, c.Repo, err)
	}
	pr, err := p.pullRequest(ctx, commit)
	if err != nil {
		return pullrequest.PullRequest{}, fmt.Errorf("github: pull request of %s on %s: %w", c.Branch, c.Repo, err)
	}
	return pullrequest.PullRequest{URL: pr.GetHTMLURL(), Repo: c.Repo, Branch: c.Branch, Number: pr.GetNumber(), Commit: commit}, nil
}

type publish struct {
	h                 *Host
	owner, name, base string
	c                 pullrequest.Change
}

// commit points the branch at a commit holding base + files, and returns
// it.
func (p *publish) commit(ctx context.Context) (string, error) {
	git := p.h.client.Git
	ref, _, err := git.GetRef(ctx, p.owner, p.name, "heads/"+p.base)
	if err != nil {
		return "", fmt.Errorf("base branch %s: %w", p.base, err)
	}
	baseSHA := ref.GetObject().GetSHA()
	baseCommit, _, err := git.GetCommit(ctx, p.owner, p.name, baseSHA)
	if err != nil {
		return "", fmt.Errorf("base commit %s: %w", baseSHA, err)
	}
	baseTree := baseCommit.GetTree().GetSHA()
	entries, err := p.entries(ctx, baseTree)
	if err != nil {
		return "", err
	}
	// A tree, like a blob, is named by its content: made twice, it is one.
	tree, _, err := git.CreateTree(repeatable(ctx), p.owner, p.name, baseTree, entries)
	if err != nil {
		return "", fmt.Errorf("create tree: %w", err)
	}
	if tree.GetSHA() == baseTree {
		return "", pullrequest.ErrNoChanges
	}
	head, resp, err := git.GetRef(ctx, p.owner, p.name, "heads/"+p.c.Branch)
	switch {
	case notFound(resp):
		head = nil
	case err != nil:
		return "", fmt.Errorf("branch %s: %w", p.c.Branch, err)
	default:
		hc, _, err := git.GetCommit(ctx, p.owner, p.name, head.GetObject().GetSHA())
		if err != nil {
			return "", fmt.Errorf("branch %s: %w", p.c.Branch, err)
		}
		if hc.GetTree().GetSHA() == tree.GetSHA() {
			return hc.GetSHA(), nil // the branch has the change already
		}
	}
	message := p.c.Title
	if p.c.Body != "" {
		message += "\n\n" + p.c.Body
	}
	// Made twice, a commit may be two (GitHub dates it); only the one whose
	// answer came is pointed at, the other is never seen.
	commit, _, err := git.CreateCommit(repeatable(ctx), p.owner, p.name, gh.Commit{
		Message: &message, Tree: &gh.Tree{SHA: tree.SHA}, Parents: []*gh.Commit{{SHA: &baseSHA}},
	}, nil)
	if err != nil {
		return "", fmt.Errorf("create commit: %w", err)
	}
	if head == nil {
		// Made twice, the second is refused as existing, and handled so.
		_, _, err = git.CreateRef(repeatable(ctx), p.owner, p.name, gh.CreateRef{Ref: "refs/heads/" + p.c.Branch, SHA: commit.GetSHA()})
		if err == nil {
			return commit.GetSHA(), nil
		}
		var ghErr *gh.ErrorResponse
		if !errors.As(err, &ghErr) || ghErr.Response == nil || ghErr.Response.StatusCode != http.StatusUnprocessableEntity {
			return "", fmt.Errorf("create branch %s: %w", p.c.Branch, err)
		}
		// Created meanwhile (Reference already exists): move it.
	}
	force := true
	// Moving the branch to a given commit twice moves it once.
	if _, _, err := git.UpdateRef(repeatable(ctx), p.owner, p.name, "heads/"+p.c.Branch, gh.UpdateRef{SHA: commit.GetSHA(), Force: &force}); err != nil {
		return "", fmt.Errorf("update branch %s: %w", p.c.Branch, err)
	}
	return commit.GetSHA(), nil
}

// entries are the tree entries of the change: a blob per written file
// (keeping an existing file's mode), a removal per deleted file that
// exists.
func (p *publish) entries(ctx context.Context, baseTree string) ([]*gh.TreeEntry, error) {
	tree, _, err := p.h.client.Git.GetTree(ctx, p.owner, p.name, baseTree, true)
	if err != nil {
		return nil, fmt.Errorf("base tree: %w", err)
	}
	existing := map[string]string{} // path → mode
	for _, e := range tree.Entries {
		if e.GetType() == "blob" {
			existing[e.GetPath()] = e.GetMode()
		}
	}
	complete := !tree.GetTruncated()
	paths := make([]string, 0, len(p.c.Files))
	for path := range p.c.Files {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	blob, file := "blob", "100644"
	var entries []*gh.TreeEntry
	for _, path := range paths {
		content := p.c.Files[path]
		mode, exists := existing[path]
		if content == nil {
			if exists || !complete {
				entries = append(entries, &gh.TreeEntry{Path: &path, Mode: &file, Type: &blob})
			}
			continue
		}
		encoding := "base64"
		// A blob is named by its content: made twice, it is one.
		b, _, err := p.h.client.Git.CreateBlob(repeatable(ctx), p.owner, p.name, gh.Blob{Content: base64.StdEncoding.EncodeToString([]byte(*content)), Encoding: &encoding})
		if err != nil {
			return nil, fmt.Errorf("create blob of %s: %w", path, err)
		}
		if mode != "100755" && mode != "120000" {
			mode = file
		}
		entries = append(entries, &gh.TreeEntry{Path: &path, Mode: &mode, Type: &blob, SHA: b.SHA})
	}
	return entries, nil
}

// pullRequest finds the branch's open pull request, updating its title and
// body, or creates it. A merged one of this very commit is returned as is.
func (p *publish) pullRequest(ctx context.Context, commit string) (*gh.PullRequest, error) {
	pulls := p.h.client.PullRequests
	found, err := p.h.pulls(ctx, p.owner, p.name, p.c.Branch)
	if err != nil {
		return nil, err
	}
	for _, pr := range found {
		switch {
		case pr.GetState() == "open" && pr.GetBase().GetRef() == p.base:
			if pr.GetTitle() == p.c.Title && pr.GetBody() == p.c.Body {
				return pr, nil
			}
			title, body := p.c.Title, p.c.Body
			// Setting the same title and body twice sets them once.
			edited, _, err := pulls.Edit(repeatable(ctx), p.owner, p.name, pr.GetNumber(), &gh.PullRequest{Title: &title, Body: &body})
			if err != nil {
				return nil, fmt.Errorf("edit #%d: %w", pr.GetNumber(), err)
			}
			return edited, nil
		case !pr.GetMergedAt().IsZero() && pr.GetHead().GetSHA() == commit:
			return pr, nil
		}
	}
	body := p.c.Body
	// Made twice (its answer was lost after GitHub opened it), the second
	// is refused: a branch has one open pull request per base. Then it is
	// found, as one opened meanwhile is.
	created, resp, err := pulls.Create(repeatable(ctx), p.owner, p.name, gh.CreatePullRequest{Title: &p.c.Title, Head: p.c.Branch, Base: p.base, Body: &body})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnprocessableEntity {
			// Opened meanwhile ("A pull request already exists"): find it.
			again, lerr := p.h.pulls(ctx, p.owner, p.name, p.c.Branch)
			if lerr == nil {
				for _, pr := range again {
					if pr.GetState() == "open" {
						return pr, nil
					}
				}
			}
		}
		return nil, fmt.Errorf("create: %w", err)
	}
	return created, nil
}

// pulls lists the pull requests of a branch of the repository, every
// state, newest first.
func (h *Host) pulls(ctx context.Context, owner, name, branch string) ([]*gh.PullRequest, error) {
	opts := &gh.PullRequestListOptions{State: "all", Head: owner + ":" + branch, ListOptions: gh.ListOptions{PerPage: 100}}
	var out []*gh.PullRequest
	for {
		page, resp, err := h.client.PullRequests.List(ctx, owner, name, opts)
		if err != nil {
			return nil, fmt.Errorf("list pull requests of %s: %w", branch, err)
		}
		out = append(out, page...)
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

var pullNumber = regexp.MustCompile(`/pull/(\d+)$`)

// State reads the pull request (by its number, else the number in its URL,
// else the newest pull request of its branch).
func (h *Host) State(ctx context.Context, pr pullrequest.PullRequest) (pullrequest.State, error) {
	owner, name, err := splitRepo(pr.Repo)
	if err != nil {
		return "", err
	}
	n := pr.Number
	if m := pullNumber.FindStringSubmatch(pr.URL); n == 0 && m != nil {
		n, _ = strconv.Atoi(m[1])
	}
	var got *gh.PullRequest
	if n != 0 {
		if got, _, err = h.client.PullRequests.Get(ctx, owner, name, n); err != nil {
			return "", fmt.Errorf("github: get pull request #%d of %s: %w", n, pr.Repo, err)
		}
	} else {
		found, err := h.pulls(ctx, owner, name, pr.Branch)
		if err != nil {
			return "", fmt.Errorf("github: %s: %w", pr.Repo, err)
		}
		if len(found) == 0 {
			return "", fmt.Errorf("github: %s has no pull request of branch %s", pr.Repo, pr.Branch)
		}
		got = found[0]
	}
	switch {
	case got.GetMerged() || !got.GetMergedAt().IsZero():
		return pullrequest.Merged, nil
	case got.GetState() == "closed":
		return pullrequest.Closed, nil
	}
	return pullrequest.Open, nil
}

// Repositories lists the repositories of an organization (or, when no
// organization has that name, of a user) that are not archived, as
// "owner/name", sorted: a Migrator's discovery can start from it.
func (h *Host) Repositories(ctx context.Context, owner string) ([]string, error) {
	var out []string
	collect := func(page []*gh.Repository) {
		for _, r := range page {
			if !r.GetArchived() {
				out = append(out, r.GetFullName())
			}
		}
	}
	orgOpts := &gh.RepositoryListByOrgOptions{ListOptions: gh.ListOptions{PerPage: 100}}
	for {
		page, resp, err := h.client.Repositories.ListByOrg(ctx, owner, orgOpts)
		if notFound(resp) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("github: repositories of %s: %w", owner, err)
		}
		collect(page)
		if resp.NextPage == 0 {
			sort.Strings(out)
			return out, nil
		}
		orgOpts.Page = resp.NextPage
	}
	userOpts := &gh.RepositoryListByUserOptions{ListOptions: gh.ListOptions{PerPage: 100}}
	for {
		page, resp, err := h.client.Repositories.ListByUser(ctx, owner, userOpts)
		if err != nil {
			return nil, fmt.Errorf("github: repositories of %s: %w", owner, err)
		}
		collect(page)
		if resp.NextPage == 0 {
			sort.Strings(out)
			return out, nil
		}
		userOpts.Page = resp.NextPage
	}
}
