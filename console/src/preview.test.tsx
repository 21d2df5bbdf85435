import { afterEach, describe, expect, it, vi } from "vitest";
import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { mount, untilAborted } from "./test/mount";
import { CandidatePage } from "./pages/CandidatePage";
import { PreviewView } from "./components/Preview";
import { GetCallerResponseSchema, RegistryService } from "./gen/loom/v1/registry_service_pb";
import { mayPreviewWhereAllowed } from "./data/registry";
import { DiscoveryService } from "./gen/loom/v1/discovery_service_pb";
import { HistoryService } from "./gen/loom/v1/history_service_pb";
import { RunService, type PreviewRunRequest, type StartRunRequest } from "./gen/loom/v1/run_service_pb";
import { MigrationSchema, type Migration } from "./gen/loom/v1/migration_pb";
import { CandidateSchema, CandidateStatus } from "./gen/loom/v1/candidate_pb";
import { FileDiffStatus, StepPreviewSchema, type StepPreview } from "./gen/loom/v1/preview_pb";

const procedures = (...ms: { parent: { typeName: string }; name: string }[]) => ms.map((m) => `/${m.parent.typeName}/${m.name}`);

const bump = create(StepPreviewSchema, {
  stepName: "bump-go",
  diffs: [{ repo: "acme/billing", path: "go.mod", before: "go 1.21\n", after: "go 1.23\n", status: FileDiffStatus.MODIFIED }],
});
// What pullrequest.Steps.Preview answers for a review step.
const review = create(StepPreviewSchema, { stepName: "review", skipped: true, skipReason: "a manual-review step changes no files" });
const broken = create(StepPreviewSchema, { stepName: "pin-toolchain", error: "toolchain.txt: permission denied" });

describe("a preview's steps", () => {
  it("label a step without file changes as such, never as skipped", () => {
    const quiet = create(StepPreviewSchema, { stepName: "notify" });
    render(<PreviewView steps={[bump, review, broken, quiet]} />);
    const step = (name: string) => screen.getByRole("heading", { name: new RegExp(`^Step ${name}`) });
    expect(step("bump-go").textContent).toBe("Step bump-go file changes");
    expect(step("review").textContent).toBe("Step review no file changes");
    expect(step("pin-toolchain").textContent).toBe("Step pin-toolchain preview failed");
    expect(step("notify").textContent).toBe("Step notify no file changes");
    expect(screen.queryByText(/skipped/)).toBeNull();
    // The Migrator's reason, or a plain sentence when it gives none.
    expect(screen.getByText("a manual-review step changes no files")).toBeTruthy();
    expect(screen.getByText("No file would change in this step.")).toBeTruthy();
  });
});

