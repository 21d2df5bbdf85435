package gomigrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// The fleet is a folder of local git repositories, one Candidate each. A
// "pull request" is a branch: the Migrator commits a step's change on
// loom/<step> and the step stays open until that branch is merged into the
// repository's main branch (by a person, or `git merge`).

// mainBranch is the branch every repository of the fleet is migrated on.
const mainBranch = "main"

// git runs the git binary in dir and returns its output, trimmed.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := gitRaw(ctx, dir, args...)
	return strings.TrimSpace(out), err
}

// gitRaw runs the git binary in dir and returns its output as is.
func gitRaw(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	// A fixed identity and no user configuration: the example behaves the
	// same on every machine.
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=Loom example Migrator", "GIT_AUTHOR_EMAIL=migrator@loom.example",
		"GIT_COMMITTER_NAME=Loom example Migrator", "GIT_COMMITTER_EMAIL=migrator@loom.example",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// repoLocks serialises the changes made to one repository.
type repoLocks struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func (l *repoLocks) lock(repo string) func() {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*sync.Mutex{}
	}
	m, ok := l.locks[repo]
	if !ok {
		m = &sync.Mutex{}
		l.locks[repo] = m
	}
	l.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// readAtMain returns a file's content on the main branch.
func readAtMain(ctx context.Context, repo, path string) (content string, exists bool, err error) {
	if _, err := git(ctx, repo, "cat-file", "-e", mainBranch+":"+path); err != nil {
		return "", false, nil
	}
	out, err := gitRaw(ctx, repo, "cat-file", "-p", mainBranch+":"+path)
	if err != nil {
		return "", false, err
	}
	return out, true, nil
}

// commitOnBranch writes files (path → content) on branch, created from main
// when missing, and commits them, in a temporary worktree so that the
// repository's own checkout is never touched. It returns the new commit, or
// the branch's head when the files are already so.
func commitOnBranch(ctx context.Context, repo, branch, message string, files map[string]string) (string, error) {
	tmp, err := os.MkdirTemp("", "loom-worktree-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	wt := filepath.Join(tmp, "wt")
	base := mainBranch
	if _, err := git(ctx, repo, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch); err == nil {
		base = branch
	}
	if _, err := git(ctx, repo, "worktree", "add", "--detach", wt, base); err != nil {
		return "", err
	}
	defer func() { _, _ = git(context.WithoutCancel(ctx), repo, "worktree", "remove", "--force", wt) }()
	if _, err := git(ctx, wt, "checkout", "-B", branch); err != nil {
		return "", err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(wt, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, []byte(files[p]), 0o644); err != nil {
			return "", err
		}
	}
	if _, err := git(ctx, wt, append([]string{"add", "--"}, paths...)...); err != nil {
		return "", err
	}
	if _, err := git(ctx, wt, "diff", "--cached", "--quiet"); err != nil {
		if _, err := git(ctx, wt, "commit", "-q", "-m", message); err != nil {
			return "", err
		}
	}
	return git(ctx, wt, "rev-parse", "HEAD")
}

// merged reports whether branch exists and is contained in main.
func merged(ctx context.Context, repo, branch string) (bool, error) {
	if _, err := git(ctx, repo, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch); err != nil {
		return false, nil
	}
	_, err := git(ctx, repo, "merge-base", "--is-ancestor", branch, mainBranch)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit):
		return false, nil
	}
	return false, err
}

// initRepo creates a repository with files committed on main.
func initRepo(ctx context.Context, dir string, files map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := git(ctx, dir, "init", "-q", "-b", mainBranch); err != nil {
		return err
	}
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if _, err := git(ctx, dir, "add", "-A"); err != nil {
		return err
	}
	_, err := git(ctx, dir, "commit", "-q", "-m", "Initial commit")
	return err
}
