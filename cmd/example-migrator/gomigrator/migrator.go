// Package gomigrator is Loom's example Migrator: over a folder of local git
// repositories, it raises the go directive of every go.mod older than a
// minimum, pins the toolchain, and asks for a person's review, one Candidate
// per repository. A step's "pull request" is a branch, loom/<step>, committed
// beside main; merging it into main (git merge) moves the step from open to
// merged. It needs the git binary.
package gomigrator

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/loomhq/loom/migratorsdk"
)

// MigrationID is the id of the Migration this Migrator announces.
const MigrationID = "go-directive"

// MinimumGo is the go version below which discovery reports a repository.
const MinimumGo = "1.23"

// Spec is the Migrator over the repositories under fleetDir.
func Spec(fleetDir string) migratorsdk.Spec {
	m := &migrator{fleet: fleetDir}
	return migratorsdk.Spec{
		Migration: migratorsdk.Migration{
			ID:          MigrationID,
			Name:        "Raise the go directive",
			Description: "Raise go.mod's go directive to a supported version and pin the toolchain, one reviewed branch per step.",
			Overview: "Every repository whose `go.mod` declares a go version older than " + MinimumGo + " gets two branches, " +
				"merged one after the other:\n\n1. `loom/bump-go` raises the `go` directive to the target version;\n" +
				"2. `loom/pin-toolchain` pins the `toolchain` that builds it.\n\nA person then checks the service and finishes the review. " +
				"To merge a step's branch: `git -C <repository> merge loom/<step>`.",
			Steps: []migratorsdk.Step{
				{Name: "bump-go", Type: "go-directive", Description: "Raise the go directive of go.mod."},
				{Name: "pin-toolchain", Type: "toolchain", Description: "Pin the toolchain line of go.mod."},
				{Name: "review", Type: "manual-review", Description: "A person checks the service builds and runs."},
			},
			Inputs: []migratorsdk.Input{
				{Name: "go_version", Label: "Target go version", Description: "The go directive to set, e.g. 1.23."},
				{Name: "toolchain", Label: "Toolchain", Description: "The toolchain to pin, e.g. 1.23.4."},
			},
		},
		Handlers: map[string]migratorsdk.StepHandler{
			"go-directive":  m.openBranch,
			"toolchain":     m.openBranch,
			"manual-review": m.review,
		},
		Preview:     m.preview,
		Discover:    m.discover,
		CheckMerged: m.checkMerged,
	}
}

type migrator struct {
	fleet string
	locks repoLocks
}

// change makes one step's change on files: the one transformation shared
// by previews and by the handlers.
func change(ctx context.Context, step migratorsdk.Step, inputs map[string]string, repo string, files *migratorsdk.FileSet) (skip string, err error) {
	gomod, ok, err := files.Read(ctx, repo, "go.mod")
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%s has no go.mod", repo)
	}
	var next string
	switch step.Type {
	case "go-directive":
		v := inputs["go_version"]
		if err := validVersion(v); err != nil {
			return "", fmt.Errorf("input go_version: %w", err)
		}
		next = setGoDirective(gomod, v)
	case "toolchain":
		v := inputs["toolchain"]
		if err := validVersion(v); err != nil {
			return "", fmt.Errorf("input toolchain: %w", err)
		}
		next = setToolchain(gomod, v)
	default:
		return "nothing to change in files: " + step.Description, nil
	}
	if next == gomod {
		return "go.mod already says so", nil
	}
	files.Write(repo, "go.mod", next)
	return "", nil
}

func (m *migrator) repoPath(c migratorsdk.Candidate) string {
	return filepath.Join(m.fleet, filepath.FromSlash(c.ID))
}

func (m *migrator) base(ctx context.Context, repo, path string) (string, bool, error) {
	return readAtMain(ctx, repo, path)
}

// preview shows, for every step, the diff its branch will hold.
func (m *migrator) preview(ctx context.Context, req migratorsdk.PreviewRequest) ([]migratorsdk.StepPreview, error) {
	repo := m.repoPath(req.Candidate)
	return migratorsdk.StackedPreview(ctx, req, m.base, func(ctx context.Context, step migratorsdk.Step, files *migratorsdk.FileSet) (string, error) {
		return change(ctx, step, req.Inputs, repo, files)
	}), nil
}

// openBranch commits the step's change on loom/<step> and reports the branch
// as the step's pull request. Running it again for the same step finds the
// branch and reports it again: nothing is done twice.
func (m *migrator) openBranch(ctx context.Context, d *migratorsdk.Dispatch) error {
	repo := m.repoPath(d.Candidate)
	defer m.locks.lock(repo)()
	files := migratorsdk.NewFileSet(m.base)
	skip, err := change(ctx, d.Step, d.Inputs, repo, files)
	if err != nil {
		return err
	}
	if skip != "" {
		return d.Completed(ctx, migratorsdk.WithMessage(skip))
	}
	branch := "loom/" + d.Step.Name
	written := map[string]string{}
	for path, content := range files.Changes()[repo] {
		written[path] = *content
	}
	commit, err := commitOnBranch(ctx, repo, branch, fmt.Sprintf("%s (Loom run %s)\n\n%s", d.Step.Description, d.RunID, d.Step.Name), written)
	if err != nil {
		return err
	}
	pr := (&url.URL{Scheme: "file", Path: repo, RawQuery: url.Values{"branch": {branch}}.Encode()}).String()
	return d.Opened(ctx, pr,
		migratorsdk.WithMetadata(map[string]string{"branch": branch, "commit": commit, "repository": repo}),
		migratorsdk.WithMessage("merge it with: git -C "+repo+" merge "+branch))
}

func (m *migrator) review(ctx context.Context, d *migratorsdk.Dispatch) error {
	return d.AwaitingReview(ctx, fmt.Sprintf("Build and test %s with go %s (toolchain %s), then finish the review in Loom.",
		d.Candidate.ID, d.Inputs["go_version"], d.Inputs["toolchain"]))
}

// checkMerged says whether an open step's branch is merged into main.
func (m *migrator) checkMerged(ctx context.Context, s migratorsdk.OpenStep) (bool, error) {
	repo, branch := s.Metadata["repository"], s.Metadata["branch"]
	if repo == "" || branch == "" {
		return false, fmt.Errorf("open step %s of %s has no branch metadata", s.Step, s.RunID)
	}
	return merged(ctx, repo, branch)
}

// discover reports every repository whose go directive is older than
// MinimumGo.
func (m *migrator) discover(ctx context.Context) ([]migratorsdk.Candidate, error) {
	names, err := repositories(m.fleet)
	if err != nil {
		return nil, fmt.Errorf("read the fleet at %s: %w", m.fleet, err)
	}
	var out []migratorsdk.Candidate
	for _, name := range names {
		repo := filepath.Join(m.fleet, name)
		gomod, ok, err := readAtMain(ctx, repo, "go.mod")
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		v := goDirective(gomod)
		if v != "" && compareVersions(v, MinimumGo) >= 0 {
			continue
		}
		owner, _, _ := readAtMain(ctx, repo, "OWNERS")
		out = append(out, migratorsdk.Candidate{
			ID:   name,
			Kind: "repository",
			Metadata: map[string]string{
				"repository": repo,
				"go":         v,
				"team":       trimLine(owner),
			},
			Files: []migratorsdk.FileGroup{{Name: "go.mod", Files: []migratorsdk.FileRef{{
				Path: "go.mod",
				URL:  (&url.URL{Scheme: "file", Path: filepath.Join(repo, "go.mod")}).String(),
			}}}},
		})
	}
	return out, nil
}

func trimLine(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}
