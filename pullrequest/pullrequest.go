package pullrequest

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/loomhq/loom/migratorsdk"
)

// Host is a code host: where repositories live and pull requests are opened.
// Package local implements it over git repositories on disk, package github
// over GitHub's REST API. Implementations are safe for concurrent use.
type Host interface {
	// Read returns a file of the repository as it is on its base branch
	// (the branch pull requests merge into): its content, and whether it
	// exists. A missing file or repository branch is not an error. It is a
	// migratorsdk.BaseFunc.
	Read(ctx context.Context, repo, path string) (content string, exists bool, err error)
	// Publish makes c.Branch hold exactly the base branch plus c.Files, as
	// one commit on top of the base branch, and opens its pull request, or
	// finds it, or updates it. It is idempotent: the same change published
	// again returns the same pull request and commit and creates nothing;
	// changed content replaces the branch's commit (a force push) and the
	// pull request follows. A change that leaves the base branch as it is
	// returns an error wrapping ErrNoChanges.
	Publish(ctx context.Context, c Change) (PullRequest, error)
	// State says whether a pull request Publish returned is open, merged,
	// or closed without merge.
	State(ctx context.Context, pr PullRequest) (State, error)
}

// ErrNoChanges is what Publish wraps when a change would leave the base
// branch as it is: there is nothing to review.
var ErrNoChanges = errors.New("no changes to the base branch")

// Change is what one step changes in one repository.
type Change struct {
	// Repo names the repository, in the host's terms: for package local its
	// path under the host's root ("svc-01"), for package github
	// "owner/name".
	Repo string
	// Branch is the pull request's branch, e.g. "loom/bump-go". It belongs to
	// the change: Publish rewrites it.
	Branch string
	// Title and Body describe the pull request (Title is also the commit's
	// subject, Body its message).
	Title string
	Body  string
	// Files are the changed files by slash-separated path relative to the
	// repository's root: their whole new content, or nil for a file to
	// delete. Files not named stay as they are on the base branch.
	Files map[string]*string
}

// Validate checks what every Host requires of a change: a repository, a
// branch name git accepts, a title, and clean relative paths.
func (c Change) Validate() error {
	if c.Repo == "" {
		return errors.New("change: no repository")
	}
	if err := ValidBranch(c.Branch); err != nil {
		return fmt.Errorf("change of %s: %w", c.Repo, err)
	}
	if c.Title == "" {
		return fmt.Errorf("change of %s: no title", c.Repo)
	}
	for p := range c.Files {
		if err := ValidPath(p); err != nil {
			return fmt.Errorf("change of %s: %w", c.Repo, err)
		}
	}
	return nil
}

// ValidBranch checks a branch name against git's rules for ref names
// (git check-ref-format --branch), in short: slash-separated parts that do
// not start with '.' or end with ".lock", no "..", no "@{", no spaces,
// control characters or any of ~^:?*[\.
func ValidBranch(b string) error {
	bad := func(why string) error { return fmt.Errorf("branch %q: %s", b, why) }
	switch {
	case b == "":
		return errors.New("no branch")
	case b == "@", strings.HasPrefix(b, "-"), strings.HasPrefix(b, "/"), strings.HasSuffix(b, "/"), strings.HasSuffix(b, "."):
		return bad("not a valid branch name")
	case strings.Contains(b, ".."), strings.Contains(b, "@{"), strings.Contains(b, "//"):
		return bad(`contains "..", "@{" or "//"`)
	case strings.ContainsAny(b, " ~^:?*[\\\x7f"):
		return bad(`contains a space or one of ~^:?*[\`)
	}
	for _, r := range b {
		if r < 0x20 {
			return bad("contains a control character")
		}
	}
	for part := range strings.SplitSeq(b, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return bad(`a part starts with "." or ends with ".lock"`)
		}
	}
	return nil
}

// ValidPath checks a file path of a Change: slash-separated, relative,
// clean, and outside .git.
func ValidPath(p string) error {
	switch {
	case p == "" || p == ".":
		return errors.New("empty file path")
	case strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || strings.ContainsRune(p, 0):
		return fmt.Errorf("file path %q: want a slash-separated path relative to the repository's root", p)
	case path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("file path %q: not clean (want e.g. %q)", p, strings.TrimPrefix(path.Clean("/"+p), "/"))
	}
	for part := range strings.SplitSeq(p, "/") {
		if strings.EqualFold(part, ".git") {
			return fmt.Errorf("file path %q: inside .git", p)
		}
	}
	return nil
}

// PullRequest is a pull request a Host opened.
type PullRequest struct {
	// URL is where a person reviews it (for package local, a file:// URL
	// naming the repository and the branch).
	URL string
	// Repo and Branch are the Change's.
	Repo   string
	Branch string
	// Number is the host's number for it (0 for package local).
	Number int
	// Commit is the commit the branch held when published.
	Commit string
}

// The metadata keys under which Metadata records a pull request on its step.
const (
	MetaRepository = "repository"
	MetaBranch     = "branch"
	MetaCommit     = "commit"
	MetaNumber     = "number"
)

// Metadata is the step metadata that lets FromOpenStep find the pull
// request again (the handler reports it with d.Opened): repository, branch,
// commit and, when the host numbers pull requests, number.
func (pr PullRequest) Metadata() map[string]string {
	m := map[string]string{MetaRepository: pr.Repo, MetaBranch: pr.Branch, MetaCommit: pr.Commit}
	if pr.Number != 0 {
		m[MetaNumber] = strconv.Itoa(pr.Number)
	}
	return m
}

// FromOpenStep recovers the pull request of an open step from its URL and
// the metadata its handler reported (see PullRequest.Metadata).
func FromOpenStep(s migratorsdk.OpenStep) (PullRequest, error) {
	pr := PullRequest{URL: s.PRURL, Repo: s.Metadata[MetaRepository], Branch: s.Metadata[MetaBranch], Commit: s.Metadata[MetaCommit]}
	if n := s.Metadata[MetaNumber]; n != "" {
		num, err := strconv.Atoi(n)
		if err != nil || num <= 0 {
			return PullRequest{}, fmt.Errorf("open step %s of run %s: metadata %s=%q is no pull request number", s.Step, s.RunID, MetaNumber, n)
		}
		pr.Number = num
	}
	if pr.Repo == "" || pr.Branch == "" {
		return PullRequest{}, fmt.Errorf("open step %s of run %s: its metadata names no %s and %s (was it opened by package pullrequest?)",
			s.Step, s.RunID, MetaRepository, MetaBranch)
	}
	return pr, nil
}

// State is where a pull request stands.
type State string

// The states of a pull request. Open goes to merged or closed; a closed
// pull request may be reopened.
const (
	Open   State = "open"
	Merged State = "merged"
	// Closed is closed without merge.
	Closed State = "closed"
)
