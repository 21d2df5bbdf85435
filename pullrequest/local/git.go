package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// git runs the git binary in dir and returns its output, trimmed.
func (h *Host) git(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := h.run(ctx, dir, nil, nil, args...)
	return strings.TrimSpace(out), err
}

// run runs the git binary in dir with extra environment and stdin, and
// returns its output as is. git runs with the Host's identity and no user
// or system configuration, so it behaves the same on every machine; the
// GIT_* variables of this process (a hook's GIT_DIR, say) are not passed on.
func (h *Host) run(ctx context.Context, dir string, env []string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	name, email := h.identity()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"GIT_AUTHOR_NAME="+name, "GIT_AUTHOR_EMAIL="+email,
		"GIT_COMMITTER_NAME="+name, "GIT_COMMITTER_EMAIL="+email,
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_TERMINAL_PROMPT=0",
		"GIT_LITERAL_PATHSPECS=1")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = stdin
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", &gitError{args: args, err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return out.String(), nil
}

type gitError struct {
	args   []string
	err    error
	stderr string
}

func (e *gitError) Error() string {
	return fmt.Sprintf("git %s: %v: %s", strings.Join(e.args, " "), e.err, e.stderr)
}

func (e *gitError) Unwrap() error { return e.err }

// exitCode is git's exit status, or -1 when git did not run or exit.
func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	return -1
}

// resolve returns the commit (or other object, with a suffix like
// "^{tree}") rev names, or "" when there is no such object.
func (h *Host) resolve(ctx context.Context, dir, rev string) (string, error) {
	out, err := h.git(ctx, dir, "rev-parse", "--verify", "--quiet", "--end-of-options", rev)
	if err != nil {
		if exitCode(err) == 1 {
			return "", nil
		}
		return "", err
	}
	return out, nil
}

// buildTree writes the tree of commit base with files applied (nil
// deletes), in a temporary index so that the repository's own index and
// checkout are never touched, and returns it. A file keeps its mode
// (executable, symbolic link) when it exists; new files are 100644. A
// file written where a directory was (or the reverse) replaces it.
func (h *Host) buildTree(ctx context.Context, dir, base string, files map[string]*string, paths []string) (string, error) {
	tmp, err := os.MkdirTemp("", "loom-index-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	env := []string{"GIT_INDEX_FILE=" + filepath.Join(tmp, "index")}
	if _, err := h.run(ctx, dir, env, nil, "read-tree", base); err != nil {
		return "", err
	}
	staged, err := h.run(ctx, dir, env, nil, append([]string{"ls-files", "--stage", "-z", "--"}, paths...)...)
	if err != nil {
		return "", err
	}
	modes := map[string]string{}
	for rec := range strings.SplitSeq(staged, "\x00") {
		// <mode> SP <object> SP <stage> TAB <path>
		meta, path, ok := strings.Cut(rec, "\t")
		if ok {
			modes[path], _, _ = strings.Cut(meta, " ")
		}
	}
	var info strings.Builder
	for _, p := range paths {
		content := files[p]
		if content == nil {
			// Mode 0 removes the path from the index.
			fmt.Fprintf(&info, "0 %s\t%s\x00", strings.Repeat("0", 40), p)
			continue
		}
		sha, err := h.run(ctx, dir, env, strings.NewReader(*content), "hash-object", "-w", "--no-filters", "--stdin")
		if err != nil {
			return "", err
		}
		mode := modes[p]
		if mode != "100755" && mode != "120000" {
			mode = "100644"
		}
		fmt.Fprintf(&info, "%s %s\t%s\x00", mode, strings.TrimSpace(sha), p)
	}
	if _, err := h.run(ctx, dir, env, strings.NewReader(info.String()), "update-index", "--add", "--replace", "-z", "--index-info"); err != nil {
		return "", err
	}
	tree, err := h.run(ctx, dir, env, nil, "write-tree")
	return strings.TrimSpace(tree), err
}
