import { describe, expect, it } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { mount } from "./test/mount";
import { MigrationPage } from "./pages/MigrationPage";
import { readColumns } from "./components/CandidateTable";
import { RegistryService } from "./gen/loom/v1/registry_service_pb";
import { CandidateOrder, DiscoveryService, type ListCandidatesRequest } from "./gen/loom/v1/discovery_service_pb";
import { BurndownUnit, MetricsService, type GetMigrationMetricsRequest } from "./gen/loom/v1/metrics_service_pb";
import { MigrationSchema } from "./gen/loom/v1/migration_pb";
import { CandidateSchema, CandidateStatus } from "./gen/loom/v1/candidate_pb";
import { RunStatus, StepStatus } from "./gen/loom/v1/run_pb";

const migration = create(MigrationSchema, {
  id: "go-upgrade",
  name: "Go 1.23",
  description: "Bump the go directive.",
  overview: "## Why\n\nGo 1.19 is out of support.",
  migratorUrl: "http://migrator.internal",
  steps: [
    { name: "bump-go", type: "pull_request", description: "Edits go.mod" },
    { name: "deploy", type: "review" },
  ],
  requiredInputs: [{ name: "ticket", label: "Ticket", description: "The change ticket" }],
  candidateCounts: { total: 3n, completed: 1n, running: 1n, notStarted: 1n },
  candidateKinds: { service: 2n, library: 1n },
});

const fleet = [
  create(CandidateSchema, {
    id: "acme/api",
    kind: "service",
    status: CandidateStatus.RUNNING,
    lastChangeTime: timestampFromMs(Date.now() - 5 * 60_000),
    metadata: { team: "payments", tier: "1" },
  }),
  create(CandidateSchema, {
    id: "acme/billing",
    kind: "library",
    status: CandidateStatus.COMPLETED,
    lastChangeTime: timestampFromMs(Date.now() - 3 * 3600_000),
    metadata: { team: "billing" },
  }),
  create(CandidateSchema, { id: "beta/web", kind: "service", status: CandidateStatus.NOT_STARTED, metadata: { team: "web", lang: "ts" } }),
];

// A server with the Migration and its three Candidates: ListCandidates
// filters by status and id prefix and pages by two, as the real one does;
// every request is recorded.
function serve(opts: { path: string; listed?: ListCandidatesRequest[]; metricsAsked?: GetMigrationMetricsRequest[]; metricsError?: ConnectError }) {
  return mount({
    path: opts.path,
    route: "/m/:migrationId",
    element: <MigrationPage />,
    also: [{ route: "/m/:migrationId/c/*", element: <p>the Candidate page</p> }],
    routes: (r) => {
      r.service(RegistryService, {
        getCaller: () => ({ authenticated: true, allowedProcedures: [] }),
        getMigration: (req) => {
          if (req.migrationId !== migration.id) throw new ConnectError(`no Migration ${req.migrationId}`, Code.NotFound);
          return { migration };
        },
      });
      r.service(DiscoveryService, {
        listCandidates: (req) => {
          opts.listed?.push(req);
          const matching = fleet.filter(
            (c) => (!req.status || c.status === req.status) && (!req.kind || c.kind === req.kind) &&
              c.id.startsWith(req.idPrefix) &&
              Object.entries(req.metadata).every(([k, v]) => c.metadata[k] === v),
          );
          const from = req.pageToken ? Number(req.pageToken) : 0;
          const page = matching.slice(from, from + 2);
          return {
            candidates: page,
            totalSize: BigInt(matching.length),
            nextPageToken: from + 2 < matching.length ? String(from + 2) : "",
            progress: { "acme/api": { runStatus: RunStatus.RUNNING, currentStep: "bump-go", currentStepStatus: StepStatus.OPEN } },
          };
        },
      });
      r.service(MetricsService, {
        getMigrationMetrics: (req) => {
          opts.metricsAsked?.push(req);
          if (opts.metricsError) throw opts.metricsError;
          return {
            metrics: {
              migrationId: req.migrationId,
              candidates: { total: 3n, completed: 1n, running: 1n, notStarted: 1n },
              openPullRequests: 4n,
              awaitingReview: 2n,
              failed: 1n,
              stuckCount: 0n,
              dispatchFailing: 0n,
              currentSteps: [{ step: "bump-go", status: StepStatus.OPEN, count: 4n }],
              burndown: [{ start: timestampFromMs(Date.now() - 3600_000), started: 2n, completed: 1n }],
              stepDurations: [
                { step: "bump-go", count: 3n, failedCount: 1n, p50: { seconds: 90n }, p95: { seconds: 7200n }, max: { seconds: 7300n }, mergedCount: 0n },
              ],
              recentFailures: [{ candidateId: "acme/api", step: "bump-go", attempt: 2, message: "go test failed", time: timestampFromMs(Date.now()) }],
              stuck: [{ candidateId: "beta/web", lastEventTime: timestampFromMs(Date.now() - 2 * 86400_000) }],
            },
          };
        },
      });
    },
  });
}

