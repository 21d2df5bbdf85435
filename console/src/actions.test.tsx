import { afterEach, describe, expect, it, vi } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { Code, ConnectError } from "@connectrpc/connect";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { mount, untilAborted } from "./test/mount";
import { CandidatePage } from "./pages/CandidatePage";
import { RegistryService } from "./gen/loom/v1/registry_service_pb";
import { DiscoveryService } from "./gen/loom/v1/discovery_service_pb";
import {
  RunService,
  type CancelRunRequest,
  type FinishReviewRequest,
  type MarkStepMergedRequest,
  type RetryStepRequest,
} from "./gen/loom/v1/run_service_pb";
import { EventKind, EventSchema, HistoryService, type Event } from "./gen/loom/v1/history_service_pb";
import { MigrationSchema } from "./gen/loom/v1/migration_pb";
import { CandidateSchema, CandidateStatus } from "./gen/loom/v1/candidate_pb";
import { RunSchema, RunStatus, StepStatus, type Run } from "./gen/loom/v1/run_pb";

const procedures = (...ms: { parent: { typeName: string }; name: string }[]) => ms.map((m) => `/${m.parent.typeName}/${m.name}`);

const migration = create(MigrationSchema, { id: "go-upgrade", name: "Go 1.23" });
const candidate = create(CandidateSchema, { id: "acme/billing", kind: "service", status: CandidateStatus.RUNNING });

// runAt is a running Run of three steps whose current step is step, in
// status, at attempt 2 (the steps before it merged).
function runAt(step: "bump-go" | "deploy", status: StepStatus, more: MessageInitShape<typeof RunSchema> = {}): Run {
  const steps = [
    { name: "bump-go", type: "pull_request" },
    { name: "deploy", type: "review" },
    { name: "verify", type: "review" },
  ];
  const results = [];
  for (const s of steps) {
    if (s.name === step) {
      results.push({ stepName: s.name, status, attempt: 2, prUrl: status === StepStatus.OPEN ? "https://github.com/acme/billing/pull/7" : "" });
      break;
    }
    results.push({ stepName: s.name, status: StepStatus.MERGED, attempt: 1 });
  }
  return create(RunSchema, {
    id: "go-upgrade__acme/billing",
    migrationId: "go-upgrade",
    candidateId: "acme/billing",
    execution: 1n,
    status: RunStatus.RUNNING,
    steps,
    currentStep: step,
    currentStepStatus: status,
    stepResults: results,
    ...more,
  });
}

type Sent = {
  reviews?: number;
  reviewed?: FinishReviewRequest;
  merged?: MarkStepMergedRequest;
  cancelled?: CancelRunRequest;
  retries?: number;
  retried?: RetryStepRequest;
};

// serve mounts the Candidate page over a server where the caller may do
// everything, the Candidate's Run is run, and what the page sends is
// recorded in sent; refuse makes each action refused; events are the
// Candidate's history.
function serve(run: Run, sent: Sent, refuse?: ConnectError, events: Event[] = []) {
  const act = <T,>(record: (req: T) => void) => (req: T) => {
    if (refuse) throw refuse;
    record(req);
    return {};
  };
  return mount({
    path: "/m/go-upgrade/c/acme%2Fbilling",
    route: "/m/:migrationId/c/*",
    element: <CandidatePage />,
    routes: (r) => {
      r.service(RegistryService, {
        getCaller: () => ({
          authenticated: true,
          allowedProcedures: procedures(
            RunService.method.finishReview,
            RunService.method.markStepMerged,
            RunService.method.cancelRun,
            RunService.method.retryStep,
          ),
        }),
        getMigration: () => ({ migration }),
      });
      r.service(DiscoveryService, { getCandidate: () => ({ candidate }) });
      r.service(RunService, {
        getRun: () => ({ run }),
        finishReview: act((req: FinishReviewRequest) => {
          sent.reviews = (sent.reviews ?? 0) + 1;
          return (sent.reviewed = req);
        }),
        markStepMerged: act((req: MarkStepMergedRequest) => (sent.merged = req)),
        cancelRun: act((req: CancelRunRequest) => (sent.cancelled = req)),
        retryStep: act((req: RetryStepRequest) => {
          sent.retries = (sent.retries ?? 0) + 1;
          return (sent.retried = req);
        }),
      });
      r.service(HistoryService, {
        listEvents: () => ({ events }),
        async *watchEvents(_req, ctx) {
          await untilAborted(ctx.signal);
        },
      });
    },
  });
}

const submitOf = (dialog: HTMLElement, name: string) => within(dialog).getByRole("button", { name }) as HTMLButtonElement;
const noteOf = (dialog: HTMLElement) => within(dialog).getByRole("textbox") as HTMLTextAreaElement;

afterEach(() => vi.restoreAllMocks());

