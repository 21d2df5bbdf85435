import { describe, expect, it } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { useParams } from "react-router";
import { mount, untilAborted } from "./test/mount";
import { MigrationPage } from "./pages/MigrationPage";
import { RolloutPage } from "./pages/RolloutPage";
import { CandidatePage } from "./pages/CandidatePage";
import { RegistryService } from "./gen/loom/v1/registry_service_pb";
import { DiscoveryService, type BulkUpdateCandidateInputsRequest } from "./gen/loom/v1/discovery_service_pb";
import { RunService, type BulkRetryStepsRequest } from "./gen/loom/v1/run_service_pb";
import {
  RolloutService,
  type PauseRolloutRequest,
  type ResumeRolloutRequest,
  type PreviewSelectionRequest,
  type StartRolloutRequest,
  type UpdateRolloutRequest,
} from "./gen/loom/v1/rollout_service_pb";
import { EventKind, EventSchema, HistoryService, type Event } from "./gen/loom/v1/history_service_pb";
import { MigrationSchema } from "./gen/loom/v1/migration_pb";
import { CandidateSchema, CandidateStatus } from "./gen/loom/v1/candidate_pb";
import { BulkOutcome } from "./gen/loom/v1/bulk_pb";
import { CanaryContinuation, RolloutSchema, RolloutState, type Rollout } from "./gen/loom/v1/rollout_pb";
import { RunSchema, RunStatus, StepStatus } from "./gen/loom/v1/run_pb";
import { FileDiffStatus } from "./gen/loom/v1/preview_pb";

const procedures = (...ms: { parent: { typeName: string }; name: string }[]) => ms.map((m) => `/${m.parent.typeName}/${m.name}`);
const operator = procedures(
  RolloutService.method.startRollout,
  RolloutService.method.pauseRollout,
  RolloutService.method.resumeRollout,
  RolloutService.method.updateRollout,
  RolloutService.method.cancelRollout,
  RunService.method.bulkRetrySteps,
  RunService.method.bulkCancelRuns,
  RunService.method.bulkFinishReviews,
  RunService.method.bulkMarkStepsMerged,
  DiscoveryService.method.bulkUpdateCandidateInputs,
);

const migration = create(MigrationSchema, {
  id: "go-upgrade",
  name: "Go 1.23",
  steps: [
    { name: "bump-go", type: "open-pr" },
    { name: "deploy", type: "manual-review" },
  ],
  requiredInputs: [{ name: "ticket", label: "Ticket" }],
});
const candidates = ["acme/a", "acme/b"].map((id) => create(CandidateSchema, { id, kind: "service", status: CandidateStatus.RUNNING }));

