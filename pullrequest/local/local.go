// Package local is a pullrequest.Host over git repositories on this
// machine, for trying a Migrator out and for tests: a "pull request" is a
// branch beside the base branch, and merging it (git merge) merges the pull
// request. It needs the git binary.
//
// A repository is named by its path under the Host's Root ("svc-01",
// "team/svc"); an absolute path names itself. Publish commits on the branch
// with git's plumbing in a temporary index: the repository's checkout, its
// index and the base branch are never touched. Its pull request URL is
// file:///path/to/repository?branch=loom%2Fstep.
//
// The states map to git like this:
//
//   - open: the branch exists and its head is not in the base branch;
//   - merged: the branch's head (or, once the branch is deleted, the
//     commit Publish made) is in the base branch (git merge, fast-forward
//     or not; a squash merge is not recognised);
//   - closed: the branch was deleted without being merged (git branch -D).
package local

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/loomhq/loom/pullrequest"
	"github.com/loomhq/loom/pullrequest/internal/keyed"
)

// DefaultBase is the base branch of a Host without one.
const DefaultBase = "main"

// Host is a pullrequest.Host over the git repositories under Root. The zero
// value works on paths relative to the working directory; set the fields
// before the first call and not after. Changes to one repository are
// serialised.
type Host struct {
	// Root is the folder the repositories are in.
	Root string
	// Base is the branch pull requests merge into; default DefaultBase.
	Base string
	// Name and Email are the author and committer of the commits; default
	// "Loom" <loom@localhost>.
	Name, Email string

	locks keyed.Mutex
}

var _ pullrequest.Host = (*Host)(nil)

// New returns a Host over the repositories under root.
func New(root string) *Host { return &Host{Root: root} }

func (h *Host) base() string {
	if h.Base != "" {
		return h.Base
	}
	return DefaultBase
}

func (h *Host) identity() (name, email string) {
	name, email = h.Name, h.Email
	if name == "" {
		name = "Loom"
	}
	if email == "" {
		email = "loom@localhost"
	}
	return name, email
}

// Dir is the absolute path of a repository.
func (h *Host) Dir(repo string) (string, error) {
	p := filepath.FromSlash(repo)
	switch {
	case repo == "":
		return "", errors.New("no repository")
	case filepath.IsAbs(p):
		return filepath.Clean(p), nil
	case !filepath.IsLocal(p):
		return "", fmt.Errorf("repository %q: not a path under the root", repo)
	}
	return filepath.Abs(filepath.Join(h.Root, p))
}

// Repositories lists the git repositories directly under Root, by name,
// sorted: a Migrator's discovery can start from it.
func (h *Host) Repositories() ([]string, error) {
	root := h.Root
	if root == "" {
		root = "."
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, e.Name(), ".git")); err == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Read returns a file as the base branch has it.
func (h *Host) Read(ctx context.Context, repo, path string) (string, bool, error) {
	if err := pullrequest.ValidPath(path); err != nil {
		return "", false, err
	}
	dir, err := h.Dir(repo)
	if err != nil {
		return "", false, err
	}
	// <mode> SP <type> SP <object> TAB <path>, or nothing for no such path.
	out, err := h.git(ctx, dir, "ls-tree", "-z", "refs/heads/"+h.base(), "--", path)
	if err != nil {
		return "", false, fmt.Errorf("read %s of %s: %w", path, repo, err)
	}
	if out == "" {
		return "", false, nil
	}
	meta, _, _ := strings.Cut(out, "\t")
	f := strings.Fields(meta)
	if len(f) != 3 || f[1] != "blob" {
		return "", false, fmt.Errorf("read %s of %s: it is a %s, not a file", path, repo, strings.Join(f[1:2], ""))
	}
	content, err := h.run(ctx, dir, nil, nil, "cat-file", "blob", f[2])
	if err != nil {
		return "", false, fmt.Errorf("read %s of %s: %w", path, repo, err)
	}
	return content, true, nil
}

// Publish commits base + c.Files on c.Branch (see pullrequest.Host). The
// commit is a function of the base branch's head, the files and the
// message (its dates are the base head's), and the branch is left alone
// when its head already has the wanted files: publishing again returns the
// same commit. A branch that is checked out in the repository is refused.
func (h *Host) Publish(ctx context.Context, c pullrequest.Change) (pullrequest.PullRequest, error) {
	if err := c.Validate(); err != nil {
		return pullrequest.PullRequest{}, err
	}
	if c.Branch == h.base() {
		return pullrequest.PullRequest{}, fmt.Errorf("change of %s: the branch is the base branch %s", c.Repo, c.Branch)
	}
	dir, err := h.Dir(c.Repo)
	if err != nil {
		return pullrequest.PullRequest{}, err
	}
	defer h.locks.Lock(dir)()
	commit, err := h.publish(ctx, dir, c)
	if err != nil {
		return pullrequest.PullRequest{}, fmt.Errorf("publish %s on %s: %w", c.Branch, c.Repo, err)
	}
	return pullrequest.PullRequest{URL: URL(dir, c.Branch), Repo: c.Repo, Branch: c.Branch, Commit: commit}, nil
}

