import { describe, expect, it } from "vitest";
import { render, screen, fireEvent } from "@testing-library/react";
import { create } from "@bufbuild/protobuf";
import { listRequest, readFilters } from "./components/CandidateTable";
import { PreviewView } from "./components/Preview";
import { getToken, takeTokenFromURL } from "./auth";
import { CandidateStatus } from "./gen/loom/v1/candidate_pb";
import { CandidateOrder } from "./gen/loom/v1/discovery_service_pb";
import { FileDiffStatus, StepPreviewSchema } from "./gen/loom/v1/preview_pb";
import { StepResultSchema, StepStatus } from "./gen/loom/v1/run_pb";
import { DispatchTrouble } from "./components/DispatchTrouble";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";

describe("the Candidate table's URL", () => {
  it("holds every filter, the order and the page, and becomes the request", () => {
    const f = readFilters(
      new URLSearchParams("status=running&kind=service&step=bump-go&step_status=open&q=acme/&meta=team=pay=ments&order=last_change&desc=1&page=tok"),
    );
    expect(listRequest("go-upgrade", f, 50)).toEqual({
      migrationId: "go-upgrade",
      status: CandidateStatus.RUNNING,
      kind: "service",
      currentStep: "bump-go",
      currentStepStatus: StepStatus.OPEN,
      idPrefix: "acme/",
      metadata: { team: "pay=ments" },
      orderBy: CandidateOrder.LAST_CHANGE,
      descending: true,
      pageSize: 50,
      pageToken: "tok",
    });
  });
  it("defaults to everything in id order", () => {
    const r = listRequest("m", readFilters(new URLSearchParams("")), 50);
    expect(r.status).toBe(0);
    expect(r.orderBy).toBe(CandidateOrder.ID);
    expect(r.metadata).toEqual({});
  });
});

describe("the preview", () => {
  it("shows each file's diff, skipped steps and errors, unified or side by side", () => {
    const steps = [
      create(StepPreviewSchema, {
        stepName: "bump-go",
        diffs: [{ path: "go.mod", before: "module x\n\ngo 1.19\n", after: "module x\n\ngo 1.23\n", status: FileDiffStatus.MODIFIED }],
      }),
      create(StepPreviewSchema, { stepName: "pin-toolchain", skipped: true, skipReason: "already pinned" }),
      create(StepPreviewSchema, { stepName: "review", error: "the Migrator broke" }),
    ];
    const { container } = render(<PreviewView steps={steps} />);
    const diff = screen.getByLabelText("Diff of go.mod");
    expect(diff.textContent).toContain("go 1.19");
    expect(diff.textContent).toContain("go 1.23");
    expect(screen.getByText("already pinned")).toBeTruthy();
    expect(screen.getByRole("alert").textContent).toBe("the Migrator broke");
    fireEvent.click(screen.getByRole("button", { name: "Side by side" }));
    expect(container.querySelector(".d2h-file-side-diff")).not.toBeNull();
  });
  it("escapes the files' text", () => {
    const steps = [
      create(StepPreviewSchema, {
        stepName: "s",
        diffs: [{ path: "x.html", before: "", after: "<img src=x onerror=alert(1)>", status: FileDiffStatus.ADDED }],
      }),
    ];
    const { container } = render(<PreviewView steps={steps} />);
    expect(container.querySelector("img")).toBeNull();
  });
});

describe("signing in from loom dev's URL", () => {
  it("starts the browser's session with the token, keeps nothing, and removes it from the address bar", async () => {
    window.history.replaceState(null, "", "/m/x#token=loom_abc&other=1");
    const bodies: unknown[] = [];
    const fetchFn = (async (_url: string, init: RequestInit) => {
      bodies.push(JSON.parse(init.body as string));
      return new Response(JSON.stringify({ subject: "dev-operator", role: "operator", csrfToken: "c" }));
    }) as unknown as typeof fetch;
    await takeTokenFromURL(window.location, window.history, fetchFn);
    expect(bodies).toEqual([{ token: "loom_abc" }]);
    expect(getToken()).toBe("");
    expect(window.location.hash).toBe("#other=1");
    expect(window.location.pathname).toBe("/m/x");
  });
});

describe("a step Loom cannot dispatch", () => {
  it("says so with the tries, the last error and the next try", () => {
    const step = create(StepResultSchema, {
      stepName: "bump-go",
      status: StepStatus.IN_PROGRESS,
      dispatchCount: 1,
      dispatchFailures: 3,
      lastDispatchError: "the Migrator at http://m:9 is unavailable: connection refused",
      nextDispatchTime: timestampFromDate(new Date("2026-12-07T10:00:00Z")),
    });
    const { container } = render(<DispatchTrouble step={step} />);
    const alert = container.querySelector('[role="alert"]')!;
    expect(alert.textContent).toContain("3 tries failed");
    expect(alert.textContent).toContain("connection refused");
    expect(alert.textContent).toContain("Next try");
  });
  it("says nothing when the step was handed over, and counts dispatches past a lease", () => {
    const { container } = render(<DispatchTrouble step={create(StepResultSchema, { dispatchCount: 1 })} />);
    expect(container.textContent).toBe("");
    const again = render(<DispatchTrouble step={create(StepResultSchema, { dispatchCount: 3 })} />);
    expect(again.container.textContent).toContain("dispatched 3 times");
  });
});