// A Migration page with a table of 2 Candidates shown of `total` matching;
// what the page sends is recorded.
function serveTable(opts: {
  path: string;
  allowed?: string[];
  total?: bigint;
  listed?: unknown[];
  retried?: BulkRetryStepsRequest[];
  inputsSet?: BulkUpdateCandidateInputsRequest[];
  previewed?: PreviewSelectionRequest[];
  started?: StartRolloutRequest[];
  startError?: ConnectError;
}) {
  return mount({
    path: opts.path,
    route: "/m/:migrationId",
    element: <MigrationPage />,
    also: [{ route: "/m/:migrationId/r/:rolloutId", element: <RolloutStub /> }],
    routes: (r) => {
      r.service(RegistryService, {
        getCaller: () => ({ authenticated: true, allowedProcedures: opts.allowed ?? operator }),
        getMigration: () => ({ migration }),
      });
      r.service(DiscoveryService, {
        listCandidates: (req) => {
          opts.listed?.push(req);
          return { candidates, totalSize: opts.total ?? 2n, nextPageToken: (opts.total ?? 2n) > 2n ? "p2" : "" };
        },
        bulkUpdateCandidateInputs: (req) => {
          opts.inputsSet?.push(req);
          return { result: { selectedCount: 2, doneCount: 2, outcomes: candidates.map((c) => ({ candidateId: c.id, outcome: BulkOutcome.DONE })) } };
        },
      });
      r.service(RunService, {
        bulkRetrySteps: (req) => {
          opts.retried?.push(req);
          return {
            result: {
              selectedCount: 2,
              doneCount: 1,
              refusedCount: 1,
              outcomes: [
                { candidateId: "acme/a", outcome: BulkOutcome.DONE },
                {
                  candidateId: "acme/b",
                  outcome: BulkOutcome.REFUSED,
                  code: "failed_precondition",
                  reason: "TRANSITION_NOT_ALLOWED",
                  message: "step bump-go is open, not failed",
                },
              ],
            },
          };
        },
      });
      r.service(RolloutService, {
        previewSelection: (req) => {
          opts.previewed?.push(req);
          const ticket = req.defaultInputs.ticket ?? "";
          return {
            count: 2,
            notStartableCount: 0,
            missingInputsCount: ticket ? 0 : 2,
            missingInputs: ticket ? [] : candidates.map((c) => ({ candidateId: c.id, missing: ["ticket"] })),
            samples: [
              {
                candidateId: "acme/a",
                steps: [
                  {
                    stepName: "bump-go",
                    diffs: [{ path: "go.mod", before: "go 1.19\n", after: "go 1.23\n", status: FileDiffStatus.MODIFIED }],
                  },
                ],
              },
            ],
          };
        },
        startRollout: (req) => {
          opts.started?.push(req);
          if (opts.startError) throw opts.startError;
          return { rollout: { id: "ro-0123456789ab", migrationId: "go-upgrade", state: RolloutState.RUNNING } };
        },
      });
    },
  });
}

function RolloutStub() {
  const { rolloutId } = useParams();
  return <h1>rollout page {rolloutId}</h1>;
}

// errorInfo encodes a google.rpc.ErrorInfo as the server attaches it.
function errorInfo(reason: string, metadata: Record<string, string>): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, 2).string(reason);
  w.tag(2, 2).string("loom.dev");
  for (const [k, v] of Object.entries(metadata)) {
    w.tag(3, 2).fork().tag(1, 2).string(k).tag(2, 2).string(v).join();
  }
  return w.finish();
}

describe("the Candidate table's selection", () => {
  it("selects rows, then every Candidate matching the filter, and acts on the filter", async () => {
    const retried: BulkRetryStepsRequest[] = [];
    serveTable({ path: "/m/go-upgrade?status=running&q=acme/&meta=team=payments&order=last_change", total: 37n, retried });
    fireEvent.click(await screen.findByRole("checkbox", { name: "Select acme/a" }));
    const bar = screen.getByRole("toolbar", { name: "Bulk actions" });
    expect(bar.textContent).toContain("1 Candidate selected");
    expect(screen.queryByRole("button", { name: /Select all/ })).toBeNull();
    // The page's header checkbox selects the rest of the page; the filter
    // matches more: the table offers them all.
    fireEvent.click(screen.getByRole("checkbox", { name: "Select every Candidate on this page" }));
    expect(bar.textContent).toContain("2 Candidates selected");
    fireEvent.click(screen.getByRole("button", { name: "Select all 37 matching this filter" }));
    expect(screen.getByText(/All 37 Candidates matching this filter are selected/)).toBeTruthy();
    expect(screen.getByRole("toolbar", { name: "Bulk actions" }).textContent).toContain("37 Candidates selected (all matching the filter)");
    fireEvent.click(screen.getByRole("button", { name: "Retry failed steps…" }));
    const dialog = screen.getByRole("dialog", { name: "Retry the failed steps of 37 Candidates?" });
    fireEvent.click(within(dialog).getByRole("button", { name: "Retry failed steps (37)" }));
    await waitFor(() => expect(retried).toHaveLength(1));
    // The selection is the filter itself, as ListCandidates was called.
    expect(retried[0].selection?.candidateIds).toEqual([]);
    expect(retried[0].selection?.filter).toMatchObject({
      status: CandidateStatus.RUNNING,
      idPrefix: "acme/",
      metadata: { team: "payments" },
      kind: "",
      currentStep: "",
      currentStepStatus: 0,
    });
    expect(retried[0].migrationId).toBe("go-upgrade");
  });

  it("drops the selection when the filter changes, and shows no checkbox to a viewer", async () => {
    serveTable({ path: "/m/go-upgrade", total: 37n });
    fireEvent.click(await screen.findByRole("checkbox", { name: "Select acme/b" }));
    expect(screen.getByRole("toolbar", { name: "Bulk actions" })).toBeTruthy();
    fireEvent.change(screen.getByLabelText("Id starts with"), { target: { value: "acme/" } });
    expect(screen.queryByRole("toolbar", { name: "Bulk actions" })).toBeNull();
  });

  it("offers a viewer no selection", async () => {
    serveTable({ path: "/m/go-upgrade", allowed: [] });
    await screen.findByRole("link", { name: "acme/a" });
    expect(screen.queryByRole("checkbox")).toBeNull();
  });
});

