import { describe, expect, it } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { Code, ConnectError } from "@connectrpc/connect";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { mount, untilAborted } from "./test/mount";
import { Home } from "./pages/Home";
import { CandidatePage } from "./pages/CandidatePage";
import { MetricsService, MigrationSummarySchema } from "./gen/loom/v1/metrics_service_pb";
import { RegistryService } from "./gen/loom/v1/registry_service_pb";
import { DiscoveryService, type UpdateCandidateInputsRequest } from "./gen/loom/v1/discovery_service_pb";
import {
  RunService,
  type AdoptPullRequestRequest,
  type RetryStepRequest,
  type SkipStepRequest,
  type StartRunRequest,
} from "./gen/loom/v1/run_service_pb";
import {
  EventKind,
  EventSchema,
  HistoryService,
  WatchEventsResponseSchema,
  type WatchEventsResponse,
} from "./gen/loom/v1/history_service_pb";
import { MigrationSchema } from "./gen/loom/v1/migration_pb";
import { CandidateSchema, CandidateStatus } from "./gen/loom/v1/candidate_pb";
import { RunSchema, RunStatus, StepResultSchema, StepStatus } from "./gen/loom/v1/run_pb";

const procedures = (...ms: { parent: { typeName: string }; name: string }[]) => ms.map((m) => `/${m.parent.typeName}/${m.name}`);

describe("the home page", () => {
  const fleet = [
    create(MigrationSummarySchema, {
      migration: { id: "go-upgrade", name: "Go 1.23", description: "Bump Go", candidateCounts: { total: 10n, completed: 4n, running: 1n, notStarted: 5n } },
      openPullRequests: 2n,
      awaitingReview: 1n,
      failed: 3n,
    }),
    create(MigrationSummarySchema, { migration: { id: "node-20", name: "Node 20" } }),
  ];

  it("lists every Migration of the fleet, across pages, with its progress", async () => {
    const asked: string[] = [];
    mount({
      path: "/",
      route: "/",
      element: <Home />,
      routes: (r) =>
        r.service(MetricsService, {
          getFleetOverview(req) {
            asked.push(req.pageToken);
            return req.pageToken === "" ? { migrations: [fleet[0]], nextPageToken: "p2" } : { migrations: [fleet[1]] };
          },
        }),
    });
    const link = await screen.findByRole("link", { name: "Go 1.23" });
    expect(link.getAttribute("href")).toBe("/m/go-upgrade");
    expect(screen.getByRole("link", { name: "Node 20" })).toBeTruthy();
    expect(asked).toEqual(["", "p2"]);
    const row = link.closest("tr")!;
    expect(within(row).getByRole("img", { name: "4 completed, 1 running, 5 not started" })).toBeTruthy();
    expect(row.querySelector(".bad")?.textContent).toBe("3");
    fireEvent.change(screen.getByLabelText("Search Migrations by name"), { target: { value: "node" } });
    expect(screen.queryByRole("link", { name: "Go 1.23" })).toBeNull();
    fireEvent.change(screen.getByLabelText("Search Migrations by name"), { target: { value: "rust" } });
    expect(screen.getByText("No Migration matches “rust”.")).toBeTruthy();
  });

  it("shows the server's error", async () => {
    mount({
      path: "/",
      route: "/",
      element: <Home />,
      routes: (r) =>
        r.service(MetricsService, {
          getFleetOverview() {
            throw new ConnectError("no role may read the fleet", Code.PermissionDenied);
          },
        }),
    });
    expect((await screen.findByRole("alert")).textContent).toContain("permission_denied: no role may read the fleet");
  });
});