const rowOf = (id: string) => screen.getByRole("link", { name: id }).closest("tr")!;

describe("the Migration page", () => {
  it("lists the Candidates ListCandidates answers, as the URL's filters asked", async () => {
    const listed: ListCandidatesRequest[] = [];
    serve({ path: "/m/go-upgrade?status=running&step=bump-go&step_status=open&kind=service&meta=team=payments&order=last_change&desc=1", listed });
    expect((await screen.findByRole("heading", { level: 1 })).textContent).toBe("Go 1.23");
    expect(screen.getByText("3 Candidates · 1 completed · 1 running · 1 not started")).toBeTruthy();
    expect(screen.getByRole("tab", { name: "candidates" }).getAttribute("aria-selected")).toBe("true");
    await screen.findByRole("link", { name: "acme/api" });
    // The request is the URL's filter, field by field.
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({
      migrationId: "go-upgrade",
      status: CandidateStatus.RUNNING,
      currentStep: "bump-go",
      currentStepStatus: StepStatus.OPEN,
      kind: "service",
      metadata: { team: "payments" },
      orderBy: CandidateOrder.LAST_CHANGE,
      descending: true,
      pageSize: 50,
      pageToken: "",
    });
    // The filter bar shows the URL's filter.
    expect((screen.getByLabelText("Status") as HTMLSelectElement).value).toBe("running");
    expect((screen.getByLabelText("Current step") as HTMLSelectElement).value).toBe("bump-go");
    expect(screen.getByRole("button", { name: "Remove filter team=payments" })).toBeTruthy();
    expect(screen.getByRole("columnheader", { name: /Last change/ }).getAttribute("aria-sort")).toBe("descending");
    // What the server answered: the one running Candidate, its Run's step.
    expect(screen.getByText(/^1 Candidates match/)).toBeTruthy();
    const row = rowOf("acme/api");
    expect(within(row).getByRole("link").getAttribute("href")).toBe("/m/go-upgrade/c/acme/api");
    expect(within(row).getByText("running")).toBeTruthy();
    expect(row.textContent).toContain("bump-go");
    expect(within(row).getByText("open")).toBeTruthy();
    expect(row.textContent).toContain("5m ago");
    expect(screen.queryByRole("link", { name: "acme/billing" })).toBeNull();
  });

  it("sends a filter change in the request, keeps it in the URL and shows the new answer", async () => {
    const listed: ListCandidatesRequest[] = [];
    const page = serve({ path: "/m/go-upgrade", listed });
    await screen.findByRole("link", { name: "acme/api" });
    expect(listed[0]).toMatchObject({ status: 0, idPrefix: "", orderBy: CandidateOrder.ID, descending: false });
    expect(screen.getByText(/^3 Candidates match/)).toBeTruthy();
    expect(rowOf("acme/billing").textContent).toContain("completed");

    fireEvent.change(screen.getByLabelText("Status"), { target: { value: "completed" } });
    await waitFor(() => expect(screen.queryByRole("link", { name: "acme/api" })).toBeNull());
    expect(listed.at(-1)).toMatchObject({ migrationId: "go-upgrade", status: CandidateStatus.COMPLETED, idPrefix: "" });
    expect(screen.getByText(/^1 Candidates match/)).toBeTruthy();
    expect(screen.getByRole("link", { name: "acme/billing" })).toBeTruthy();
    expect(page.location()).toBe("/m/go-upgrade?status=completed");

    fireEvent.change(screen.getByLabelText("Id starts with"), { target: { value: "beta/" } });
    await screen.findByText("No Candidate matches these filters.");
    expect(listed.at(-1)).toMatchObject({ status: CandidateStatus.COMPLETED, idPrefix: "beta/" });
    expect(page.location()).toBe("/m/go-upgrade?status=completed&q=beta%2F");

    fireEvent.change(screen.getByLabelText("Status"), { target: { value: "" } });
    await screen.findByRole("link", { name: "beta/web" });
    expect(listed.at(-1)).toMatchObject({ status: 0, idPrefix: "beta/" });
    expect(page.location()).toBe("/m/go-upgrade?q=beta%2F");

    // A metadata filter is added with Enter and removed with its chip.
    const meta = screen.getByLabelText("Metadata key=value");
    fireEvent.change(meta, { target: { value: "team=web" } });
    fireEvent.keyDown(meta, { key: "Enter" });
    await waitFor(() => expect(listed.at(-1)?.metadata).toEqual({ team: "web" }));
    expect(page.location()).toBe("/m/go-upgrade?q=beta%2F&meta=team%3Dweb");
    fireEvent.click(screen.getByRole("button", { name: "Remove filter team=web" }));
    await waitFor(() => expect(listed.at(-1)?.metadata).toEqual({}));

    // Sorting by a column asks the server for that order, then reversed.
    fireEvent.click(screen.getByRole("button", { name: "Status" }));
    await waitFor(() => expect(listed.at(-1)).toMatchObject({ orderBy: CandidateOrder.STATUS, descending: false }));
    fireEvent.click(screen.getByRole("button", { name: /^Status ▲/ }));
    await waitFor(() => expect(listed.at(-1)).toMatchObject({ orderBy: CandidateOrder.STATUS, descending: true }));
    expect(page.location()).toBe("/m/go-upgrade?q=beta%2F&order=status&desc=1");
  });

  it("offers the kinds the Migration's Candidates have, with their counts", async () => {
    const listed: ListCandidatesRequest[] = [];
    const page = serve({ path: "/m/go-upgrade", listed });
    await screen.findByRole("link", { name: "acme/api" });
    const kind = screen.getByLabelText("Kind") as HTMLSelectElement;
    expect(kind.tagName).toBe("SELECT");
    expect(Array.from(kind.options).map((o) => [o.value, o.textContent])).toEqual([
      ["", "any"],
      ["library", "library (1)"],
      ["service", "service (2)"],
    ]);
    fireEvent.change(kind, { target: { value: "library" } });
    await waitFor(() => expect(screen.queryByRole("link", { name: "acme/api" })).toBeNull());
    expect(listed.at(-1)).toMatchObject({ kind: "library" });
    expect(screen.getByRole("link", { name: "acme/billing" })).toBeTruthy();
    expect(page.location()).toBe("/m/go-upgrade?kind=library");
  });

  it("keeps a kind from the URL that no Candidate has among the choices", async () => {
    serve({ path: "/m/go-upgrade?kind=job" });
    await screen.findByText("No Candidate matches these filters.");
    const kind = screen.getByLabelText("Kind") as HTMLSelectElement;
    expect(kind.value).toBe("job");
    expect(kind.selectedOptions[0].textContent).toBe("job (0)");
  });

  it("clears every filter at once, in the request and the URL, and keeps the sort", async () => {
    const listed: ListCandidatesRequest[] = [];
    const page = serve({ path: "/m/go-upgrade?status=running&kind=service&step=bump-go&step_status=open&q=acme/&meta=team=payments&order=status&desc=1", listed });
    await screen.findByRole("link", { name: "acme/api" });
    fireEvent.change(screen.getByLabelText("Metadata key=value"), { target: { value: "half=typed" } });
    fireEvent.click(screen.getByRole("button", { name: "Clear filters" }));
    await screen.findByText(/^3 Candidates match/);
    expect(listed.at(-1)).toMatchObject({
      status: 0,
      kind: "",
      currentStep: "",
      currentStepStatus: 0,
      idPrefix: "",
      metadata: {},
      orderBy: CandidateOrder.STATUS,
      descending: true,
    });
    expect(page.location()).toBe("/m/go-upgrade?order=status&desc=1");
    expect((screen.getByLabelText("Kind") as HTMLSelectElement).value).toBe("");
    expect((screen.getByLabelText("Metadata key=value") as HTMLInputElement).value).toBe("");
    expect(screen.queryByRole("button", { name: /^Remove filter/ })).toBeNull();
    expect((screen.getByRole("button", { name: "Clear filters" }) as HTMLButtonElement).disabled).toBe(true);
  });

  it("sorts by a new column ascending, whether from its header or the Sort by choice", async () => {
    const listed: ListCandidatesRequest[] = [];
    const page = serve({ path: "/m/go-upgrade?order=status&desc=1", listed });
    await screen.findByRole("link", { name: "acme/api" });
    fireEvent.click(screen.getByRole("button", { name: "Last change" }));
    await waitFor(() => expect(listed.at(-1)).toMatchObject({ orderBy: CandidateOrder.LAST_CHANGE, descending: false }));
    expect(page.location()).toBe("/m/go-upgrade?order=last_change");
    fireEvent.click(screen.getByRole("button", { name: /^Last change ▲/ }));
    await waitFor(() => expect(listed.at(-1)).toMatchObject({ orderBy: CandidateOrder.LAST_CHANGE, descending: true }));
    expect(screen.getByRole("columnheader", { name: /Last change/ }).getAttribute("aria-sort")).toBe("descending");
    fireEvent.change(screen.getByLabelText("Sort by"), { target: { value: "id" } });
    await waitFor(() => expect(listed.at(-1)).toMatchObject({ orderBy: CandidateOrder.ID, descending: false }));
    expect(page.location()).toBe("/m/go-upgrade?order=id");
    expect(screen.getByRole("columnheader", { name: /Candidate/ }).getAttribute("aria-sort")).toBe("ascending");
  });

  it("shows the metadata columns chosen, remembered per Migration, and filters by a value clicked", async () => {
    localStorage.clear();
    const listed: ListCandidatesRequest[] = [];
    const page = serve({ path: "/m/go-upgrade", listed });
    await screen.findByRole("link", { name: "acme/api" });
    // Offered: the keys of the Candidates on this page (acme/api, acme/billing).
    const offered = () => screen.queryAllByRole("checkbox", { name: /^Show the column / }).map((c) => c.getAttribute("aria-label"));
    expect(offered()).toEqual(["Show the column team", "Show the column tier"]);
    expect(screen.queryByRole("columnheader", { name: "team" })).toBeNull();
    fireEvent.click(screen.getByRole("checkbox", { name: "Show the column team" }));
    expect(screen.getByRole("columnheader", { name: "team" })).toBeTruthy();
    expect(screen.getByText("Metadata columns (1)")).toBeTruthy();
    expect(localStorage.getItem("loom.columns.go-upgrade")).toBe('["team"]');
    expect(within(rowOf("acme/billing")).getByRole("button", { name: "Filter by team=billing" }).textContent).toBe("billing");
    // The next page offers its own keys too, and keeps the chosen column.
    fireEvent.click(screen.getByRole("button", { name: "Next →" }));
    await screen.findByRole("link", { name: "beta/web" });
    expect(offered()).toEqual(["Show the column lang", "Show the column team"]);
    expect(within(rowOf("beta/web")).getByRole("button", { name: "Filter by team=web" })).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: "← Previous" }));
    // A value clicked narrows the table to it, in the request and the URL.
    fireEvent.click(await screen.findByRole("button", { name: "Filter by team=payments" }));
    await waitFor(() => expect(listed.at(-1)?.metadata).toEqual({ team: "payments" }));
    expect(page.location()).toBe("/m/go-upgrade?meta=team%3Dpayments");
    await waitFor(() => expect(screen.queryByRole("link", { name: "acme/billing" })).toBeNull());
    expect(screen.getByRole("button", { name: "Remove filter team=payments" })).toBeTruthy();
    // Remembered: a new visit shows the column.
    page.unmount();
    const again = serve({ path: "/m/go-upgrade?meta=team=payments", listed });
    await screen.findByRole("link", { name: "acme/api" });
    expect(screen.getByRole("columnheader", { name: "team" })).toBeTruthy();
    // Another value of the same key replaces it.
    const meta = screen.getByLabelText("Metadata key=value");
    fireEvent.change(meta, { target: { value: "team=billing" } });
    fireEvent.keyDown(meta, { key: "Enter" });
    await waitFor(() => expect(listed.at(-1)?.metadata).toEqual({ team: "billing" }));
    expect(again.location()).toBe("/m/go-upgrade?meta=team%3Dbilling");
  });

  it("keeps the choice of columns to its Migration", async () => {
    localStorage.clear();
    localStorage.setItem("loom.columns.other", '["team"]');
    serve({ path: "/m/go-upgrade" });
    await screen.findByRole("link", { name: "acme/api" });
    expect(screen.queryByRole("columnheader", { name: "team" })).toBeNull();
    expect((screen.getByRole("checkbox", { name: "Show the column team" }) as HTMLInputElement).checked).toBe(false);
    // What is stored is read with care: anything but a list of keys is none.
    localStorage.setItem("loom.columns.go-upgrade", "not json");
    expect(readColumns("go-upgrade")).toEqual([]);
    localStorage.setItem("loom.columns.go-upgrade", '["team", 3]');
    expect(readColumns("go-upgrade")).toEqual(["team"]);
  });

  it("walks the rows with j and k from page load, and opens one with Enter", async () => {
    const page = serve({ path: "/m/go-upgrade" });
    await screen.findByRole("link", { name: "acme/api" });
    const press = (key: string) => fireEvent.keyDown(document.activeElement ?? document.body, { key });
    const focused = () => document.activeElement?.textContent;
    expect(document.activeElement).toBe(document.body);
    press("ArrowDown"); // the arrows scroll the page until the focus is in the table
    expect(document.activeElement).toBe(document.body);
    press("j");
    expect(focused()).toBe("acme/api");
    press("j");
    expect(focused()).toBe("acme/billing");
    press("j"); // the last row stays
    expect(focused()).toBe("acme/billing");
    press("k");
    expect(focused()).toBe("acme/api");
    press("ArrowDown");
    expect(focused()).toBe("acme/billing");
    // Not while typing: j is a letter of the id.
    const id = screen.getByLabelText("Id starts with");
    id.focus();
    press("j");
    expect(document.activeElement).toBe(id);
    id.blur();
    press("k");
    expect(focused()).toBe("acme/api");
    press("Enter");
    await screen.findByText("the Candidate page");
    expect(page.location()).toBe("/m/go-upgrade/c/acme/api");
  });

  it("pages with the server's page token, forward and back", async () => {
    const listed: ListCandidatesRequest[] = [];
    const page = serve({ path: "/m/go-upgrade", listed });
    await screen.findByRole("link", { name: "acme/billing" });
    expect(screen.queryByRole("link", { name: "beta/web" })).toBeNull();
    expect((screen.getByRole("button", { name: "← Previous" }) as HTMLButtonElement).disabled).toBe(true);
    fireEvent.click(screen.getByRole("button", { name: "Next →" }));
    await screen.findByRole("link", { name: "beta/web" });
    expect(listed.at(-1)?.pageToken).toBe("2");
    expect(page.location()).toBe("/m/go-upgrade?page=2");
    expect(screen.queryByRole("link", { name: "acme/api" })).toBeNull();
    expect((screen.getByRole("button", { name: "Next →" }) as HTMLButtonElement).disabled).toBe(true);
    fireEvent.click(screen.getByRole("button", { name: "← Previous" }));
    await screen.findByRole("link", { name: "acme/api" });
    expect(page.location()).toBe("/m/go-upgrade");
  });

  it("shows the Migration's figures from GetMigrationMetrics on its metrics tab", async () => {
    const metricsAsked: GetMigrationMetricsRequest[] = [];
    const page = serve({ path: "/m/go-upgrade", metricsAsked });
    fireEvent.click(await screen.findByRole("tab", { name: "metrics" }));
    expect(page.location()).toBe("/m/go-upgrade?tab=metrics");
    const tile = (label: string) => screen.getByText(label, { selector: ".tile .label" }).closest(".tile")!;
    await screen.findByText("Open PRs");
    expect(metricsAsked).toHaveLength(1);
    expect(metricsAsked[0]).toMatchObject({ migrationId: "go-upgrade", burndownUnit: BurndownUnit.HOUR });
    expect(tile("Open PRs").querySelector(".value")!.textContent).toBe("4");
    expect(tile("Awaiting review").querySelector(".value")!.textContent).toBe("2");
    expect(tile("Failed steps").querySelector(".value")!.textContent).toBe("1");
    expect(tile("Failed steps").classList.contains("bad")).toBe(true);
    expect(tile("Stuck").classList.contains("bad")).toBe(false);
    expect(screen.getByRole("img", { name: /^Burndown: Candidates remaining and completed/ })).toBeTruthy();
    expect(screen.getByText(/2 of 3 Candidates remaining · 1 completed/)).toBeTruthy();
    expect(screen.queryByText("No Run has started yet.")).toBeNull();
    // Where the running Candidates are: 4 at bump-go, open.
    const where = screen.getByRole("heading", { name: "Where the running Candidates are" }).nextElementSibling!;
    expect(within(where as HTMLElement).getByRole("row", { name: "bump-go open 4" })).toBeTruthy();
    // Step durations: 3 succeeded, 1 failed (25%), p50 1.5 min, p95 2 h.
    const durations = screen.getByRole("heading", { name: "Step durations" }).nextElementSibling as HTMLElement;
    const cells = within(within(durations).getAllByRole("row")[1]).getAllByRole("cell").map((c) => c.textContent);
    expect(cells.slice(0, 7)).toEqual(["bump-go", "3", "1", "25%", "1.5 min", "2.0 h", "2.0 h"]);
    // The latest failure links to its Candidate; the stuck one is named.
    const failure = screen.getByText("go test failed").closest("li")!;
    expect(within(failure).getByRole("link", { name: "acme/api" }).getAttribute("href")).toBe("/m/go-upgrade/c/acme/api");
    expect(failure.textContent).toContain("bump-go (attempt 2)");
    expect(screen.getByRole("link", { name: "beta/web" }).closest("li")!.textContent).toContain("last event 2d ago");
  });

  it("shows the server's refusal of the figures", async () => {
    serve({ path: "/m/go-upgrade?tab=metrics", metricsError: new ConnectError("metrics are off", Code.Unavailable) });
    expect((await screen.findByRole("alert")).textContent).toBe("unavailable: metrics are off");
  });

  it("shows the Migration's description, steps and inputs on its overview tab", async () => {
    serve({ path: "/m/go-upgrade?tab=overview" });
    expect(await screen.findByText("Bump the go directive.")).toBeTruthy();
    expect(screen.getByRole("heading", { name: "Why" })).toBeTruthy(); // the overview's Markdown
    const steps = screen.getByRole("heading", { name: "Steps" }).nextElementSibling as HTMLElement;
    expect(within(steps).getAllByRole("listitem").map((li) => li.textContent)).toEqual(["bump-go pull_requestEdits go.mod", "deploy review"]);
    expect(screen.getByText("The change ticket")).toBeTruthy();
    expect(screen.getByText("Migrator: http://migrator.internal")).toBeTruthy();
    expect(screen.queryByRole("region", { name: "Candidates" })).toBeNull();
  });

  it("says what the server refused", async () => {
    serve({ path: "/m/node-20" });
    expect((await screen.findByRole("alert")).textContent).toBe("not_found: no Migration node-20");
  });
});