func (h *Host) publish(ctx context.Context, dir string, c pullrequest.Change) (string, error) {
	ref := "refs/heads/" + c.Branch
	if head, err := h.git(ctx, dir, "symbolic-ref", "--quiet", "HEAD"); err == nil && head == ref {
		return "", fmt.Errorf("%s is checked out in %s: check out %s", c.Branch, dir, h.base())
	}
	base, err := h.resolve(ctx, dir, "refs/heads/"+h.base()+"^{commit}")
	if err != nil {
		return "", err
	}
	if base == "" {
		return "", fmt.Errorf("%s has no branch %s", dir, h.base())
	}
	baseTree, err := h.resolve(ctx, dir, base+"^{tree}")
	if err != nil {
		return "", err
	}
	paths := make([]string, 0, len(c.Files))
	for p := range c.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	tree, err := h.buildTree(ctx, dir, base, c.Files, paths)
	if err != nil {
		return "", err
	}
	if tree == baseTree {
		return "", pullrequest.ErrNoChanges
	}
	old, err := h.resolve(ctx, dir, ref+"^{commit}")
	if err != nil {
		return "", err
	}
	if old != "" {
		oldTree, err := h.resolve(ctx, dir, old+"^{tree}")
		if err != nil {
			return "", err
		}
		if oldTree == tree {
			return old, nil
		}
	}
	date, err := h.git(ctx, dir, "log", "-1", "--format=%ct", base)
	if err != nil {
		return "", err
	}
	message := c.Title + "\n"
	if c.Body != "" {
		message += "\n" + strings.TrimRight(c.Body, "\n") + "\n"
	}
	stamp := []string{"GIT_AUTHOR_DATE=" + date + " +0000", "GIT_COMMITTER_DATE=" + date + " +0000"}
	commit, err := h.run(ctx, dir, stamp, strings.NewReader(message), "commit-tree", tree, "-p", base, "-F", "-")
	if err != nil {
		return "", err
	}
	commit = strings.TrimSpace(commit)
	// The old value makes the update fail if the branch moved meanwhile.
	if _, err := h.git(ctx, dir, "update-ref", "-m", "loom: publish "+c.Title, ref, commit, old); err != nil {
		return "", err
	}
	return commit, nil
}

// State says whether pr is open, merged or closed (see the package's
// documentation).
func (h *Host) State(ctx context.Context, pr pullrequest.PullRequest) (pullrequest.State, error) {
	dir, err := h.Dir(pr.Repo)
	if err != nil {
		return "", err
	}
	if err := pullrequest.ValidBranch(pr.Branch); err != nil {
		return "", err
	}
	head, err := h.resolve(ctx, dir, "refs/heads/"+pr.Branch+"^{commit}")
	if err != nil {
		return "", err
	}
	commit := head
	if commit == "" && pr.Commit != "" {
		if commit, err = h.resolve(ctx, dir, pr.Commit+"^{commit}"); err != nil {
			return "", err
		}
	}
	if commit == "" {
		return pullrequest.Closed, nil
	}
	_, err = h.git(ctx, dir, "merge-base", "--is-ancestor", commit, "refs/heads/"+h.base())
	switch {
	case err == nil:
		return pullrequest.Merged, nil
	case exitCode(err) != 1:
		return "", fmt.Errorf("state of %s on %s: %w", pr.Branch, pr.Repo, err)
	case head != "":
		return pullrequest.Open, nil
	}
	return pullrequest.Closed, nil
}

// Merge merges pr's branch into the base branch as a person would: git
// merge in the repository's checkout, which must be on the base branch.
// For tests and demonstrations.
func (h *Host) Merge(ctx context.Context, pr pullrequest.PullRequest) error {
	dir, err := h.Dir(pr.Repo)
	if err != nil {
		return err
	}
	if err := pullrequest.ValidBranch(pr.Branch); err != nil {
		return err
	}
	defer h.locks.Lock(dir)()
	if head, err := h.git(ctx, dir, "symbolic-ref", "--quiet", "HEAD"); err != nil || head != "refs/heads/"+h.base() {
		return fmt.Errorf("merge %s in %s: the checkout is not on %s", pr.Branch, dir, h.base())
	}
	if _, err := h.git(ctx, dir, "merge", "--quiet", "--no-edit", "refs/heads/"+pr.Branch); err != nil {
		return fmt.Errorf("merge %s in %s: %w", pr.Branch, dir, err)
	}
	return nil
}

// DeleteBranch deletes pr's branch: the way to close a pull request of
// this host without merging it. For tests and demonstrations.
func (h *Host) DeleteBranch(ctx context.Context, pr pullrequest.PullRequest) error {
	dir, err := h.Dir(pr.Repo)
	if err != nil {
		return err
	}
	if err := pullrequest.ValidBranch(pr.Branch); err != nil {
		return err
	}
	defer h.locks.Lock(dir)()
	_, err = h.git(ctx, dir, "update-ref", "-d", "refs/heads/"+pr.Branch)
	return err
}

// URL is the pull request URL of a branch of the repository at dir.
func URL(dir, branch string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(dir), RawQuery: url.Values{"branch": {branch}}.Encode()}).String()
}

// Init creates a git repository at dir with files (slash-separated path →
// content) committed on DefaultBase, and its checkout on that branch: a
// fleet to migrate in tests and demonstrations.
func Init(ctx context.Context, dir string, files map[string]string) error {
	h := &Host{}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := h.git(ctx, dir, "init", "--quiet", "--initial-branch="+DefaultBase); err != nil {
		return err
	}
	for p, content := range files {
		if err := pullrequest.ValidPath(p); err != nil {
			return err
		}
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if _, err := h.git(ctx, dir, "add", "--all"); err != nil {
		return err
	}
	_, err := h.git(ctx, dir, "commit", "--quiet", "--allow-empty", "-m", "Initial commit")
	return err
}
