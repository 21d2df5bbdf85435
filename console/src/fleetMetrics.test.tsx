import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { mount } from "./test/mount";
import { FleetMetricsPage } from "./pages/FleetMetricsPage";
import {
  BurndownUnit,
  MetricsService,
  MigrationMetricsSchema,
  MigrationSummarySchema,
  type GetFleetOverviewRequest,
  type GetMigrationMetricsRequest,
  type MigrationMetrics,
} from "./gen/loom/v1/metrics_service_pb";

const day = 86400_000;
const today = Date.UTC(2026, 11, 7);

const summaries = [
  create(MigrationSummarySchema, { migration: { id: "go-upgrade", name: "Go 1.23" } }),
  create(MigrationSummarySchema, { migration: { id: "node-20", name: "Node 20" } }),
];

const figures: Record<string, MigrationMetrics> = {
  "go-upgrade": create(MigrationMetricsSchema, {
    migrationId: "go-upgrade",
    candidates: { total: 10n, completed: 3n, running: 2n, notStarted: 5n },
    openPullRequests: 2n,
    failed: 1n,
    eventsPerDay: [
      { day: timestampFromMs(today - 2 * day), count: 3n },
      { day: timestampFromMs(today - day), count: 0n },
      { day: timestampFromMs(today), count: 4n },
    ],
    burndown: [
      { start: timestampFromMs(today - day), started: 2n, completed: 1n },
      { start: timestampFromMs(today), started: 1n, completed: 2n },
    ],
    stepDurations: [
      { step: "bump-go", count: 3n, failedCount: 1n, p50: { seconds: 40n }, p95: { seconds: 90n }, mergedCount: 2n, mergeP50: { seconds: 7200n } },
      { step: "review", count: 0n, failedCount: 0n },
    ],
    recentFailures: [
      { candidateId: "acme/api", step: "bump-go", attempt: 2, message: "go test failed", time: timestampFromMs(today - day) },
      { candidateId: "acme/web", step: "bump-go", attempt: 1, message: "go vet failed", time: timestampFromMs(today - 3 * day) },
    ],
  }),
  "node-20": create(MigrationMetricsSchema, {
    migrationId: "node-20",
    recentFailures: [{ candidateId: "acme/ui", step: "bump-node", attempt: 1, message: "npm ci failed", time: timestampFromMs(today - 2 * day) }],
  }),
};

// A server answering the fleet (in two pages) and each Migration's figures;
// what the page asks is recorded.
function serve(opts: {
  fleet?: typeof summaries;
  asked?: (GetFleetOverviewRequest | GetMigrationMetricsRequest)[];
  fleetError?: ConnectError;
  metricsError?: Record<string, ConnectError>;
}) {
  const fleet = opts.fleet ?? summaries;
  return mount({
    path: "/metrics",
    route: "/metrics",
    element: <FleetMetricsPage />,
    routes: (r) =>
      r.service(MetricsService, {
        getFleetOverview: (req) => {
          opts.asked?.push(req);
          if (opts.fleetError) throw opts.fleetError;
          return req.pageToken === "" ? { migrations: fleet.slice(0, 1), nextPageToken: fleet.length > 1 ? "p2" : "" } : { migrations: fleet.slice(1) };
        },
        getMigrationMetrics: (req) => {
          opts.asked?.push(req);
          const refusal = opts.metricsError?.[req.migrationId];
          if (refusal) throw refusal;
          return { metrics: figures[req.migrationId] };
        },
      }),
  });
}

const card = (name: string) => screen.getByRole("region", { name });
const stat = (section: HTMLElement, label: string) =>
  within(section).getByText(label, { selector: ".tile .label" }).closest(".tile")!.querySelector(".value")!.textContent;
const dayOf = (ms: number) => new Date(ms).toLocaleDateString(undefined, { timeZone: "UTC" });