describe("finishing a review", () => {
  it("as failed needs a note, sends it with the outcome and the attempt, and takes Enter", async () => {
    const sent: Sent = {};
    serve(runAt("deploy", StepStatus.AWAITING_REVIEW), sent);
    fireEvent.click(await screen.findByRole("button", { name: "Review failed…" }));
    const dialog = screen.getByRole("dialog", { name: "Finish the review of deploy as failed?" });
    const note = noteOf(dialog);
    // Focus starts in the note, which is required.
    expect(document.activeElement).toBe(note);
    expect(note.required).toBe(true);
    expect(submitOf(dialog, "Fail the review").disabled).toBe(true);
    fireEvent.keyDown(note, { key: "Enter" });
    fireEvent.change(note, { target: { value: "   " } });
    expect(submitOf(dialog, "Fail the review").disabled).toBe(true);
    fireEvent.keyDown(note, { key: "Enter" });
    fireEvent.submit(note.form!);
    fireEvent.change(note, { target: { value: "  canary error rate doubled  " } });
    expect(submitOf(dialog, "Fail the review").disabled).toBe(false);
    // Shift+Enter is a new line, not a submit.
    fireEvent.keyDown(note, { key: "Enter", shiftKey: true });
    fireEvent.keyDown(note, { key: "Enter" });
    await waitFor(() => expect(sent.reviewed?.note).toBe("canary error rate doubled"));
    // The one request is the last attempt's: none of the blank ones, nor
    // Shift+Enter, sent anything.
    expect(sent.reviews).toBe(1);
    expect(sent.reviewed).toMatchObject({
      runId: "go-upgrade__acme/billing",
      stepName: "deploy",
      attempt: 2,
      outcome: StepStatus.FAILED,
      note: "canary error rate doubled",
    });
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
  });

  it("as done asks first, with an optional note sent as typed; Escape sends nothing", async () => {
    const sent: Sent = {};
    serve(runAt("deploy", StepStatus.AWAITING_REVIEW), sent);
    fireEvent.click(await screen.findByRole("button", { name: "Review done…" }));
    let dialog = screen.getByRole("dialog", { name: "Finish the review of deploy as done?" });
    expect(noteOf(dialog).required).toBe(false);
    fireEvent.keyDown(noteOf(dialog), { key: "Escape" });
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(sent.reviewed).toBeUndefined();

    fireEvent.click(screen.getByRole("button", { name: "Review done…" }));
    dialog = screen.getByRole("dialog", { name: "Finish the review of deploy as done?" });
    expect(submitOf(dialog, "Finish the review").disabled).toBe(false);
    fireEvent.change(noteOf(dialog), { target: { value: "dashboards green for a day" } });
    fireEvent.click(submitOf(dialog, "Finish the review"));
    await waitFor(() => expect(sent.reviewed).toBeDefined());
    expect(sent.reviewed).toMatchObject({ stepName: "deploy", attempt: 2, outcome: StepStatus.COMPLETED, note: "dashboards green for a day" });
  });

  it("as done without a note sends no note of the console's own", async () => {
    const sent: Sent = {};
    serve(runAt("deploy", StepStatus.AWAITING_REVIEW), sent);
    fireEvent.click(await screen.findByRole("button", { name: "Review done…" }));
    const dialog = screen.getByRole("dialog", { name: "Finish the review of deploy as done?" });
    fireEvent.keyDown(noteOf(dialog), { key: "Enter" });
    await waitFor(() => expect(sent.reviewed).toBeDefined());
    expect(sent.reviewed!.note).toBe("");
  });

  it("shows the server's refusal in the dialog, which stays open", async () => {
    serve(runAt("deploy", StepStatus.AWAITING_REVIEW), {}, new ConnectError("step deploy is not awaiting review", Code.FailedPrecondition));
    fireEvent.click(await screen.findByRole("button", { name: "Review failed…" }));
    const dialog = screen.getByRole("dialog", { name: "Finish the review of deploy as failed?" });
    fireEvent.change(noteOf(dialog), { target: { value: "broke staging" } });
    fireEvent.click(submitOf(dialog, "Fail the review"));
    expect((await within(dialog).findByRole("alert")).textContent).toContain("failed_precondition: step deploy is not awaiting review");
    expect(noteOf(dialog).value).toBe("broke staging");
  });
});