describe("a bulk action", () => {
  it("asks first, naming how many Candidates, then shows each refusal and reads the table again", async () => {
    const retried: BulkRetryStepsRequest[] = [];
    const listed: unknown[] = [];
    serveTable({ path: "/m/go-upgrade", retried, listed });
    fireEvent.click(await screen.findByRole("checkbox", { name: "Select every Candidate on this page" }));
    fireEvent.click(screen.getByRole("button", { name: "Retry failed steps…" }));
    let dialog = screen.getByRole("dialog", { name: "Retry the failed steps of 2 Candidates?" });
    expect(retried).toHaveLength(0);
    const before = listed.length;
    fireEvent.click(within(dialog).getByRole("button", { name: "Retry failed steps (2)" }));
    const result = await within(dialog).findByRole("region", { name: "Bulk result" });
    dialog = screen.getByRole("dialog", { name: "Retry failed steps: what was done" });
    expect(retried[0].selection?.candidateIds).toEqual(["acme/a", "acme/b"]);
    expect(retried[0].selection?.filter).toBeUndefined();
    expect(result.textContent).toContain("1 done");
    expect(result.textContent).toContain("1 refused");
    expect(result.textContent).toContain("0 not attempted");
    const row = within(result).getByRole("link", { name: "acme/b" }).closest("tr")!;
    expect(row.textContent).toContain("refused");
    expect(row.textContent).toContain("TRANSITION_NOT_ALLOWED");
    expect(row.textContent).toContain("step bump-go is open, not failed");
    expect(within(result).queryByRole("link", { name: "acme/a" })).toBeNull();
    await waitFor(() => expect(listed.length).toBeGreaterThan(before));
    fireEvent.click(within(dialog).getByRole("button", { name: "Close" }));
    expect(screen.queryByRole("dialog")).toBeNull();
  });

  it("updates the inputs of the selection with the why asked", async () => {
    const inputsSet: BulkUpdateCandidateInputsRequest[] = [];
    serveTable({ path: "/m/go-upgrade", inputsSet });
    fireEvent.click(await screen.findByRole("checkbox", { name: "Select every Candidate on this page" }));
    fireEvent.click(screen.getByRole("button", { name: "Update inputs…" }));
    const dialog = screen.getByRole("dialog", { name: "Update the inputs of 2 Candidates?" });
    fireEvent.change(within(dialog).getByRole("textbox", { name: /^Ticket/ }), { target: { value: "OPS-9" } });
    fireEvent.change(within(dialog).getByRole("textbox", { name: "Why" }), { target: { value: "one ticket for the wave" } });
    fireEvent.click(within(dialog).getByRole("button", { name: "Update inputs (2)" }));
    await waitFor(() => expect(inputsSet).toHaveLength(1));
    expect(inputsSet[0]).toMatchObject({ inputs: { ticket: "OPS-9" }, removeInputs: [], note: "one ticket for the wave" });
    expect(inputsSet[0].selection?.candidateIds).toEqual(["acme/a", "acme/b"]);
  });
});

