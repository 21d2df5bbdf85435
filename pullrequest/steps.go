package pullrequest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/loomhq/loom/migratorsdk"
)

// EditFunc makes one step's change to one repository's files, through e.
// It is the one piece of code both the preview and the handler run, so the
// preview shows exactly what the pull request will hold. It returns a skip
// reason when the step has nothing to do for this repository (the change
// is there already); an error fails the step with its message.
type EditFunc func(ctx context.Context, e *Edit) (skipReason string, err error)

// Edit is what an EditFunc works on: the step, its Candidate and inputs,
// and the files of the Candidate's repository as the step finds them (the
// base branch, plus in a preview the changes of the steps before it).
type Edit struct {
	MigrationID string
	Step        migratorsdk.Step
	Candidate   migratorsdk.Candidate
	Inputs      map[string]string
	// Repo is the repository the pull request is opened on (Steps.Repo of
	// the Candidate).
	Repo string
	// Files is the overlay the change is written to. Read, Write and Delete
	// use it for Repo; a pull request holds one repository's changes, so a
	// step that writes to another repository fails.
	Files *migratorsdk.FileSet
}

// Read returns a file of the repository as the step finds it.
func (e *Edit) Read(ctx context.Context, path string) (content string, exists bool, err error) {
	return e.Files.Read(ctx, e.Repo, path)
}

// Write sets a file's whole content.
func (e *Edit) Write(path, content string) { e.Files.Write(e.Repo, path, content) }

// Delete removes a file.
func (e *Edit) Delete(path string) { e.Files.Delete(e.Repo, path) }

// Steps turns an EditFunc into the parts of a migratorsdk.Spec that make
// its changes as pull requests on a Host: a step handler, the stacked
// preview, and the merge check. Only Host and Apply are required; the
// other fields have defaults. A Steps is not changed by its methods and is
// safe for concurrent use.
//
//	prs := &pullrequest.Steps{Host: host, Types: []string{"readme-line"}, Apply: addLine}
//
// then prs.Handler handles the steps of those types, and prs.Preview and
// prs.CheckMerged are the Spec's Preview and CheckMerged (see the package
// documentation for the whole Migrator).
type Steps struct {
	Host  Host
	Apply EditFunc
	// Types are the step types Apply changes files for: the types mapped
	// to Handler in Spec.Handlers. Preview skips the Migration's other steps
	// (a manual review, say) without calling Apply. Empty means every step.
	Types []string
	// Repo names the repository of a Candidate on Host; default the
	// Candidate's ID ("svc-01" for package local, "owner/name" for
	// package github).
	Repo func(c migratorsdk.Candidate) string
	// Branch names a step's branch; default "loom/" + the step's name.
	// Every dispatch of the step (a retry, a restarted Migrator) publishes
	// on the same branch, which is what makes the handler idempotent.
	Branch func(migrationID string, step migratorsdk.Step) string
	// Describe gives the pull request's title and body; default the step's
	// description (else "<migration>: <step>") and a line naming the
	// Migration, step and Run. Keep it a function of the dispatch's fields
	// so that a dispatch again changes nothing.
	Describe func(d *migratorsdk.Dispatch) (title, body string)
	// Message is the message reported with an opened pull request, e.g.
	// how to merge it; default "review and merge <URL>".
	Message func(pr PullRequest) string
}

func (s *Steps) serves(step migratorsdk.Step) bool {
	return len(s.Types) == 0 || slices.Contains(s.Types, step.Type)
}

func (s *Steps) repo(c migratorsdk.Candidate) string {
	if s.Repo != nil {
		return s.Repo(c)
	}
	return c.ID
}

func (s *Steps) branch(migrationID string, step migratorsdk.Step) string {
	if s.Branch != nil {
		return s.Branch(migrationID, step)
	}
	return "loom/" + step.Name
}

func (s *Steps) describe(d *migratorsdk.Dispatch) (title, body string) {
	if s.Describe != nil {
		return s.Describe(d)
	}
	title = strings.TrimSuffix(strings.TrimSpace(d.Step.Description), ".")
	if title == "" {
		title = d.MigrationID + ": " + d.Step.Name
	}
	body = fmt.Sprintf("Opened by Loom for step %q of Migration %q (Run %s).", d.Step.Name, d.MigrationID, d.RunID)
	return title, body
}

