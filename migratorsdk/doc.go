// Package migratorsdk is how you write a Migrator for Loom.
//
// Loom is a control plane for fleet-wide migrations. A Migrator is the
// service that knows how to do one class of change (bump a Go version,
// upgrade a Helm chart, move a topic): it announces a Migration (ordered
// Steps), discovers the Candidates it applies to, and executes the steps Loom
// dispatches to it, one Run per Candidate. Loom keeps every Run's state,
// durably, for as long as steps wait for a merge or a review; the Migrator
// does the work and reports.
//
// # Lifecycle
//
//  1. Announce: on start, the Migrator tells Loom its Migration and the URL
//     where Loom reaches it. Repeating it is harmless; changed steps apply
//     to Runs started afterwards.
//  2. Discover: the Migrator submits every Candidate it finds (in batches of
//     at most 1,000, as one pass). Loom adds new ones, updates those not
//     started, and never touches a running or completed one.
//  3. Dispatch: when an operator starts a Run, Loom calls the Migrator's
//     ExecuteStep for each step in turn. The SDK answers at once and runs
//     your handler in the background.
//  4. Report: the handler reports what happened: Progress, Opened (a pull
//     request), AwaitingReview (a person must look), Completed, Failed.
//     Loom moves to the next step on Merged or Completed.
//  5. Merge: a step that opened a pull request stays open, for weeks if need
//     be, until it is merged. Spec.CheckMerged lets the SDK ask you about
//     open steps periodically and report the merges.
//
// # When a Migrator dies
//
// A step your Migrator accepted and then lost (it crashed, was killed, its
// machine went away) is never stuck: when the Migrator starts again the SDK
// asks Loom to dispatch again the Migration's steps in progress, and Loom
// also dispatches a step again by itself when the Migrator holds it past
// its lease (Migration.DispatchLease, 10 minutes by default) without a
// report. Either way the handler runs again with the same Dispatch (run,
// execution, step, attempt): make it idempotent (check whether the branch
// or pull request exists before creating it). While the Migrator runs, the
// SDK ignores a dispatch it is still executing or has just executed.
//
// # A Migrator
//
// A Spec: the Migration, a handler per step type, and optionally a preview,
// discovery and a merge check (this one is the package Example, tested
// against migratortest):
//
//	spec := migratorsdk.Spec{
//		Migration: migratorsdk.Migration{
//			ID:   "go-upgrade",
//			Name: "Upgrade Go",
//			Steps: []migratorsdk.Step{
//				{Name: "bump-go", Type: "open-pr"},
//				{Name: "review", Type: "manual-review"},
//			},
//		},
//		Handlers: map[string]migratorsdk.StepHandler{
//			"open-pr": func(ctx context.Context, d *migratorsdk.Dispatch) error {
//				return d.Opened(ctx, "https://git.example/"+d.Candidate.ID+"/pull/1")
//			},
//			"manual-review": func(ctx context.Context, d *migratorsdk.Dispatch) error {
//				return d.AwaitingReview(ctx, "check the dashboards")
//			},
//		},
//		Discover: func(context.Context) ([]migratorsdk.Candidate, error) {
//			return []migratorsdk.Candidate{{ID: "acme/payments", Kind: "service"}}, nil
//		},
//	}
//
// then m, err := migratorsdk.New(spec, migratorsdk.Options{LoomURL: ...,
// Token: ...}) and m.Run(ctx) until a signal ends ctx (cmd/example-migrator
// is such a main). For real pull requests, on GitHub or on local git
// repositories, package github.com/loomhq/loom/pullrequest makes the
// handler, the preview and the merge check from one function that edits
// files: a complete Migrator is then about 50 lines.
//
// New fails fast, naming what is wrong: a step type without a handler, a
// handler no step uses, a duplicate step name, an id Loom would refuse.
// Run serves MigratorService (Connect, gRPC and gRPC-Web on one port) at
// Options.ListenAddr, announces with retries until Loom answers, discovers,
// checks merges, and stops cleanly when its context ends, waiting for the
// handlers in flight. To serve MigratorService from an existing server
// instead, mount Handler on your mux and call Start and Stop.
//
// # Two ways to fail
//
// A step's outcome is data: when the change cannot be made (the tests fail,
// the repository is archived), return an error from the handler or call
// d.Failed with a reason a person can act on. The Run then waits until an
// operator fixes the cause and retries the step, which dispatches it again
// with Attempt one higher.
//
// An infrastructure fault is a Go error from the SDK's calls: Loom
// unreachable, a report refused. Calls are retried while Loom cannot be
// reached or is restarting, for up to an hour (a step whose report is given
// up on is not lost: Loom dispatches it again when its lease runs out, and
// the SDK sends the report again). Anything a retry cannot help is returned
// at once: a refusal (the Run was cancelled, the attempt is no longer
// current; IsRefused and RefusalReason tell which), or Loom failing
// internally. Every handler error is logged with its Run, step and attempt.
// A refused announce (a wrong token, a Migration Loom finds invalid) ends
// Run at once with Loom's reason.
//
// # Idempotency
//
// Loom dispatches again when it did not get an answer, so the same (Run,
// execution, step, attempt) may arrive twice. While the Migrator runs, the SDK
// drops such duplicates; across a restart, your handler must notice work
// already done (a branch that exists, a pull request already open) and
// report it rather than do it twice.
//
// # Previews
//
// Operators preview a Run before starting it: Loom asks the Migrator what
// each step would change, as whole files before and after. Diffs are
// stacked: step k shows its change on top of steps 1..k-1, like the pull
// request it will open. StackedPreview does the stacking: write each step's
// change once, as an ApplyFunc on a FileSet, and use it both for the preview
// and in the handler that makes the change for real.
//
// # Trust
//
// A Loom that authenticates callers wants a token of the migrator role
// (Options.Token), scoped to the Migrations the Migrator owns. Each dispatch
// carries a callback token bound to its Run execution, step and attempt; the
// SDK puts it on every report of that step (and on merge reports) without
// any code of yours. Loom signs its calls to the Migrator: the SDK fetches
// Loom's public keys from Options.LoomURL and refuses calls that are not
// signed by them, so your Migrator obeys only its Loom. Against a Loom that
// does not sign (in tests), nothing is checked.
//
// # Testing
//
// Package migratortest is a fake Loom for your tests: start it, point the
// Migrator at it, dispatch a step, and wait for the reports, with no Loom
// server, Temporal or Redis. See the examples.
package migratorsdk
