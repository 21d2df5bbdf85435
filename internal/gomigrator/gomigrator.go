// Package gomigrator is Loom's example Migrator: it raises the go directive
// of every go.mod older than a minimum, pins the toolchain, and asks for a
// person's review, one Candidate per repository, one pull request per step
// (package pullrequest).
//
// Spec runs it over a folder of local git repositories (package
// pullrequest/local): a step's "pull request" is a branch, loom/<step>,
// committed beside main; merging it into main (git merge) moves the step
// from open to merged. It needs the git binary. SpecFor runs it over any
// pullrequest.Host, GitHub included (see cmd/example-migrator's -host).
package gomigrator

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/pullrequest"
	"github.com/loomhq/loom/pullrequest/github"
	"github.com/loomhq/loom/pullrequest/local"
)

// MigrationID is the id of the Migration this Migrator announces.
const MigrationID = "go-directive"

// MinimumGo is the go version below which discovery reports a repository.
const MinimumGo = "1.23"

// Fleet is where the repositories to migrate are.
type Fleet struct {
	// Host reads the repositories and opens the pull requests.
	Host pullrequest.Host
	// Repositories lists the repositories, by the Host's names; each is a
	// Candidate of that ID.
	Repositories func(ctx context.Context) ([]string, error)
	// Location says where a person finds a repository (its folder, its
	// web page): the Candidate's "repository" metadata. Default the name.
	Location func(repo string) string
	// FileURL links a file of a repository from the Candidate; default none.
	FileURL func(repo, path string) string
	// MergeHint tells a person how to merge a step's pull request; default
	// "review and merge <URL>".
	MergeHint func(pr pullrequest.PullRequest) string
}

// Spec is the Migrator over the git repositories under fleetDir.
func Spec(fleetDir string) migratorsdk.Spec {
	return SpecFor(LocalFleet(fleetDir))
}

// LocalFleet is the fleet of git repositories under dir.
func LocalFleet(dir string) Fleet {
	host := local.New(dir)
	path := func(repo string) string { return filepath.Join(dir, filepath.FromSlash(repo)) }
	return Fleet{
		Host:         host,
		Repositories: func(context.Context) ([]string, error) { return host.Repositories() },
		Location:     path,
		FileURL: func(repo, file string) string {
			return (&url.URL{Scheme: "file", Path: filepath.ToSlash(filepath.Join(path(repo), file))}).String()
		},
		MergeHint: func(pr pullrequest.PullRequest) string {
			return "merge it with: git -C " + path(pr.Repo) + " merge " + pr.Branch
		},
	}
}

// SpecFor is the Migrator over a fleet.
func SpecFor(f Fleet) migratorsdk.Spec {
	m := &migrator{fleet: f}
	prs := &pullrequest.Steps{Host: f.Host, Types: []string{"go-directive", "toolchain"}, Apply: change, Message: f.MergeHint}
	return migratorsdk.Spec{
		Migration: migratorsdk.Migration{
			ID:          MigrationID,
			Name:        "Raise the go directive",
			Description: "Raise go.mod's go directive to a supported version and pin the toolchain, one reviewed pull request per step.",
			Overview: "Every repository whose `go.mod` declares a go version older than " + MinimumGo + " gets two pull requests, " +
				"merged one after the other:\n\n1. `loom/bump-go` raises the `go` directive to the target version;\n" +
				"2. `loom/pin-toolchain` pins the `toolchain` that builds it.\n\nA person then checks the service and finishes the review. " +
				"In a local fleet a pull request is a branch: `git -C <repository> merge loom/<step>` merges it.",
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
			"go-directive":  prs.Handler,
			"toolchain":     prs.Handler,
			"manual-review": m.review,
		},
		Preview:     prs.Preview,
		Discover:    m.discover,
		CheckMerged: prs.CheckMerged,
	}
}

type migrator struct {
	fleet Fleet
}

// change makes one step's change on go.mod: the one transformation shared
// by previews and by the handlers.
func change(ctx context.Context, e *pullrequest.Edit) (skip string, err error) {
	gomod, ok, err := e.Read(ctx, "go.mod")
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%s has no go.mod", e.Repo)
	}
	var next string
	switch e.Step.Type {
	case "go-directive":
		v := e.Inputs["go_version"]
		if err := validVersion(v); err != nil {
			return "", fmt.Errorf("input go_version: %w", err)
		}
		next = setGoDirective(gomod, v)
	case "toolchain":
		v := e.Inputs["toolchain"]
		if err := validVersion(v); err != nil {
			return "", fmt.Errorf("input toolchain: %w", err)
		}
		next = setToolchain(gomod, v)
	}
	if next == gomod {
		return "go.mod already says so", nil
	}
	e.Write("go.mod", next)
	return "", nil
}

func (m *migrator) review(ctx context.Context, d *migratorsdk.Dispatch) error {
	return d.AwaitingReview(ctx, fmt.Sprintf("Build and test %s with go %s (toolchain %s), then finish the review in Loom.",
		d.Candidate.ID, d.Inputs["go_version"], d.Inputs["toolchain"]))
}

// discover reports every repository whose go directive is older than
// MinimumGo.
func (m *migrator) discover(ctx context.Context) ([]migratorsdk.Candidate, error) {
	names, err := m.fleet.Repositories(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the fleet's repositories: %w", err)
	}
	var out []migratorsdk.Candidate
	for _, name := range names {
		gomod, ok, err := m.fleet.Host.Read(ctx, name, "go.mod")
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
		owner, _, err := m.fleet.Host.Read(ctx, name, "OWNERS")
		if err != nil {
			return nil, err
		}
		location := name
		if m.fleet.Location != nil {
			location = m.fleet.Location(name)
		}
		c := migratorsdk.Candidate{
			ID:       name,
			Kind:     "repository",
			Metadata: map[string]string{"repository": location, "go": v, "team": trimLine(owner)},
		}
		if m.fleet.FileURL != nil {
			c.Files = []migratorsdk.FileGroup{{Name: "go.mod", Files: []migratorsdk.FileRef{{Path: "go.mod", URL: m.fleet.FileURL(name, "go.mod")}}}}
		}
		out = append(out, c)
	}
	return out, nil
}

func trimLine(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// GitHubFleet is the fleet of an owner's repositories on GitHub (or GitHub
// Enterprise Server, or the fake of package githubtest) whose REST API is
// at apiURL: Candidates are named "owner/name".
func GitHubFleet(host *github.Host, apiURL, owner string) Fleet {
	web := webURL(apiURL)
	return Fleet{
		Host:         host,
		Repositories: func(ctx context.Context) ([]string, error) { return host.Repositories(ctx, owner) },
		Location:     func(repo string) string { return web + repo },
		FileURL:      func(repo, path string) string { return web + repo + "/blob/HEAD/" + path },
	}
}

// webURL is the web root of a GitHub whose REST API is at apiURL:
// https://api.github.com/ → https://github.com/, https://HOST/api/v3/ →
// https://HOST/.
func webURL(apiURL string) string {
	if apiURL == "" {
		apiURL = github.DefaultBaseURL
	}
	u, err := url.Parse(apiURL)
	if err != nil {
		return apiURL
	}
	if u.Host == "api.github.com" {
		return "https://github.com/"
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/api/v3") + "/"
	u.RawQuery = ""
	return u.String()
}
