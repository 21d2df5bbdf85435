package pullrequest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/migratorsdk/migratortest"
	"github.com/loomhq/loom/pullrequest"
)

// memHost is a Host in memory that records what it is asked.
type memHost struct {
	mu         sync.Mutex
	files      map[string]string // repo + "/" + path
	published  []pullrequest.Change
	states     map[string]pullrequest.State // by branch
	publishErr error
	stateCalls int // merge checks asked about
}

func (h *memHost) Read(_ context.Context, repo, path string) (string, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.files[repo+"/"+path]
	return c, ok, nil
}

func (h *memHost) Publish(_ context.Context, c pullrequest.Change) (pullrequest.PullRequest, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.publishErr != nil {
		return pullrequest.PullRequest{}, h.publishErr
	}
	h.published = append(h.published, c)
	return pullrequest.PullRequest{URL: "https://git.example/" + c.Repo + "/pull/7", Repo: c.Repo, Branch: c.Branch, Number: 7, Commit: "c0ffee"}, nil
}

func (h *memHost) State(_ context.Context, pr pullrequest.PullRequest) (pullrequest.State, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stateCalls++
	if s, ok := h.states[pr.Branch]; ok {
		return s, nil
	}
	return pullrequest.Open, nil
}

func (h *memHost) changes() []pullrequest.Change {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]pullrequest.Change(nil), h.published...)
}

// checkedTwice waits until State has been asked twice more: merge checks
// run one after another, so the first of those was then acted on.
func (h *memHost) checkedTwice(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	want := h.stateCalls + 2
	h.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h.mu.Lock()
		n := h.stateCalls
		h.mu.Unlock()
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s on, %d merge checks, want %d", n, want)
		}
	}
}

func (h *memHost) setState(branch string, s pullrequest.State) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.states[branch] = s
}