describe("a bulk cancel or failed review", () => {
  it("is not sent without its reason or note, as for one Run", async () => {
    const sent: unknown[] = [];
    serveTable({ path: "/m/go-upgrade", listed: sent });
    fireEvent.click(await screen.findByRole("checkbox", { name: "Select every Candidate on this page" }));
    const before = sent.length;
    fireEvent.click(screen.getByRole("button", { name: "Cancel Runs…" }));
    let dialog = screen.getByRole("dialog");
    fireEvent.click(within(dialog).getByRole("button", { name: "Cancel Runs (2)" }));
    expect(within(dialog).getByRole("alert").textContent).toContain("Give a reason");
    fireEvent.click(within(dialog).getByRole("button", { name: "Back" }));
    fireEvent.click(screen.getByRole("button", { name: "Finish reviews…" }));
    dialog = screen.getByRole("dialog");
    fireEvent.click(within(dialog).getByRole("radio", { name: "failed" }));
    fireEvent.click(within(dialog).getByRole("button", { name: "Finish reviews (2)" }));
    expect(within(dialog).getByRole("alert").textContent).toContain("Say why the reviews failed");
    // Nothing was asked of the server but the table's own reads.
    expect(sent.length).toBe(before);
  });
});

describe("the Start rollout dialog", () => {
  it("previews the selection, waits while Candidates miss inputs, and starts with the settings", async () => {
    const previewed: PreviewSelectionRequest[] = [];
    const started: StartRolloutRequest[] = [];
    serveTable({ path: "/m/go-upgrade", previewed, started });
    fireEvent.click(await screen.findByRole("checkbox", { name: "Select every Candidate on this page" }));
    fireEvent.click(screen.getByRole("button", { name: "Start rollout…" }));
    const dialog = await screen.findByRole("dialog", { name: "Start a rollout of 2 Candidates" });
    const start = within(dialog).getByRole("button", { name: "Start rollout of 2 Candidates" }) as HTMLButtonElement;
    const missing = await within(dialog).findByRole("list", { name: "Candidates missing inputs" });
    expect(missing.textContent).toContain("acme/a: ticket");
    expect(start.disabled).toBe(true);
    expect(previewed[0]).toMatchObject({ migrationId: "go-upgrade", sampleSize: 3, defaultInputs: {} });
    expect(previewed[0].selection?.candidateIds).toEqual(["acme/a", "acme/b"]);

    fireEvent.change(within(dialog).getByLabelText(/Ticket/), { target: { value: "OPS-9" } });
    expect(start.disabled).toBe(true); // until the preview of these inputs answers
    await waitFor(() => expect(start.disabled).toBe(false), { timeout: 3000 });
    expect(previewed.at(-1)?.defaultInputs).toEqual({ ticket: "OPS-9" });
    expect(within(dialog).queryByRole("list", { name: "Candidates missing inputs" })).toBeNull();
    expect(within(dialog).getByLabelText("Diff of go.mod").textContent).toContain("go 1.23");

    fireEvent.change(within(dialog).getByLabelText(/^Max in flight/), { target: { value: "25" } });
    fireEvent.change(within(dialog).getByLabelText(/^Canary size/), { target: { value: "3" } });
    fireEvent.click(within(dialog).getByLabelText("after the canary: continue by itself"));
    fireEvent.change(within(dialog).getByLabelText(/^Max starts per minute/), { target: { value: "30" } });
    fireEvent.change(within(dialog).getByLabelText(/^Why/), { target: { value: "wave 2: payments signed off" } });
    fireEvent.click(start);
    await waitFor(() => expect(started).toHaveLength(1));
    expect(started[0]).toMatchObject({
      migrationId: "go-upgrade",
      defaultInputs: { ticket: "OPS-9" },
      settings: {
        maxInFlight: 25,
        canarySize: 3,
        afterCanary: CanaryContinuation.AUTOMATIC,
        pauseOnFailures: { failures: 3, window: 20 },
        maxStartsPerMinute: 30,
        maxOpenPullRequests: 0,
      },
      reason: "wave 2: payments signed off",
    });
    expect(started[0].selection?.candidateIds).toEqual(["acme/a", "acme/b"]);
    // Started: the rollout's page.
    expect(await screen.findByRole("heading", { level: 1, name: "rollout page ro-0123456789ab" })).toBeTruthy();
  });

  it("shows the server's refusal with its ErrorInfo reason", async () => {
    const err = new ConnectError("2 Candidates miss required inputs", Code.FailedPrecondition);
    err.details.push({
      type: "google.rpc.ErrorInfo",
      value: errorInfo("MISSING_INPUTS", { count: "2", candidates: "acme/a,acme/b", missing: "ticket" }),
    });
    serveTable({ path: "/m/go-upgrade", startError: err });
    fireEvent.click(await screen.findByRole("checkbox", { name: "Select acme/a" }));
    fireEvent.click(screen.getByRole("button", { name: "Start rollout…" }));
    const dialog = await screen.findByRole("dialog");
    fireEvent.change(within(dialog).getByLabelText(/Ticket/), { target: { value: "OPS-9" } });
    fireEvent.click(within(dialog).getByLabelText(/Pause by itself/)); // off
    const start = within(dialog).getByRole("button", { name: "Start rollout of 1 Candidate" }) as HTMLButtonElement;
    await waitFor(() => expect(start.disabled).toBe(false), { timeout: 3000 });
    fireEvent.click(start);
    const alert = await within(dialog).findByText(/failed_precondition: 2 Candidates miss required inputs \(MISSING_INPUTS\)/);
    expect(alert).toBeTruthy();
    expect(within(dialog).getByText(/e\.g\. acme\/a,acme\/b \(missing ticket\)/)).toBeTruthy();
  });
});