describe("retrying a failed step", () => {
  it("asks why first, with an optional note sent as typed with the failed attempt; Back sends nothing", async () => {
    const sent: Sent = {};
    serve(runAt("bump-go", StepStatus.FAILED), sent);
    fireEvent.click(await screen.findByRole("button", { name: "Retry step…" }));
    let dialog = screen.getByRole("dialog", { name: "Retry bump-go?" });
    // Nothing is sent by the click alone, and Back sends nothing either.
    expect(sent.retries).toBeUndefined();
    fireEvent.click(within(dialog).getByRole("button", { name: "Back" }));
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(sent.retries).toBeUndefined();

    fireEvent.click(screen.getByRole("button", { name: "Retry step…" }));
    dialog = screen.getByRole("dialog", { name: "Retry bump-go?" });
    const note = noteOf(dialog);
    expect(document.activeElement).toBe(note);
    expect(note.required).toBe(false);
    expect(within(dialog).getByText(/dispatched again as attempt 3/)).toBeTruthy();
    fireEvent.change(note, { target: { value: "  the runner ran out of disk  " } });
    fireEvent.keyDown(note, { key: "Enter" });
    await waitFor(() => expect(sent.retried).toBeDefined());
    expect(sent.retries).toBe(1);
    expect(sent.retried).toMatchObject({ runId: "go-upgrade__acme/billing", stepName: "bump-go", attempt: 2, note: "the runner ran out of disk" });
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
  });

  it("without a note sends none of the console's own", async () => {
    const sent: Sent = {};
    serve(runAt("bump-go", StepStatus.FAILED), sent);
    fireEvent.click(await screen.findByRole("button", { name: "Retry step…" }));
    fireEvent.click(submitOf(screen.getByRole("dialog", { name: "Retry bump-go?" }), "Retry the step"));
    await waitFor(() => expect(sent.retried).toBeDefined());
    expect(sent.retried!.note).toBe("");
  });

  it("shows the retry's note in the Candidate's history", async () => {
    const retried = create(EventSchema, {
      id: "5-0",
      kind: EventKind.STEP_RETRIED,
      migrationId: "go-upgrade",
      candidateId: "acme/billing",
      step: "bump-go",
      attempt: 1,
      actor: "ana",
      details: { failed_attempt: "1", note: "the runner ran out of disk" },
    });
    serve(runAt("bump-go", StepStatus.FAILED), {}, undefined, [retried]);
    expect(await screen.findByText("the runner ran out of disk")).toBeTruthy();
  });
});

describe("marking a step merged", () => {
  it("asks first, naming the pull request, and sends the note typed", async () => {
    const sent: Sent = {};
    serve(runAt("bump-go", StepStatus.OPEN), sent);
    fireEvent.click(await screen.findByRole("button", { name: "Mark merged…" }));
    const dialog = screen.getByRole("dialog", { name: "Mark bump-go merged?" });
    expect(within(dialog).getByRole("link", { name: "https://github.com/acme/billing/pull/7" })).toBeTruthy();
    expect(document.activeElement).toBe(noteOf(dialog));
    fireEvent.change(noteOf(dialog), { target: { value: "merged by hand after a CI flake" } });
    fireEvent.keyDown(noteOf(dialog), { key: "Enter" });
    await waitFor(() => expect(sent.merged).toBeDefined());
    expect(sent.merged).toMatchObject({ runId: "go-upgrade__acme/billing", stepName: "bump-go", attempt: 2, note: "merged by hand after a CI flake" });
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
  });
});

describe("cancelling a Run", () => {
  it("asks for a reason in the page, never the browser's prompt, and sends it", async () => {
    const prompt = vi.spyOn(window, "prompt");
    const sent: Sent = {};
    serve(runAt("bump-go", StepStatus.OPEN), sent);
    fireEvent.click(await screen.findByRole("button", { name: "Cancel Run…" }));
    let dialog = screen.getByRole("dialog", { name: "Cancel the Run of acme/billing?" });
    expect(document.activeElement).toBe(noteOf(dialog));
    expect(submitOf(dialog, "Cancel the Run").disabled).toBe(true);
    // Back closes it, nothing sent.
    fireEvent.click(within(dialog).getByRole("button", { name: "Back" }));
    expect(screen.queryByRole("dialog")).toBeNull();

    fireEvent.click(screen.getByRole("button", { name: "Cancel Run…" }));
    dialog = screen.getByRole("dialog", { name: "Cancel the Run of acme/billing?" });
    fireEvent.keyDown(noteOf(dialog), { key: "Enter" });
    expect(sent.cancelled).toBeUndefined();
    fireEvent.change(noteOf(dialog), { target: { value: "owners asked to wait for the freeze" } });
    fireEvent.click(submitOf(dialog, "Cancel the Run"));
    await waitFor(() => expect(sent.cancelled).toBeDefined());
    expect(sent.cancelled).toMatchObject({ runId: "go-upgrade__acme/billing", reason: "owners asked to wait for the freeze" });
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    expect(prompt).not.toHaveBeenCalled();
  });
});

describe("a cancelled Run", () => {
  it("shows its steps as they ended and why it was cancelled, with no step waiting", async () => {
    serve(
      runAt("deploy", StepStatus.AWAITING_REVIEW, {
        status: RunStatus.CANCELLED,
        cancelReason: "owners asked to wait",
        endTime: { seconds: 1_700_000_000n, nanos: 0 },
      }),
      {},
    );
    await screen.findByText(/Cancelled: owners asked to wait/);
    const steps = await screen.findAllByRole("listitem");
    const status = (name: string) => steps.find((li) => li.dataset.step === name)!.dataset.status;
    expect(status("bump-go")).toBe("merged");
    expect(status("deploy")).toBe("cancelled");
    expect(status("verify")).toBe("not_reached");
    expect(steps.find((li) => li.dataset.step === "deploy")!.textContent).toContain("was awaiting review when the Run was cancelled");
    expect(screen.queryByText("awaiting review")).toBeNull();
    expect(screen.queryByText("pending")).toBeNull();
    // Nothing is offered on a cancelled Run.
    expect(screen.queryByRole("button", { name: /Review|Mark merged|Cancel Run/ })).toBeNull();
  });
});
