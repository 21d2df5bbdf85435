import { beforeEach, describe, expect, it } from "vitest";
import { screen, waitFor } from "@testing-library/react";
import { create } from "@bufbuild/protobuf";
import { mount, untilAborted } from "./test/mount";
import { App } from "./App";
import { CandidatePage } from "./pages/CandidatePage";
import { HistoryPage } from "./pages/HistoryPage";
import { MigrationPage } from "./pages/MigrationPage";
import { Home } from "./pages/Home";
import { pageTitle } from "./title";
import { RegistryService } from "./gen/loom/v1/registry_service_pb";
import { DiscoveryService } from "./gen/loom/v1/discovery_service_pb";
import { MetricsService, MigrationSummarySchema } from "./gen/loom/v1/metrics_service_pb";
import { HistoryService } from "./gen/loom/v1/history_service_pb";
import { RunService } from "./gen/loom/v1/run_service_pb";
import { Code, ConnectError } from "@connectrpc/connect";
import { MigrationSchema } from "./gen/loom/v1/migration_pb";
import { CandidateSchema } from "./gen/loom/v1/candidate_pb";

const goUpgrade = create(MigrationSchema, { id: "go-upgrade", name: "Go 1.23" });
const node20 = create(MigrationSchema, { id: "node-20", name: "Node 20" });
const fleet = [create(MigrationSummarySchema, { migration: goUpgrade }), create(MigrationSummarySchema, { migration: node20 })];

// A history that says nothing, and keeps its watch open.
const quietHistory = {
  listEvents: () => ({ events: [] }),
  async *watchEvents(_req: unknown, ctx: { signal: AbortSignal }) {
    await untilAborted(ctx.signal);
  },
};

describe("the page titles", () => {
  beforeEach(() => {
    document.title = "";
  });

  it("join the parts known, most specific first, then Loom", () => {
    expect(pageTitle("acme/billing", "Go 1.23")).toBe("acme/billing · Go 1.23 · Loom");
    expect(pageTitle("History", undefined)).toBe("History · Loom");
    expect(pageTitle()).toBe("Loom");
  });

  it("name a Candidate and its Migration, the Migration's name once it has loaded", async () => {
    let answer: (m: typeof goUpgrade) => void = () => {};
    const loaded = new Promise<typeof goUpgrade>((resolve) => (answer = resolve));
    mount({
      path: "/m/go-upgrade/c/acme%2Fbilling",
      route: "/m/:migrationId/c/*",
      element: <CandidatePage />,
      routes: (r) => {
        r.service(RegistryService, { getMigration: async () => ({ migration: await loaded }) });
        r.service(DiscoveryService, { getCandidate: () => ({ candidate: create(CandidateSchema, { id: "acme/billing" }) }) });
        r.service(RunService, {
          getRun() {
            throw new ConnectError("no Run", Code.NotFound);
          },
        });
        r.service(HistoryService, quietHistory);
      },
    });
    await waitFor(() => expect(document.title).toBe("acme/billing · go-upgrade · Loom"));
    answer(goUpgrade);
    await screen.findByRole("heading", { level: 1, name: "acme/billing" });
    expect(document.title).toBe("acme/billing · Go 1.23 · Loom");
  });

  it("name the Migration on its page", async () => {
    mount({
      path: "/m/go-upgrade",
      route: "/m/:migrationId",
      element: <MigrationPage />,
      routes: (r) => {
        r.service(RegistryService, { getMigration: () => ({ migration: goUpgrade }) });
        r.service(HistoryService, quietHistory);
      },
    });
    await waitFor(() => expect(document.title).toBe("Go 1.23 · Loom"));
  });

  it("name the fleet on the home page", async () => {
    mount({ path: "/", route: "/", element: <Home />, routes: (r) => r.service(MetricsService, { getFleetOverview: () => ({ migrations: fleet }) }) });
    await waitFor(() => expect(document.title).toBe("Fleet · Loom"));
  });

  it("name the history's Migration, the first of the fleet unless the URL names another", async () => {
    const history = (path: string) =>
      mount({
        path,
        route: "/history",
        element: <HistoryPage />,
        routes: (r) => {
          r.service(MetricsService, { getFleetOverview: () => ({ migrations: fleet }) });
          r.service(HistoryService, quietHistory);
        },
      });
    const first = history("/history");
    await waitFor(() => expect(document.title).toBe("History · Go 1.23 · Loom"));
    first.unmount();
    history("/history?m=node-20");
    await waitFor(() => expect(document.title).toBe("History · Node 20 · Loom"));
  });

  it("name the fleet's metrics, and a page that does not exist", async () => {
    const app = (path: string) =>
      mount({
        path,
        route: "/*",
        element: <App />,
        routes: (r) => {
          r.service(RegistryService, { getCaller: () => ({ authenticated: true }) });
          r.service(MetricsService, { getFleetOverview: () => ({ migrations: [] }) });
          r.service(HistoryService, quietHistory);
        },
      });
    const metrics = app("/metrics");
    await waitFor(() => expect(document.title).toBe("Fleet metrics · Loom"));
    metrics.unmount();
    app("/nowhere");
    await waitFor(() => expect(document.title).toBe("Not found · Loom"));
  });
});