// Handler is the step handler (a migratorsdk.StepHandler) of the steps of
// Types. It runs Apply on the Candidate's repository as the base branch
// has it, then:
//
//   - when Apply skips, or its change leaves every file as it is, it
//     reports the step Completed with the reason (nothing to review);
//   - otherwise it publishes the change on the step's branch and reports
//     the step Opened with the pull request's URL and its metadata
//     (repository, branch, commit, number), from which CheckMerged finds
//     it again.
//
// An error of Apply or of the Host fails the step with its message; an
// operator's retry dispatches it again. Dispatching a step again publishes
// the same change on the same branch: the same pull request and commit
// come back and nothing is created twice.
func (s *Steps) Handler(ctx context.Context, d *migratorsdk.Dispatch) error {
	if !s.serves(d.Step) {
		return fmt.Errorf("step %s of type %q: pullrequest.Steps.Types has no such type", d.Step.Name, d.Step.Type)
	}
	repo := s.repo(d.Candidate)
	base := &recordedBase{read: s.Host.Read, seen: map[string]baseFile{}}
	files := migratorsdk.NewFileSet(base.Read)
	skip, err := s.Apply(ctx, &Edit{MigrationID: d.MigrationID, Step: d.Step, Candidate: d.Candidate, Inputs: d.Inputs, Repo: repo, Files: files})
	if err != nil {
		return err
	}
	if skip != "" {
		return d.Completed(ctx, migratorsdk.WithMessage(skip))
	}
	changed, err := changedFiles(ctx, d.Step.Name, files, base, repo)
	if err != nil {
		return err
	}
	if len(changed) == 0 {
		return d.Completed(ctx, migratorsdk.WithMessage(nothingToChange))
	}
	title, body := s.describe(d)
	pr, err := s.Host.Publish(ctx, Change{Repo: repo, Branch: s.branch(d.MigrationID, d.Step), Title: title, Body: body, Files: changed})
	switch {
	case errors.Is(err, ErrNoChanges):
		return d.Completed(ctx, migratorsdk.WithMessage(nothingToChange))
	case err != nil:
		return fmt.Errorf("open the pull request of %s: %w", repo, err)
	}
	msg := "review and merge " + pr.URL
	if s.Message != nil {
		msg = s.Message(pr)
	}
	return d.Opened(ctx, pr.URL, migratorsdk.WithMetadata(pr.Metadata()), migratorsdk.WithMessage(msg))
}

const nothingToChange = "nothing to change: the files are so already"

// Preview is the Migration's preview (a migratorsdk.PreviewFunc): every
// step of Types runs Apply on top of the steps before it, over the
// repository's base branch (see migratorsdk.StackedPreview), so each step
// shows exactly the diff of the pull request it will open once the ones
// before it are merged. Steps of other types are skipped; a step whose
// change leaves the files as they are is skipped as the handler would
// complete it.
func (s *Steps) Preview(ctx context.Context, req migratorsdk.PreviewRequest) ([]migratorsdk.StepPreview, error) {
	repo := s.repo(req.Candidate)
	previews := migratorsdk.StackedPreview(ctx, req, s.Host.Read, func(ctx context.Context, step migratorsdk.Step, files *migratorsdk.FileSet) (string, error) {
		if !s.serves(step) {
			return fmt.Sprintf("a %s step changes no files", step.Type), nil
		}
		return s.Apply(ctx, &Edit{MigrationID: req.MigrationID, Step: step, Candidate: req.Candidate, Inputs: req.Inputs, Repo: repo, Files: files})
	})
	for i := range previews {
		p := &previews[i]
		if p.Error != "" || p.Skipped {
			continue
		}
		for _, d := range p.Diffs {
			if d.Repo != repo {
				p.Error, p.Diffs = otherRepo(p.Step, d.Repo, repo).Error(), nil
				break
			}
		}
		if p.Error == "" && len(p.Diffs) == 0 {
			p.Skipped, p.SkipReason = true, nothingToChange
		}
	}
	return previews, nil
}

// CheckMerged is the merge check (a migratorsdk.MergeCheckFunc): it finds
// the open step's pull request from its metadata and asks the Host. A
// pull request closed without merge is an error wrapping
// migratorsdk.ErrClosed, which fails the step.
func (s *Steps) CheckMerged(ctx context.Context, o migratorsdk.OpenStep) (bool, error) {
	pr, err := FromOpenStep(o)
	if err != nil {
		return false, err
	}
	st, err := s.Host.State(ctx, pr)
	if err != nil {
		return false, err
	}
	switch st {
	case Merged:
		return true, nil
	case Closed:
		return false, fmt.Errorf("%w: %s was closed; retry the step to open it again", migratorsdk.ErrClosed, pr.URL)
	}
	return false, nil
}

func otherRepo(step, other, repo string) error {
	return fmt.Errorf("step %s changes %s: a pull request holds the changes of one repository, %s", step, other, repo)
}

// changedFiles returns the files of repo the FileSet changed and that
// differ from the base branch.
func changedFiles(ctx context.Context, step string, files *migratorsdk.FileSet, base *recordedBase, repo string) (map[string]*string, error) {
	all := files.Changes()
	others := make([]string, 0, len(all))
	for r := range all {
		if r != repo {
			others = append(others, r)
		}
	}
	if len(others) > 0 {
		sort.Strings(others)
		return nil, otherRepo(step, strings.Join(others, ", "), repo)
	}
	out := map[string]*string{}
	for p, content := range all[repo] {
		was, existed, err := base.Read(ctx, repo, p)
		if err != nil {
			return nil, err
		}
		if (content == nil && existed) || (content != nil && (!existed || *content != was)) {
			out[p] = content
		}
	}
	return out, nil
}

// recordedBase reads the base branch once per file, so that what the
// handler compares with is what the EditFunc saw. Like a FileSet, it is
// for one goroutine.
type recordedBase struct {
	read migratorsdk.BaseFunc
	seen map[string]baseFile
}

type baseFile struct {
	content string
	exists  bool
}

func (b *recordedBase) Read(ctx context.Context, repo, path string) (string, bool, error) {
	k := repo + "\x00" + path
	if f, ok := b.seen[k]; ok {
		return f.content, f.exists, nil
	}
	content, exists, err := b.read(ctx, repo, path)
	if err != nil {
		return "", false, err
	}
	b.seen[k] = baseFile{content, exists}
	return content, exists, nil
}