describe("the rollout page", () => {
  const base = create(RolloutSchema, {
    id: "ro-0123456789ab",
    migrationId: "go-upgrade",
    state: RolloutState.RUNNING,
    createdBy: "ana",
    selection: { filter: { status: CandidateStatus.NOT_STARTED, idPrefix: "acme/" } },
    defaultInputs: { ticket: "OPS-9" },
    settings: { maxInFlight: 10, canarySize: 2, afterCanary: CanaryContinuation.APPROVAL, pauseOnFailures: { failures: 3, window: 20 } },
    progress: { planned: 40, started: 14, inFlight: 10, completed: 4, failed: 2, waiting: 26, heldBy: "max in flight (10) reached" },
    version: 3n,
  });

  function serveRollout(opts: {
    allowed?: string[];
    versions: Rollout[]; // what each GetRollout answers in turn (then the last again)
    reads: number[]; // one entry per GetRollout
    feed?: Event[]; // sent on the fleet feed once the page has read the rollout
    paused?: PauseRolloutRequest[];
    updated?: UpdateRolloutRequest[];
    resumed?: ResumeRolloutRequest[];
  }) {
    return mount({
      path: "/m/go-upgrade/r/ro-0123456789ab",
      route: "/m/:migrationId/r/:rolloutId",
      element: <RolloutPage />,
      routes: (r) => {
        r.service(RegistryService, {
          getCaller: () => ({ authenticated: true, allowedProcedures: opts.allowed ?? operator }),
          getMigration: () => ({ migration }),
        });
        r.service(RolloutService, {
          getRollout: (req) => {
            expect(req).toMatchObject({ migrationId: "go-upgrade", rolloutId: "ro-0123456789ab" });
            const rollout = opts.versions[Math.min(opts.reads.length, opts.versions.length - 1)];
            opts.reads.push(1);
            return { rollout };
          },
          pauseRollout: (req) => {
            opts.paused?.push(req);
            return {
              rollout: { ...base, state: RolloutState.PAUSED, stateReason: req.reason, stateActor: "ana", version: 9n },
            };
          },
          resumeRollout: (req) => {
            opts.resumed?.push(req);
            return { rollout: { ...base, state: RolloutState.RUNNING, stateReason: req.reason, stateActor: "ana", version: 10n } };
          },
          updateRollout: (req) => {
            opts.updated?.push(req);
            return { rollout: { ...base, settings: { ...base.settings!, maxInFlight: req.settings!.maxInFlight }, version: 11n } };
          },
        });
        r.service(HistoryService, {
          async *watchEvents(_req, ctx) {
            yield { update: { case: "heartbeat", value: {} } };
            while (opts.reads.length === 0) await new Promise((r) => setTimeout(r, 10));
            for (const e of opts.feed ?? []) yield { update: { case: "event", value: e } };
            await untilAborted(ctx.signal);
          },
        });
      },
    });
  }

  it("shows its progress live, read again when the feed has an event of its Migration's Runs, pauses it and resumes it, asking why", async () => {
    const reads: number[] = [];
    const paused: PauseRolloutRequest[] = [];
    const resumed: ResumeRolloutRequest[] = [];
    const next = create(RolloutSchema, { ...base, progress: { ...base.progress!, completed: 6, inFlight: 8, failed: 1 }, version: 4n });
    const completed = create(EventSchema, { id: "9-0", kind: EventKind.RUN_COMPLETED, migrationId: "go-upgrade", candidateId: "acme/b" });
    const elsewhere = create(EventSchema, { id: "9-1", kind: EventKind.RUN_COMPLETED, migrationId: "node-20", candidateId: "acme/b" });
    serveRollout({ versions: [base, next], reads, paused, resumed, feed: [elsewhere, completed] });
    expect((await screen.findByRole("heading", { level: 1 })).textContent).toBe("Rollout ro-0123456789ab");
    const bar = screen.getByRole("progressbar", { name: "Rollout progress" });
    expect(bar.getAttribute("aria-valuemax")).toBe("40");
    expect(screen.getByText("max in flight (10) reached")).toBeTruthy();
    expect(screen.getByText(/status not_started, id starts with acme\//)).toBeTruthy();
    // A Run of its Migration completed: the rollout is read again (another
    // Migration's event reads nothing).
    await waitFor(() => expect(screen.getByRole("progressbar").getAttribute("aria-valuetext")).toMatch(/^6 of 40 completed, 8 in flight \(1 failed\)/), {
      timeout: 3000,
    });
    expect(reads).toHaveLength(2);
    expect(within(screen.getByLabelText("in flight")).getByText("8")).toBeTruthy();
    expect(within(screen.getByLabelText("waiting")).getByText("26")).toBeTruthy();

    // Pause asks why, and sends what the operator wrote.
    fireEvent.click(screen.getByRole("button", { name: "Pause…" }));
    const dialog = screen.getByRole("dialog", { name: "Pause rollout ro-0123456789ab?" });
    expect(paused).toHaveLength(0);
    fireEvent.change(within(dialog).getByRole("textbox"), { target: { value: "the payments team asked" } });
    fireEvent.click(within(dialog).getByRole("button", { name: "Pause" }));
    await waitFor(() => expect(paused).toHaveLength(1));
    expect(paused[0]).toMatchObject({ migrationId: "go-upgrade", rolloutId: "ro-0123456789ab", reason: "the payments team asked" });
    expect(await screen.findByRole("button", { name: "Resume…" })).toBeTruthy();
    expect(screen.getByText("the payments team asked")).toBeTruthy();
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(screen.queryByRole("button", { name: "Pause…" })).toBeNull();

    // Resume asks why too: Back sends nothing; the reason typed is sent and
    // shown as the rollout's.
    fireEvent.click(screen.getByRole("button", { name: "Resume…" }));
    let resuming = screen.getByRole("dialog", { name: "Resume rollout ro-0123456789ab?" });
    fireEvent.click(within(resuming).getByRole("button", { name: "Back" }));
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(resumed).toHaveLength(0);
    fireEvent.click(screen.getByRole("button", { name: "Resume…" }));
    resuming = screen.getByRole("dialog", { name: "Resume rollout ro-0123456789ab?" });
    fireEvent.change(within(resuming).getByRole("textbox"), { target: { value: " payments is done with its freeze " } });
    fireEvent.click(within(resuming).getByRole("button", { name: "Resume" }));
    await waitFor(() => expect(resumed).toHaveLength(1));
    expect(resumed[0]).toMatchObject({ migrationId: "go-upgrade", rolloutId: "ro-0123456789ab", reason: "payments is done with its freeze" });
    expect(await screen.findByText("payments is done with its freeze")).toBeTruthy();
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(screen.getByRole("button", { name: "Pause…" })).toBeTruthy();
  });

  it("asks for approval after the canary, and changes max in flight", async () => {
    const updated: UpdateRolloutRequest[] = [];
    const resumed: ResumeRolloutRequest[] = [];
    const waiting = create(RolloutSchema, { ...base, state: RolloutState.AWAITING_APPROVAL, stateReason: "the canary wave succeeded" });
    serveRollout({ versions: [waiting], reads: [], updated, resumed });
    // The approval asks why (optional), and sends nothing of its own
    // when left empty.
    fireEvent.click(await screen.findByRole("button", { name: "Approve and continue…" }));
    const approving = screen.getByRole("dialog", { name: "Approve rollout ro-0123456789ab and continue?" });
    expect(resumed).toHaveLength(0);
    fireEvent.click(within(approving).getByRole("button", { name: "Approve" }));
    await waitFor(() => expect(resumed).toHaveLength(1));
    expect(resumed[0].reason).toBe("");
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    fireEvent.click(screen.getByRole("button", { name: "Change max in flight…" }));
    const form = screen.getByRole("form", { name: "Change max in flight" });
    fireEvent.change(within(form).getByRole("spinbutton"), { target: { value: "50" } });
    fireEvent.change(within(form).getByRole("textbox", { name: "Why" }), { target: { value: "the runners scaled up" } });
    fireEvent.click(within(form).getByRole("button", { name: "Set" }));
    await waitFor(() => expect(updated).toHaveLength(1));
    expect(updated[0].updateMask).toEqual(["max_in_flight"]);
    expect(updated[0].settings?.maxInFlight).toBe(50);
    expect(updated[0].reason).toBe("the runners scaled up");
  });

  it("offers a viewer no control", async () => {
    serveRollout({ allowed: [], versions: [base], reads: [] });
    await screen.findByRole("progressbar");
    expect(screen.queryByRole("group", { name: "Rollout actions" })?.querySelectorAll("button").length ?? 0).toBe(0);
  });
});

describe("a Run started by a rollout", () => {
  it("links to its rollout from the Candidate page", async () => {
    const run = create(RunSchema, {
      id: "go-upgrade__acme/a",
      migrationId: "go-upgrade",
      candidateId: "acme/a",
      status: RunStatus.RUNNING,
      rolloutId: "ro-0123456789ab",
      steps: [{ name: "bump-go", type: "open-pr" }],
      stepResults: [{ stepName: "bump-go", status: StepStatus.OPEN, attempt: 1 }],
    });
    mount({
      path: "/m/go-upgrade/c/acme/a",
      route: "/m/:migrationId/c/*",
      element: <CandidatePage />,
      routes: (r) => {
        r.service(RegistryService, { getCaller: () => ({ allowedProcedures: [] }), getMigration: () => ({ migration }) });
        r.service(DiscoveryService, { getCandidate: () => ({ candidate: candidates[0] }) });
        r.service(RunService, { getRun: () => ({ run }) });
        r.service(HistoryService, { listEvents: () => ({ events: [] }) });
      },
    });
    const link = await screen.findByRole("link", { name: "ro-0123456789ab" });
    expect(link.getAttribute("href")).toBe("/m/go-upgrade/r/ro-0123456789ab");
    expect(link.parentElement?.textContent).toBe("started by rollout ro-0123456789ab");
  });
});