// start serves steps' Spec for one Candidate, "acme/svc", with steps of
// the given types (the step's name is its type).
func start(t *testing.T, prs *pullrequest.Steps, types ...string) *migratortest.Loom {
	t.Helper()
	mig := migratorsdk.Migration{ID: "edit", Name: "Edit"}
	handlers := map[string]migratorsdk.StepHandler{}
	for _, typ := range types {
		mig.Steps = append(mig.Steps, migratorsdk.Step{Name: typ, Type: typ, Description: "Do " + typ + "."})
		handlers[typ] = prs.Handler
	}
	handlers["manual-review"] = func(ctx context.Context, d *migratorsdk.Dispatch) error { return d.AwaitingReview(ctx, "look") }
	mig.Steps = append(mig.Steps, migratorsdk.Step{Name: "review", Type: "manual-review"})
	loom := migratortest.New(t)
	m, err := migratorsdk.New(migratorsdk.Spec{
		Migration: mig, Handlers: handlers, Preview: prs.Preview, CheckMerged: prs.CheckMerged,
		Discover: func(context.Context) ([]migratorsdk.Candidate, error) {
			return []migratorsdk.Candidate{{ID: "acme/svc"}}, nil
		},
	}, migratorsdk.Options{LoomURL: loom.URL(), ListenAddr: "127.0.0.1:0", MergeCheckEvery: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	go m.Run(t.Context())
	loom.WaitCandidates(t, "edit", 1)
	return loom
}

// appendTo appends to a file the step's Config["text"], or writes into
// Config["repo"] when set.
func appendTo(path string) pullrequest.EditFunc {
	return func(ctx context.Context, e *pullrequest.Edit) (string, error) {
		if e.Step.Config["fail"] != "" {
			return "", errors.New(e.Step.Config["fail"])
		}
		c, _, err := e.Read(ctx, path)
		if err != nil {
			return "", err
		}
		if repo := e.Step.Config["repo"]; repo != "" {
			e.Files.Write(repo, path, "x")
		}
		e.Write(path, c+e.Inputs["text"])
		return "", nil
	}
}

func TestTheHandlerPublishesTheEditAndCheckMergedFollows(t *testing.T) {
	host := &memHost{files: map[string]string{"acme/svc/README.md": "# svc\n"}, states: map[string]pullrequest.State{}}
	prs := &pullrequest.Steps{Host: host, Types: []string{"one", "two"}, Apply: appendTo("README.md")}
	loom := start(t, prs, "one", "two")

	previews, err := loom.Preview(t.Context(), "edit", "acme/svc", map[string]string{"text": "more\n"})
	if err != nil {
		t.Fatal(err)
	}
	if len(previews) != 3 || previews[1].Diffs[0].Before != "# svc\nmore\n" || previews[1].Diffs[0].After != "# svc\nmore\nmore\n" ||
		previews[2].SkipReason != "a manual-review step changes no files" {
		t.Fatalf("previews %+v", previews)
	}

	run := loom.MustDispatch(t, "edit", "one", "acme/svc", map[string]string{"text": "more\n"})
	rep := run.MustWait(t, migratorsdk.StatusOpen)
	want := map[string]string{"repository": "acme/svc", "branch": "loom/one", "commit": "c0ffee", "number": "7"}
	if rep.PRURL != "https://git.example/acme/svc/pull/7" || fmt.Sprint(rep.Metadata) != fmt.Sprint(want) || rep.Message != "review and merge "+rep.PRURL {
		t.Fatalf("opened %+v", rep)
	}
	changes := host.changes()
	if len(changes) != 1 || changes[0].Title != "Do one" || !strings.Contains(changes[0].Body, `step "one" of Migration "edit" (Run edit__acme/svc)`) ||
		len(changes[0].Files) != 1 || *changes[0].Files["README.md"] != "# svc\nmore\n" {
		t.Fatalf("published %+v", changes)
	}
	host.checkedTwice(t)
	if run.Status() != migratorsdk.StatusOpen {
		t.Fatalf("an open pull request became %s", run.Status())
	}
	host.setState("loom/one", pullrequest.Merged)
	run.MustWait(t, migratorsdk.StatusMerged)

	run = loom.MustDispatch(t, "edit", "two", "acme/svc", map[string]string{"text": "more\n"})
	run.MustWait(t, migratorsdk.StatusOpen)
	host.setState("loom/two", pullrequest.Closed)
	if rep := run.MustWait(t, migratorsdk.StatusFailed); !strings.Contains(rep.Message, "pull request closed without merge: https://git.example/acme/svc/pull/7 was closed") {
		t.Fatalf("failed with %q", rep.Message)
	}
}

func TestTheHandlerCompletesWhatNeedsNoPullRequest(t *testing.T) {
	host := &memHost{files: map[string]string{"acme/svc/README.md": "# svc\n"}, states: map[string]pullrequest.State{}}
	prs := &pullrequest.Steps{Host: host, Apply: appendTo("README.md")}
	loom := start(t, prs, "a", "b", "c")

	// Written, but the same as before: nothing to review.
	run := loom.MustDispatch(t, "edit", "a", "acme/svc", map[string]string{"text": ""})
	if rep := run.MustWait(t, migratorsdk.StatusCompleted); rep.Message != "nothing to change: the files are so already" {
		t.Fatalf("completed with %q", rep.Message)
	}
	previews, err := loom.Preview(t.Context(), "edit", "acme/svc", map[string]string{"text": ""})
	if err != nil || !previews[0].Skipped || previews[0].SkipReason != "nothing to change: the files are so already" {
		t.Fatalf("preview of no change %+v %v", previews, err)
	}
	// A Steps without Types hands every step to Apply, the review too.
	if previews[3].Step != "review" || previews[3].SkipReason != "nothing to change: the files are so already" {
		t.Fatalf("review preview %+v", previews[3])
	}
	// The host finds nothing to change either.
	host.mu.Lock()
	host.publishErr = fmt.Errorf("publish: %w", pullrequest.ErrNoChanges)
	host.mu.Unlock()
	run = loom.MustDispatch(t, "edit", "b", "acme/svc", map[string]string{"text": "x"})
	run.MustWait(t, migratorsdk.StatusCompleted)
	// Any other error fails the step.
	host.mu.Lock()
	host.publishErr = errors.New("the host is down")
	host.mu.Unlock()
	run = loom.MustDispatch(t, "edit", "c", "acme/svc", map[string]string{"text": "y"})
	if rep := run.MustWait(t, migratorsdk.StatusFailed); !strings.Contains(rep.Message, "the host is down") {
		t.Fatalf("failed with %q", rep.Message)
	}
	if len(host.changes()) != 0 {
		t.Fatalf("published %+v", host.changes())
	}
}

func TestTheHandlerRefusesWhatItCannotPublish(t *testing.T) {
	host := &memHost{files: map[string]string{}, states: map[string]pullrequest.State{}}
	prs := &pullrequest.Steps{Host: host, Types: []string{"edit"}, Apply: appendTo("README.md")}
	mig := func(cfg map[string]string, typ string) *migratortest.Loom {
		loom := migratortest.New(t)
		m, err := migratorsdk.New(migratorsdk.Spec{
			Migration: migratorsdk.Migration{ID: "edit", Name: "Edit", Steps: []migratorsdk.Step{{Name: "s", Type: typ, Config: cfg}}},
			Handlers:  map[string]migratorsdk.StepHandler{typ: prs.Handler},
			Preview:   prs.Preview,
			Discover: func(context.Context) ([]migratorsdk.Candidate, error) {
				return []migratorsdk.Candidate{{ID: "acme/svc"}}, nil
			},
		}, migratorsdk.Options{LoomURL: loom.URL(), ListenAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		go m.Run(t.Context())
		loom.WaitCandidates(t, "edit", 1)
		return loom
	}
	for name, c := range map[string]struct {
		cfg  map[string]string
		typ  string
		want string
	}{
		"another repository": {map[string]string{"repo": "acme/other"}, "edit", "step s changes acme/other: a pull request holds the changes of one repository, acme/svc"},
		"apply fails":        {map[string]string{"fail": "no go.mod"}, "edit", "no go.mod"},
		"not one of Types":   {nil, "other", `step s of type "other": pullrequest.Steps.Types has no such type`},
	} {
		t.Run(name, func(t *testing.T) {
			loom := mig(c.cfg, c.typ)
			run := loom.MustDispatch(t, "edit", "s", "acme/svc", map[string]string{"text": "x"})
			if rep := run.MustWait(t, migratorsdk.StatusFailed); !strings.Contains(rep.Message, c.want) {
				t.Fatalf("failed with %q, want %q", rep.Message, c.want)
			}
			if c.typ != "edit" {
				return
			}
			previews, err := loom.Preview(t.Context(), "edit", "acme/svc", map[string]string{"text": "x"})
			if err != nil || !strings.Contains(previews[0].Error, c.want) || len(previews[0].Diffs) != 0 {
				t.Fatalf("preview %+v %v", previews, err)
			}
		})
	}
	if len(host.changes()) != 0 {
		t.Fatalf("published %+v", host.changes())
	}
}

func TestStepsOptions(t *testing.T) {
	host := &memHost{files: map[string]string{"svc/README.md": ""}, states: map[string]pullrequest.State{}}
	prs := &pullrequest.Steps{
		Host: host, Apply: appendTo("README.md"),
		Repo:   func(c migratorsdk.Candidate) string { return strings.TrimPrefix(c.ID, "acme/") },
		Branch: func(migration string, s migratorsdk.Step) string { return "migrations/" + migration + "/" + s.Name },
		Describe: func(d *migratorsdk.Dispatch) (string, string) {
			return "Edit " + d.Candidate.ID, "Inputs: " + d.Inputs["text"]
		},
		Message: func(pr pullrequest.PullRequest) string { return "merge " + pr.Branch },
	}
	loom := start(t, prs, "edit")
	rep := loom.MustDispatch(t, "edit", "edit", "acme/svc", map[string]string{"text": "x"}).MustWait(t, migratorsdk.StatusOpen)
	c := host.changes()
	if rep.Message != "merge migrations/edit/edit" || len(c) != 1 || c[0].Repo != "svc" || c[0].Branch != "migrations/edit/edit" ||
		c[0].Title != "Edit acme/svc" || c[0].Body != "Inputs: x" {
		t.Fatalf("opened %+v; published %+v", rep, c)
	}
}

func TestFromOpenStep(t *testing.T) {
	pr := pullrequest.PullRequest{URL: "https://github.com/acme/svc/pull/3", Repo: "acme/svc", Branch: "loom/x", Number: 3, Commit: "abc"}
	got, err := pullrequest.FromOpenStep(migratorsdk.OpenStep{PRURL: pr.URL, Metadata: pr.Metadata()})
	if err != nil || got != pr {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	local := pullrequest.PullRequest{URL: "file:///x?branch=loom%2Fx", Repo: "x", Branch: "loom/x", Commit: "abc"}
	if m := local.Metadata(); m["number"] != "" {
		t.Fatalf("metadata of a pull request without number: %v", m)
	}
	for name, meta := range map[string]map[string]string{
		"none":        nil,
		"no branch":   {"repository": "acme/svc"},
		"bad number":  {"repository": "acme/svc", "branch": "b", "number": "three"},
		"zero number": {"repository": "acme/svc", "branch": "b", "number": "0"},
	} {
		if _, err := pullrequest.FromOpenStep(migratorsdk.OpenStep{Metadata: meta}); err == nil {
			t.Errorf("%s: recovered", name)
		}
	}
}

func TestValidation(t *testing.T) {
	for _, b := range []string{"loom/x", "loom/bump-go", "a", "feature/x.y_z-1"} {
		if err := pullrequest.ValidBranch(b); err != nil {
			t.Errorf("%q: %v", b, err)
		}
	}
	for _, b := range []string{"", "-x", "/x", "x/", "x.", "x..y", "x@{1}", "x//y", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", `a\b`, "a\x01", ".x", "x/.y", "x.lock", "x/y.lock/z", "@"} {
		if err := pullrequest.ValidBranch(b); err == nil {
			t.Errorf("%q: accepted", b)
		}
	}
	for _, p := range []string{"README.md", "a/b/c.go", ".github/workflows/ci.yml", "x..y"} {
		if err := pullrequest.ValidPath(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"", ".", "/etc/passwd", "../x", "a/../b", "a//b", "a/", "./a", ".git/config", "a/.GIT/x", `a\b`, "a\x00b", ".."} {
		if err := pullrequest.ValidPath(p); err == nil {
			t.Errorf("%q: accepted", p)
		}
	}
	c := pullrequest.Change{Repo: "r", Branch: "loom/x", Title: "t", Files: map[string]*string{"a": nil}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Title = ""
	if err := c.Validate(); err == nil {
		t.Fatal("a change without title")
	}
}