describe("previewing and starting from the Candidate page", () => {
  const migration = create(MigrationSchema, { id: "go-upgrade", name: "Go 1.23" });
  const candidate = create(CandidateSchema, { id: "acme/billing", kind: "service", status: CandidateStatus.NOT_STARTED });
  const scrolled: Element[] = [];
  afterEach(() => {
    scrolled.length = 0;
    delete (Element.prototype as { scrollIntoView?: unknown }).scrollIntoView;
  });

  // A Loom where the caller may preview and start, the Candidate has no
  // Run, and the Migrator previews the steps given; what is sent is kept.
  function serve(
    steps: StepPreview[],
    sent: { previews: PreviewRunRequest[]; started: StartRunRequest[] },
    opts: { caller?: MessageInitShape<typeof GetCallerResponseSchema>; migration?: Migration } = {},
  ) {
    // jsdom does not scroll: record what the page asks to bring into view.
    Element.prototype.scrollIntoView = vi.fn(function (this: Element) {
      scrolled.push(this);
    });
    return mount({
      path: "/m/go-upgrade/c/acme%2Fbilling",
      route: "/m/:migrationId/c/*",
      element: <CandidatePage />,
      routes: (r) => {
        r.service(RegistryService, {
          getCaller: () =>
            opts.caller ?? { authenticated: true, allowedProcedures: procedures(RunService.method.previewRun, RunService.method.startRun) },
          getMigration: () => ({ migration: opts.migration ?? migration }),
        });
        r.service(DiscoveryService, { getCandidate: () => ({ candidate }) });
        r.service(RunService, {
          watchRun: () => {
            throw new ConnectError("no Run", Code.NotFound);
          },
          previewRun: (req) => {
            sent.previews.push(req);
            return { steps };
          },
          startRun: (req) => {
            sent.started.push(req);
            return {};
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
  }

  it("brings the preview into view and focus, and clears it once the Run starts", async () => {
    const sent = { previews: [] as PreviewRunRequest[], started: [] as StartRunRequest[] };
    serve([bump, review], sent);
    fireEvent.click(await screen.findByRole("button", { name: "Preview or start…" }));
    const form = screen.getByRole("form", { name: "Preview or start a Run" });
    fireEvent.click(within(form).getByRole("button", { name: "Preview" }));
    const heading = await screen.findByRole("heading", { level: 2, name: /^Preview/ });
    await waitFor(() => expect(document.activeElement).toBe(heading));
    expect(scrolled).toContain(heading);
    expect(screen.getByText("1 of 2 steps change files.")).toBeTruthy();
    // Nothing failed: Start starts at once, no question asked.
    expect(within(form).queryByRole("status")).toBeNull();
    fireEvent.click(within(form).getByRole("button", { name: "Start Run" }));
    await waitFor(() => expect(sent.started.length).toBe(1));
    expect(screen.queryByRole("dialog")).toBeNull();
    await waitFor(() => expect(screen.queryByRole("heading", { level: 2, name: /^Preview/ })).toBeNull());
    expect(screen.queryByLabelText("Diff of acme/billing: go.mod")).toBeNull();
  });

  it("warns before starting when a step's preview failed, and starts only when confirmed", async () => {
    const sent = { previews: [] as PreviewRunRequest[], started: [] as StartRunRequest[] };
    serve([bump, broken, review], sent);
    fireEvent.click(await screen.findByRole("button", { name: "Preview or start…" }));
    const form = screen.getByRole("form", { name: "Preview or start a Run" });
    fireEvent.click(within(form).getByRole("button", { name: "Preview" }));
    expect((await within(form).findByRole("status")).textContent).toContain("The preview of pin-toolchain failed");

    // Start asks first; Back (where the focus is) starts nothing.
    fireEvent.click(within(form).getByRole("button", { name: "Start Run" }));
    let dialog = screen.getByRole("dialog", { name: "Start despite the failed preview?" });
    expect(dialog.textContent).toContain("could not preview pin-toolchain");
    expect(document.activeElement).toBe(within(dialog).getByRole("button", { name: "Back" }));
    fireEvent.click(within(dialog).getByRole("button", { name: "Back" }));
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(sent.started).toEqual([]);

    // Escape closes it too; only "Start anyway" starts.
    fireEvent.click(within(form).getByRole("button", { name: "Start Run" }));
    dialog = screen.getByRole("dialog", { name: "Start despite the failed preview?" });
    fireEvent.keyDown(dialog, { key: "Escape" });
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(sent.started).toEqual([]);
    fireEvent.click(within(form).getByRole("button", { name: "Start Run" }));
    fireEvent.click(within(screen.getByRole("dialog")).getByRole("button", { name: "Start anyway" }));
    await waitFor(() => expect(sent.started.length).toBe(1));
    expect(sent.started[0]).toMatchObject({ migrationId: "go-upgrade", candidateId: "acme/billing" });
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    expect(screen.queryByRole("heading", { level: 2, name: /^Preview/ })).toBeNull();
  });

  // A viewer: may read, and preview where the Migration allows it.
  const viewer: MessageInitShape<typeof GetCallerResponseSchema> = {
    authenticated: true,
    role: "viewer",
    allowedProcedures: procedures(RunService.method.getRun, RunService.method.watchRun),
    allowedIfMigrationAllows: procedures(RunService.method.previewRun),
  };

  it("lets a viewer preview, read-only, a Migration whose Migrator allows it, and never start", async () => {
    const sent = { previews: [] as PreviewRunRequest[], started: [] as StartRunRequest[] };
    serve([bump, broken], sent, { caller: viewer, migration: create(MigrationSchema, { ...migration, viewersMayPreview: true }) });
    fireEvent.click(await screen.findByRole("button", { name: "Preview…" }));
    const form = screen.getByRole("form", { name: "Preview a Run" });
    fireEvent.click(within(form).getByRole("button", { name: "Preview" }));
    expect(await screen.findByLabelText("Diff of acme/billing: go.mod")).toBeTruthy();
    expect(sent.previews[0]).toMatchObject({ migrationId: "go-upgrade", candidateId: "acme/billing" });
    // No Start, so no warning about starting either; Enter in the form starts nothing.
    expect(within(form).queryByRole("button", { name: /Start/ })).toBeNull();
    expect(within(form).queryByRole("status")).toBeNull();
    fireEvent.submit(form);
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(sent.started).toEqual([]);
  });

  it("shows an operator Preview whatever the Migration says of viewers", async () => {
    const sent = { previews: [] as PreviewRunRequest[], started: [] as StartRunRequest[] };
    serve([bump], sent);
    expect(await screen.findByRole("button", { name: "Preview or start…" })).toBeTruthy();
  });
});

describe("who may preview", () => {
  const caller = (c: MessageInitShape<typeof GetCallerResponseSchema>) => create(GetCallerResponseSchema, c);
  const open = create(MigrationSchema, { id: "m", viewersMayPreview: true });
  const closed = create(MigrationSchema, { id: "m" });
  it("is a viewer only where the Migrator allows it", () => {
    const viewer = caller({ role: "viewer", allowedIfMigrationAllows: procedures(RunService.method.previewRun) });
    expect(mayPreviewWhereAllowed(viewer, open)).toBe(true);
    expect(mayPreviewWhereAllowed(viewer, closed)).toBe(false);
    // A role the rules do not let preview where allowed, or no answer yet.
    expect(mayPreviewWhereAllowed(caller({ role: "migrator" }), open)).toBe(false);
    expect(mayPreviewWhereAllowed(undefined, open)).toBe(false);
  });
});