describe("the Candidate page", () => {
  const migration = create(MigrationSchema, {
    id: "go-upgrade",
    name: "Go 1.23",
    requiredInputs: [{ name: "ticket", label: "Ticket" }],
  });
  const candidate = create(CandidateSchema, {
    id: "acme/billing",
    kind: "service",
    status: CandidateStatus.RUNNING,
    metadata: { team: "payments" },
    inputs: { ticket: "OPS-1" },
  });
  const run = create(RunSchema, {
    id: "go-upgrade__acme/billing",
    migrationId: "go-upgrade",
    candidateId: "acme/billing",
    execution: 1n,
    status: RunStatus.RUNNING,
    steps: [
      { name: "bump-go", type: "pull_request" },
      { name: "deploy", type: "review" },
    ],
    currentStep: "bump-go",
    currentStepStatus: StepStatus.FAILED,
    stepResults: [{ stepName: "bump-go", status: StepStatus.FAILED, attempt: 2, message: "tests failed" }],
  });
  type Sent = {
    started?: StartRunRequest;
    retried?: RetryStepRequest;
    skipped?: SkipStepRequest;
    adopted?: AdoptPullRequestRequest;
    inputs?: UpdateCandidateInputsRequest;
  };

  // A server where the caller may do everything listed, the Candidate has a
  // running Run and one event; what the page sends is recorded.
  function serve(allowed: string[], sent: Sent, withRun = true) {
    return mount({
      path: "/m/go-upgrade/c/acme%2Fbilling",
      route: "/m/:migrationId/c/*",
      element: <CandidatePage />,
      routes: (r) => {
        r.service(RegistryService, {
          getCaller: () => ({ authenticated: true, allowedProcedures: allowed }),
          getMigration: (req) => {
            if (req.migrationId !== "go-upgrade") throw new ConnectError("no such Migration", Code.NotFound);
            return { migration };
          },
        });
        r.service(DiscoveryService, {
          getCandidate: (req) => {
            if (req.candidateId !== "acme/billing") throw new ConnectError("no such Candidate", Code.NotFound);
            return { candidate };
          },
          updateCandidateInputs: (req) => {
            sent.inputs = req;
            return { candidate: { ...candidate, inputs: req.inputs } };
          },
        });
        r.service(RunService, {
          getRun(req) {
            if (!withRun) throw new ConnectError("no Run", Code.NotFound);
            expect(req.runId).toBe(run.id);
            return { run };
          },
          startRun: (req) => {
            sent.started = req;
            return {};
          },
          retryStep: (req) => {
            sent.retried = req;
            return {};
          },
          skipStep: (req) => {
            sent.skipped = req;
            return {};
          },
          adoptPullRequest: (req) => {
            sent.adopted = req;
            return {};
          },
        });
        r.service(HistoryService, {
          listEvents: (req) => ({
            events:
              req.candidateId === "acme/billing"
                ? [{ id: "1", kind: EventKind.RUN_STARTED, migrationId: "go-upgrade", candidateId: "acme/billing", actor: "ana" }]
                : [],
          }),
          async *watchEvents(_req, ctx) {
            yield { update: { case: "heartbeat", value: {} } };
            await untilAborted(ctx.signal);
          },
        });
      },
    });
  }

  it("shows the Candidate, its Run live and its history", async () => {
    serve([], {});
    expect((await screen.findByRole("heading", { level: 1 })).textContent).toBe("acme/billing");
    expect(screen.getByRole("link", { name: "Go 1.23" }).getAttribute("href")).toBe("/m/go-upgrade");
    expect(screen.getByText("payments")).toBeTruthy();
    expect(screen.getByText("OPS-1")).toBeTruthy();
    const steps = await screen.findAllByRole("listitem");
    const bump = steps.find((li) => li.dataset.step === "bump-go")!;
    expect(bump.dataset.status).toBe("failed");
    expect(bump.textContent).toContain("tests failed");
    expect(bump.textContent).toContain("attempt 2");
    expect(steps.find((li) => li.dataset.step === "deploy")!.dataset.status).toBe("pending");
    await waitFor(() => expect(screen.getAllByText("● live").length).toBe(2)); // the Run and the history
    expect(screen.getByText("ana")).toBeTruthy();
    // The caller may do nothing: no control is shown.
    expect(screen.queryByRole("button", { name: /Preview/ })).toBeNull();
    expect(screen.queryByRole("button", { name: "Retry step" })).toBeNull();
    expect(screen.queryByRole("button", { name: "Edit inputs" })).toBeNull();
  });

  it("follows its Run and history from the browser's one feed: no stream of its own", async () => {
    const watched: { migrationId: string }[] = [];
    const reads: bigint[] = [];
    let reported = false;
    const retried = create(RunSchema, {
      ...run,
      version: 2n,
      currentStepStatus: StepStatus.IN_PROGRESS,
      stepResults: [create(StepResultSchema, { stepName: "bump-go", status: StepStatus.IN_PROGRESS, attempt: 3 })],
    });
    const feed = (e: MessageInitShape<typeof EventSchema>): WatchEventsResponse =>
      create(WatchEventsResponseSchema, { update: { case: "event", value: create(EventSchema, e) } });
    mount({
      path: "/m/go-upgrade/c/acme%2Fbilling",
      route: "/m/:migrationId/c/*",
      element: <CandidatePage />,
      routes: (r) => {
        r.service(RegistryService, { getCaller: () => ({ authenticated: true }), getMigration: () => ({ migration }) });
        r.service(DiscoveryService, { getCandidate: () => ({ candidate }) });
        r.service(RunService, {
          getRun() {
            const answer = reported ? retried : create(RunSchema, { ...run, version: 1n });
            reads.push(answer.version);
            return { run: answer };
          },
        });
        r.service(HistoryService, {
          listEvents: () => ({ events: [] }),
          async *watchEvents(req, ctx) {
            watched.push(req);
            yield create(WatchEventsResponseSchema, { update: { case: "heartbeat", value: {} } });
            while (reads.length === 0) await new Promise((r) => setTimeout(r, 10));
            // Another Candidate's event: nothing to read.
            yield feed({ id: "7-0", kind: EventKind.STEP_RETRIED, migrationId: "go-upgrade", candidateId: "acme/web" });
            reported = true;
            yield feed({ id: "8-0", kind: EventKind.STEP_RETRIED, migrationId: "go-upgrade", candidateId: "acme/billing", step: "bump-go", actor: "bo" });
            await untilAborted(ctx.signal);
          },
        });
      },
    });
    const step = async () => (await screen.findAllByRole("listitem")).find((li) => li.dataset.step === "bump-go")!;
    await waitFor(async () => expect((await step()).dataset.status).toBe("in_progress"));
    expect((await step()).textContent).toContain("attempt 3");
    // The history shows the event of this Candidate only, live.
    await screen.findByText("bo");
    expect(screen.queryByText("acme/web")).toBeNull();
    expect(reads).toEqual([1n, 2n]);
    // One stream: the fleet's feed (WatchRun is not even served here).
    expect(watched).toEqual([expect.objectContaining({ migrationId: "" })]);
  });

  it("retries a failed step with its attempt, once confirmed in a dialog", async () => {
    const sent: Sent = {};
    serve(procedures(RunService.method.retryStep), sent);
    fireEvent.click(await screen.findByRole("button", { name: "Retry step…" }));
    expect(sent.retried).toBeUndefined();
    fireEvent.click(within(screen.getByRole("dialog", { name: "Retry bump-go?" })).getByRole("button", { name: "Retry the step" }));
    await waitFor(() => expect(sent.retried).toBeDefined());
    expect(sent.retried).toMatchObject({ runId: run.id, stepName: "bump-go", attempt: 2 });
  });

  it("skips the current step with the reason asked in the page", async () => {
    const sent: Sent = {};
    serve(procedures(RunService.method.skipStep), sent);
    // Adopting is not allowed to this caller: not offered.
    expect(screen.queryByRole("button", { name: "Adopt existing PR…" })).toBeNull();
    fireEvent.click(await screen.findByRole("button", { name: "Skip step…" }));
    const dialog = screen.getByRole("dialog", { name: "Skip step: bump-go" });
    const reason = within(dialog).getByRole("textbox") as HTMLInputElement;
    fireEvent.click(within(dialog).getByRole("button", { name: "Skip step" }));
    expect(within(dialog).getByRole("alert").textContent).toBe("Say why the step is skipped.");
    expect(sent.skipped).toBeUndefined();
    fireEvent.change(reason, { target: { value: "bumped by hand in #412" } });
    fireEvent.click(within(dialog).getByRole("button", { name: "Skip step" }));
    await waitFor(() => expect(sent.skipped).toBeDefined());
    expect(sent.skipped).toMatchObject({ runId: run.id, stepName: "bump-go", attempt: 2, reason: "bumped by hand in #412" });
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
  });

  it("adopts an existing pull request, its URL checked first", async () => {
    const sent: Sent = {};
    serve(procedures(RunService.method.adoptPullRequest, RunService.method.skipStep), sent);
    fireEvent.click(await screen.findByRole("button", { name: "Adopt existing PR…" }));
    const dialog = screen.getByRole("dialog", { name: "Adopt existing PR: bump-go" });
    const url = within(dialog).getByRole("textbox", { name: "Pull request URL" }) as HTMLInputElement;
    fireEvent.change(url, { target: { value: "git@github.com:acme/billing/pull/7" } });
    fireEvent.change(within(dialog).getByRole("textbox", { name: "Why" }), { target: { value: "opened by hand" } });
    fireEvent.click(within(dialog).getByRole("button", { name: "Adopt PR" }));
    expect(within(dialog).getByRole("alert").textContent).toBe("An http:// or https:// URL.");
    fireEvent.change(url, { target: { value: "https://github.com/acme/billing/pull/7" } });
    fireEvent.click(within(dialog).getByRole("button", { name: "Adopt PR" }));
    await waitFor(() => expect(sent.adopted).toBeDefined());
    expect(sent.adopted).toMatchObject({
      runId: run.id,
      stepName: "bump-go",
      attempt: 2,
      prUrl: "https://github.com/acme/billing/pull/7",
      note: "opened by hand",
    });
  });

  it("edits the stored inputs and sends why", async () => {
    const sent: Sent = {};
    serve(procedures(DiscoveryService.method.updateCandidateInputs), sent);
    fireEvent.click(await screen.findByRole("button", { name: "Edit inputs" }));
    const form = screen.getByRole("form", { name: "Edit inputs" });
    fireEvent.change(within(form).getByRole("textbox", { name: "ticket" }), { target: { value: "OPS-2" } });
    fireEvent.change(within(form).getByRole("textbox", { name: "Why" }), { target: { value: "OPS-1 was closed" } });
    fireEvent.click(within(form).getByRole("button", { name: "Save" }));
    await waitFor(() => expect(sent.inputs).toBeDefined());
    expect(sent.inputs).toMatchObject({
      migrationId: "go-upgrade",
      candidateId: "acme/billing",
      inputs: { ticket: "OPS-2" },
      removeInputs: [],
      note: "OPS-1 was closed",
    });
  });

  it("shows a skipped step with its reason", async () => {
    mount({
      path: "/m/go-upgrade/c/acme%2Fbilling",
      route: "/m/:migrationId/c/*",
      element: <CandidatePage />,
      routes: (r) => {
        r.service(RegistryService, {
          getCaller: () => ({ authenticated: true, allowedProcedures: procedures(RunService.method.skipStep) }),
          getMigration: () => ({ migration }),
        });
        r.service(DiscoveryService, { getCandidate: () => ({ candidate }) });
        r.service(RunService, {
          getRun() {
            const skipped = create(RunSchema, {
              id: run.id,
              migrationId: run.migrationId,
              candidateId: run.candidateId,
              execution: run.execution,
              status: RunStatus.RUNNING,
              steps: run.steps,
              currentStep: "deploy",
              currentStepStatus: StepStatus.IN_PROGRESS,
              stepResults: [
                { stepName: "bump-go", status: StepStatus.SKIPPED, attempt: 2, message: "bumped by hand", actor: "ana" },
                { stepName: "deploy", status: StepStatus.IN_PROGRESS, attempt: 1 },
              ],
            });
            return { run: skipped };
          },
        });
        r.service(HistoryService, {
          listEvents: () => ({ events: [] }),
          async *watchEvents(_req, ctx) {
            await untilAborted(ctx.signal);
          },
        });
      },
    });
    const steps = await screen.findAllByRole("listitem");
    await waitFor(() => expect(steps.find((li) => li.dataset.step === "bump-go")!.dataset.status).toBe("skipped"));
    const bump = (await screen.findAllByRole("listitem")).find((li) => li.dataset.step === "bump-go")!;
    expect(bump.textContent).toContain("Skipped: bumped by hand");
    expect(bump.textContent).toContain("by ana");
    // Only the current step offers a skip.
    expect(screen.getAllByRole("button", { name: "Skip step…" }).length).toBe(1);
  });

  it("starts a Run with the inputs, checked before anything is sent", async () => {
    const sent: Sent = {};
    serve(procedures(RunService.method.previewRun, RunService.method.startRun), sent, false);
    expect(await screen.findByText("Not started yet.")).toBeTruthy();
    fireEvent.click(await screen.findByRole("button", { name: "Preview or start…" }));
    const form = screen.getByRole("form", { name: "Preview or start a Run" });
    const ticket = within(form).getByRole("textbox", { name: /^Ticket/ }) as HTMLInputElement;
    expect(ticket.value).toBe("OPS-1");
    fireEvent.change(ticket, { target: { value: " " } });
    fireEvent.click(within(form).getByRole("button", { name: "Start Run" }));
    expect(within(form).getByRole("alert").textContent).toBe("Required: Ticket");
    fireEvent.change(ticket, { target: { value: "OPS-2" } });
    fireEvent.change(within(form).getByRole("textbox", { name: "Why" }), { target: { value: "before the freeze" } });
    fireEvent.click(within(form).getByRole("button", { name: "Start Run" }));
    await waitFor(() => expect(sent.started).toBeDefined());
    expect(sent.started).toMatchObject({
      migrationId: "go-upgrade",
      candidateId: "acme/billing",
      inputs: { ticket: "OPS-2" },
      note: "before the freeze",
    });
    await waitFor(() => expect(screen.queryByRole("form", { name: "Preview or start a Run" })).toBeNull());
  });

  it("says what the server refused", async () => {
    mount({
      path: "/m/go-upgrade/c/acme%2Fmissing",
      route: "/m/:migrationId/c/*",
      element: <CandidatePage />,
      routes: (r) => {
        r.service(RegistryService, { getMigration: () => ({ migration }) });
        r.service(DiscoveryService, {
          getCandidate: () => {
            throw new ConnectError("no Candidate acme/missing", Code.NotFound);
          },
        });
      },
    });
    expect((await screen.findByRole("alert")).textContent).toContain("not_found: no Candidate acme/missing");
  });
});
