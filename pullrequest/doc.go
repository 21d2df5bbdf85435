// Package pullrequest makes a Migrator's changes as pull requests on a code
// host: write a step's change once, as an EditFunc on a repository's files,
// and Steps turns it into the step handler, the exact stacked preview and
// the merge check of a migratorsdk.Spec. It is a module of its own
// (github.com/loomhq/loom/pullrequest), so that the SDK's import graph
// stays light: only a Migrator that opens pull requests depends on it.
//
// # Hosts
//
// A Host reads a repository's base branch, publishes a Change (a branch
// holding exactly the base branch plus some files, and its pull request)
// and says whether a pull request is open, merged or closed. Two come with
// the package:
//
//   - package local: git repositories on this machine; a pull request is a
//     branch, merged with git merge (trying a Migrator out, tests);
//   - package github: GitHub or GitHub Enterprise Server over the REST API,
//     with a token or as a GitHub App, and a webhook handler so that a
//     merge reaches Loom at once; package github/githubtest is a fake
//     GitHub for tests.
//
// # A Migrator in a few lines
//
// The change, shared by the preview and the handler:
//
//	func addLine(ctx context.Context, e *pullrequest.Edit) (string, error) {
//		line := e.Inputs["line"]
//		if line == "" || strings.Contains(line, "\n") {
//			return "", errors.New("input line: want one line of text")
//		}
//		readme, _, err := e.Read(ctx, "README.md")
//		if err != nil {
//			return "", err
//		}
//		if strings.Contains(readme, line+"\n") {
//			return "README.md has the line already", nil
//		}
//		e.Write("README.md", readme+line+"\n")
//		return "", nil
//	}
//
// and the Spec, with a step of that change and a person's review, on any
// Host:
//
//	func readmeMigrator(host pullrequest.Host, repos func(context.Context) ([]string, error)) migratorsdk.Spec {
//		prs := &pullrequest.Steps{Host: host, Types: []string{"readme-line"}, Apply: addLine}
//		return migratorsdk.Spec{
//			Migration: migratorsdk.Migration{
//				ID:   "readme-line",
//				Name: "Add a line to README.md",
//				Steps: []migratorsdk.Step{
//					{Name: "add-line", Type: "readme-line", Description: "Add a line to README.md"},
//					{Name: "review", Type: "manual-review", Description: "A person reads the new README.md"},
//				},
//				Inputs: []migratorsdk.Input{{Name: "line", Label: "The line to add"}},
//			},
//			Handlers: map[string]migratorsdk.StepHandler{
//				"readme-line": prs.Handler,
//				"manual-review": func(ctx context.Context, d *migratorsdk.Dispatch) error {
//					return d.AwaitingReview(ctx, "Read README.md of "+d.Candidate.ID+", then finish the review in Loom.")
//				},
//			},
//			Preview:     prs.Preview,
//			CheckMerged: prs.CheckMerged,
//			Discover: func(ctx context.Context) ([]migratorsdk.Candidate, error) {
//				names, err := repos(ctx)
//				var cands []migratorsdk.Candidate
//				for _, r := range names {
//					cands = append(cands, migratorsdk.Candidate{ID: r, Kind: "repository"})
//				}
//				return cands, err
//			},
//		}
//	}
//
// The package's tests run this Migrator against the fake Loom of
// migratortest on local git repositories (TestReadmeMigrator, and the
// package Example) and on the fake GitHub of github/githubtest
// (TestReadmeMigratorOnGitHub). To serve it:
// migratorsdk.New(readmeMigrator(host, repos), migratorsdk.Options{LoomURL:
// ..., Token: ...}) and Run, as cmd/example-migrator does.
//
// # What the handler does
//
// Steps.Handler runs the EditFunc on the Candidate's repository (by
// default the repository is the Candidate's ID) over its base branch. When
// the EditFunc skips, or changes nothing, the step is completed with the
// reason. Otherwise the change is published on the step's branch
// ("loom/<step>" by default), one commit on the base branch, and the step
// reported open with the pull request's URL and metadata (repository,
// branch, commit, number). The SDK then runs Steps.CheckMerged for open
// steps: merged reports the step merged, closed without merge fails it
// (an operator's retry publishes again, and opens a new pull request).
//
// # Idempotency
//
// Loom may dispatch a step again (a Migrator restarted, a lease ran out),
// and an operator may retry it. Publishing is idempotent: the same change
// on the same branch returns the same pull request and the same commit and
// creates nothing; a changed change (the base branch moved, the inputs
// changed) replaces the branch's commit and updates the pull request. So
// the handler needs no bookkeeping of its own.
//
// # Passing failures
//
// A Host retries what fails for a passing reason before the step fails.
// Package github retries a call to GitHub that had no answer (a refused or
// reset connection, an attempt that timed out) or answered 500, 502, 503,
// 504, 429 or a rate-limit 403, with exponential backoff from 500 ms
// (jittered) or as long as GitHub's Retry-After or X-RateLimit-Reset asks,
// for up to a minute per call and never past the context's deadline; then
// its error says how many attempts were made and what GitHub said last.
// A 401, 404, 422 and the like fail at once. Reads are always retried;
// each write of Publish is one that comes to the same done twice (a blob,
// a tree, moving the branch, editing the pull request) or whose repeat is
// refused and handled (creating the branch, opening the pull request: a
// pull request opened but whose answer was lost is found, not opened
// again). github.Options.Retry tunes this or turns it off.
//
// # Previews
//
// Steps.Preview runs the EditFunc of every step on one overlay of files
// (migratorsdk.StackedPreview): step k's diff is its change on top of steps
// 1..k-1, which is exactly the pull request step k opens once the ones
// before it are merged. Steps whose type is not in Steps.Types (a review)
// are skipped, and so is a step whose change leaves the files as they are,
// as the handler would complete it.
package pullrequest
