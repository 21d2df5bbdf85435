package migratorsdk

import (
	"context"
	"sort"
)

// PreviewFunc computes what each step would change for one Candidate,
// changing nothing. See StackedPreview for the easy way to write one.
type PreviewFunc func(ctx context.Context, req PreviewRequest) ([]StepPreview, error)

// BaseFunc reads a file as it is today, before any step: its content and
// whether it exists.
type BaseFunc func(ctx context.Context, repo, path string) (content string, exists bool, err error)

// ApplyFunc makes one step's change on files. It returns a skip reason
// when the step has nothing to do for this Candidate.
type ApplyFunc func(ctx context.Context, step Step, files *FileSet) (skipReason string, err error)

// StackedPreview previews the steps of req in order on one in-memory
// FileSet over base: step k sees the changes of steps 1..k-1, and its diffs
// are exactly what it changed on top of them, so each reads like the pull
// request it will open. A step whose apply fails gets that error in its
// preview (and changes nothing); the following steps are still previewed.
//
// Write each step's change once as an ApplyFunc and use it both here and in
// the step's handler, so the preview shows what the Run will really do.
func StackedPreview(ctx context.Context, req PreviewRequest, base BaseFunc, apply ApplyFunc) []StepPreview {
	files := NewFileSet(base)
	out := make([]StepPreview, 0, len(req.Steps))
	for _, step := range req.Steps {
		before := files.snapshot()
		files.changed = map[fileKey]bool{}
		skip, err := apply(ctx, step, files)
		p := StepPreview{Step: step.Name}
		switch {
		case err != nil:
			p.Error = err.Error()
			files.restore(before)
		case skip != "":
			p.Skipped, p.SkipReason = true, skip
			files.restore(before)
		default:
			p.Diffs = files.diffSince(ctx, before)
		}
		out = append(out, p)
	}
	return out
}

type fileKey struct{ repo, path string }

type fileState struct {
	content string
	exists  bool
}

// FileSet is an in-memory overlay of files over a BaseFunc: reads see the
// writes made so far, nothing reaches the base. Safe for one goroutine.
type FileSet struct {
	base    BaseFunc
	files   map[fileKey]fileState
	changed map[fileKey]bool
}

// NewFileSet returns an empty overlay over base.
func NewFileSet(base BaseFunc) *FileSet {
	return &FileSet{base: base, files: map[fileKey]fileState{}, changed: map[fileKey]bool{}}
}

// Read returns a file's current content ("" with exists false when it does
// not exist).
func (f *FileSet) Read(ctx context.Context, repo, path string) (content string, exists bool, err error) {
	k := fileKey{repo, path}
	if s, ok := f.files[k]; ok {
		return s.content, s.exists, nil
	}
	content, exists, err = f.base(ctx, repo, path)
	if err != nil {
		return "", false, err
	}
	f.files[k] = fileState{content, exists}
	return content, exists, nil
}

// Write sets a file's content.
func (f *FileSet) Write(repo, path, content string) {
	k := fileKey{repo, path}
	f.files[k] = fileState{content, true}
	f.changed[k] = true
}

// Delete removes a file.
func (f *FileSet) Delete(repo, path string) {
	k := fileKey{repo, path}
	f.files[k] = fileState{"", false}
	f.changed[k] = true
}

// Changes returns the files written or deleted since the FileSet was made,
// for a handler to apply for real: repo → path → content (nil for deleted).
func (f *FileSet) Changes() map[string]map[string]*string {
	out := map[string]map[string]*string{}
	for k := range f.changed {
		s := f.files[k]
		if out[k.repo] == nil {
			out[k.repo] = map[string]*string{}
		}
		if s.exists {
			c := s.content
			out[k.repo][k.path] = &c
		} else {
			out[k.repo][k.path] = nil
		}
	}
	return out
}

func (f *FileSet) snapshot() map[fileKey]fileState {
	s := make(map[fileKey]fileState, len(f.files))
	for k, v := range f.files {
		s[k] = v
	}
	return s
}

func (f *FileSet) restore(s map[fileKey]fileState) { f.files = s }

// diffSince lists the files this step changed, against their state before
// it (read from the base when the step read nothing of them before).
func (f *FileSet) diffSince(ctx context.Context, before map[fileKey]fileState) []FileDiff {
	keys := make([]fileKey, 0, len(f.changed))
	for k := range f.changed {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].repo != keys[j].repo {
			return keys[i].repo < keys[j].repo
		}
		return keys[i].path < keys[j].path
	})
	var out []FileDiff
	for _, k := range keys {
		old, ok := before[k]
		if !ok {
			c, exists, err := f.base(ctx, k.repo, k.path)
			if err == nil {
				old = fileState{c, exists}
			}
		}
		now := f.files[k]
		d := FileDiff{Repo: k.repo, Path: k.path, Before: old.content, After: now.content}
		switch {
		case old.exists && now.exists && old.content == now.content, !old.exists && !now.exists:
			continue
		case !old.exists:
			d.Status = FileAdded
		case !now.exists:
			d.Status = FileDeleted
		default:
			d.Status = FileModified
		}
		out = append(out, d)
	}
	return out
}