describe("the fleet metrics page", () => {
  it("shows, per Migration of the fleet, its figures by the day from GetMigrationMetrics", async () => {
    const asked: (GetFleetOverviewRequest | GetMigrationMetricsRequest)[] = [];
    serve({ asked });
    await screen.findByRole("link", { name: "Go 1.23" });
    await screen.findByRole("link", { name: "Node 20" });
    // Every page of the fleet, then each Migration's figures by the day.
    expect(asked.filter((q) => "pageToken" in q).map((q) => (q as GetFleetOverviewRequest).pageToken)).toEqual(["", "p2"]);
    const metrics = asked.filter((q): q is GetMigrationMetricsRequest => "burndownUnit" in q);
    expect(metrics.map((q) => q.migrationId).sort()).toEqual(["go-upgrade", "node-20"]);
    expect(metrics.every((q) => q.burndownUnit === BurndownUnit.DAY)).toBe(true);

    // Each card is named by the Migration's name, its id beside it.
    const go = card("Go 1.23");
    expect(within(go).getByRole("link", { name: "Go 1.23" }).getAttribute("href")).toBe("/m/go-upgrade?tab=metrics");
    expect(within(go).getByRole("heading").textContent).toBe("Go 1.23 go-upgrade");
    expect(screen.queryByRole("link", { name: "go-upgrade" })).toBeNull();
    // Its figures in cards, from GetMigrationMetrics.
    expect(["Candidates", "Remaining", "Completed", "Running", "Open PRs", "Failed steps"].map((l) => stat(go, l))).toEqual(["10", "7", "3", "2", "2", "1"]);
    // Events and completions per day on one chart, days without any at 0.
    expect(
      within(go).getByRole("img", {
        name: `Activity per day, ${dayOf(today - 2 * day)} to ${dayOf(today)}: events 3, 0, 4; completed 0, 1, 2`,
      }),
    ).toBeTruthy();
    expect(go.textContent).toContain("7 events in 30 days · 4 today · 3 Candidates completed in 30 days");
    // Its steps: bump-go succeeded 3 times and failed once (25%), a bar for its durations.
    const rows = within(go.querySelector("table.grid") as HTMLElement).getAllByRole("row").slice(1);
    expect(within(rows[0]).getAllByRole("cell").map((c) => c.textContent)).toEqual(["bump-go", "3", "1", "25%", "40.0 s", "1.5 min", "2.0 h", ""]);
    expect(within(rows[0]).getByRole("img", { name: "bump-go: p50 40.0 s, p95 1.5 min" })).toBeTruthy();
    expect(within(rows[1]).getAllByRole("cell").map((c) => c.textContent)).toEqual(["review", "0", "0", "—", "—", "—", "—", ""]);
    expect(within(rows[1]).queryByRole("img")).toBeNull();

    const node = card("Node 20");
    expect(node.textContent).toContain("0 events in 30 days · 0 today · 0 Candidates completed in 30 days");
    expect(within(node).getByRole("img", { name: "Activity: no day yet" })).toBeTruthy();
  });

  it("lists the latest failures across the fleet, newest first, each linking to its Candidate", async () => {
    serve({});
    const list = (await screen.findByText("go test failed")).closest("ul")!;
    const items = within(list).getAllByRole("listitem");
    expect(items.map((li) => within(li).getByRole("link").textContent)).toEqual(["acme/api", "acme/ui", "acme/web"]);
    expect(within(items[1]).getByRole("link").getAttribute("href")).toBe("/m/node-20/c/acme/ui");
    expect(items[1].textContent).toContain("Node 20 · bump-node (attempt 1)");
    expect(items[1].textContent).toContain("npm ci failed");
  });

  it("says so when the fleet has no Migration", async () => {
    serve({ fleet: [] });
    expect(await screen.findByText("No Migration yet.")).toBeTruthy();
    expect(screen.getByText("No step has failed lately.")).toBeTruthy();
  });

  it("shows a Migration's refusal beside the figures of the others", async () => {
    serve({ metricsError: { "node-20": new ConnectError("no role may read node-20", Code.PermissionDenied) } });
    expect((await screen.findByRole("alert")).textContent).toBe("permission_denied: no role may read node-20");
    await waitFor(() => expect(card("Go 1.23").textContent).toContain("7 events in 30 days"));
    expect(screen.queryByRole("link", { name: "Node 20" })).toBeNull();
  });

  it("shows the server's error when the fleet cannot be read", async () => {
    serve({ fleetError: new ConnectError("redis is down", Code.Unavailable) });
    expect((await screen.findByRole("alert")).textContent).toBe("unavailable: redis is down");
    expect(screen.queryByRole("heading", { name: "Fleet metrics" })).toBeNull();
  });
});
