import { describe, expect, it } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { mount, untilAborted } from "./test/mount";
import { HistoryPage } from "./pages/HistoryPage";
import { MetricsService, MigrationSummarySchema } from "./gen/loom/v1/metrics_service_pb";
import {
  EventKind,
  EventSchema,
  HistoryService,
  type Event,
  type ListEventsRequest,
  type WatchEventsRequest,
} from "./gen/loom/v1/history_service_pb";

const fleet = [
  create(MigrationSummarySchema, { migration: { id: "go-upgrade", name: "Go 1.23" } }),
  create(MigrationSummarySchema, { migration: { id: "node-20", name: "Node 20" } }),
];

const at = (min: number) => timestampFromMs(Date.UTC(2026, 11, 7, 9, min));
// The history, newest first, as ListEvents answers.
const events = [
  create(EventSchema, {
    id: "4",
    time: at(4),
    kind: EventKind.STEP_FAILED,
    migrationId: "go-upgrade",
    candidateId: "acme/api",
    step: "bump-go",
    attempt: 2,
    execution: 1n,
    actor: "loom",
    details: { message: "go test failed", pr_url: "https://git.example/acme/api/pull/7" },
  }),
  create(EventSchema, { id: "3", time: at(3), kind: EventKind.RUN_STARTED, migrationId: "go-upgrade", candidateId: "acme/web", execution: 1n, actor: "ana" }),
  create(EventSchema, { id: "2", time: at(2), kind: EventKind.RUN_STARTED, migrationId: "go-upgrade", candidateId: "acme/api", execution: 1n, actor: "ana" }),
  create(EventSchema, { id: "1", time: at(1), kind: EventKind.MIGRATION_ANNOUNCED, migrationId: "go-upgrade", actor: "migrator" }),
  create(EventSchema, { id: "5", time: at(5), kind: EventKind.RUN_STARTED, migrationId: "node-20", candidateId: "acme/ui", execution: 1n, actor: "bo" }),
];

type Asked = { listed: ListEventsRequest[]; watched: WatchEventsRequest[] };

// A server with the fleet and its history: ListEvents filters by
// Migration, Candidate and kind and pages by pageSize (the page asks 50;
// pages of `page` here), WatchEvents sends `live` to a watch that resumes
// after the newest listed event. What the page asks is recorded.
function serve(opts: {
  path: string;
  asked?: Asked;
  page?: number;
  live?: Event;
  fleet?: typeof fleet;
  listError?: ConnectError;
  fleetError?: ConnectError;
}) {
  return mount({
    path: opts.path,
    route: "/history",
    element: <HistoryPage />,
    routes: (r) => {
      r.service(MetricsService, {
        getFleetOverview: () => {
          if (opts.fleetError) throw opts.fleetError;
          return { migrations: opts.fleet ?? fleet };
        },
      });
      r.service(HistoryService, {
        listEvents: (req) => {
          opts.asked?.listed.push(req);
          if (opts.listError) throw opts.listError;
          const matching = events.filter(
            (e) =>
              e.migrationId === req.migrationId &&
              (!req.candidateId || e.candidateId === req.candidateId) &&
              (req.kinds.length === 0 || req.kinds.includes(e.kind)),
          );
          const from = req.pageToken ? Number(req.pageToken) : 0;
          const size = Math.min(req.pageSize, opts.page ?? req.pageSize);
          return {
            events: matching.slice(from, from + size),
            nextPageToken: from + size < matching.length ? String(from + size) : "",
          };
        },
        async *watchEvents(req, ctx) {
          opts.asked?.watched.push(req);
          yield { update: { case: "heartbeat", value: {} } };
          if (opts.live && req.migrationId === opts.live.migrationId && req.afterId === "4") {
            yield { update: { case: "event", value: opts.live } };
          }
          await untilAborted(ctx.signal);
        },
      });
    },
  });
}

// The event log's rows (not the Kind filter's options, which name kinds
// too) and their cells' text.
const rows = () => within(screen.getByRole("table")).getAllByRole("row").slice(1);
const cells = (row: HTMLElement) => within(row).getAllByRole("cell").map((c) => c.textContent);
const kindsShown = () => rows().map((r) => cells(r)[1]);
const untilShown = (kinds: string[]) => waitFor(() => expect(kindsShown()).toEqual(kinds));

describe("the history page", () => {
  it("lists the first Migration's events from ListEvents, newest first, then new ones live", async () => {
    const asked: Asked = { listed: [], watched: [] };
    const live = create(EventSchema, {
      id: "6",
      time: at(6),
      kind: EventKind.STEP_RETRIED,
      migrationId: "go-upgrade",
      candidateId: "acme/api",
      step: "bump-go",
      attempt: 3,
      execution: 1n,
      actor: "ana",
    });
    serve({ path: "/history", asked, live });
    await waitFor(() => expect(kindsShown()).toContain("migration announced"));
    expect(asked.listed[0]).toMatchObject({ migrationId: "go-upgrade", candidateId: "", kinds: [], pageSize: 50, pageToken: "" });
    const migration = screen.getByLabelText("Migration") as HTMLSelectElement;
    expect(migration.value).toBe("go-upgrade");
    expect(Array.from(migration.options).map((o) => o.textContent)).toEqual(["Go 1.23", "Node 20"]);
    // The live event is prepended once the watch, resumed after the newest
    // listed event, delivers it.
    await untilShown(["step retried", "step failed", "run started", "run started", "migration announced"]);
    expect(screen.getByText("● live")).toBeTruthy();
    expect(asked.watched[0]).toMatchObject({ migrationId: "go-upgrade", candidateId: "", kinds: [], afterId: "4" });
    const shown = rows();
    // An event: its kind, its Candidate (a link), its step, attempt and
    // execution, who, and its details, a URL as a link.
    const [, failed] = shown;
    expect(cells(failed).slice(1, 5)).toEqual(["step failed", "acme/api", "bump-go #2 (execution 1)", "loom"]);
    expect(within(failed).getByRole("link", { name: "acme/api" }).getAttribute("href")).toBe("/m/go-upgrade/c/acme/api");
    expect(within(failed).getByRole("link", { name: "https://git.example/acme/api/pull/7" }).getAttribute("href")).toBe(
      "https://git.example/acme/api/pull/7",
    );
    expect(cells(failed)[5]).toBe("message go test failedpr_url https://git.example/acme/api/pull/7");
    expect(cells(shown[4]).slice(1, 5)).toEqual(["migration announced", "", "", "migrator"]);
  });

  it("sends the kind, Candidate and Migration filters in the request and keeps them in the URL", async () => {
    const asked: Asked = { listed: [], watched: [] };
    const page = serve({ path: "/history", asked });
    await untilShown(["step failed", "run started", "run started", "migration announced"]);
    expect(screen.getByRole("columnheader", { name: "Candidate" })).toBeTruthy();

    fireEvent.change(screen.getByLabelText("Kind"), { target: { value: String(EventKind.RUN_STARTED) } });
    await untilShown(["run started", "run started"]);
    expect(asked.listed.at(-1)).toMatchObject({ migrationId: "go-upgrade", candidateId: "", kinds: [EventKind.RUN_STARTED] });
    expect(rows().map((r) => cells(r)[2])).toEqual(["acme/web", "acme/api"]);
    expect(page.location()).toBe(`/history?kind=${EventKind.RUN_STARTED}`);
    // The live watch follows the same filter.
    await waitFor(() => expect(asked.watched.at(-1)).toMatchObject({ kinds: [EventKind.RUN_STARTED], afterId: "3" }));

    fireEvent.change(screen.getByLabelText("Candidate id"), { target: { value: " acme/api " } });
    await untilShown(["run started"]);
    expect(asked.listed.at(-1)).toMatchObject({ migrationId: "go-upgrade", candidateId: "acme/api", kinds: [EventKind.RUN_STARTED] });
    expect(page.location()).toBe(`/history?kind=${EventKind.RUN_STARTED}&c=acme%2Fapi`);
    // One Candidate's history has no Candidate column.
    expect(screen.queryByRole("columnheader", { name: "Candidate" })).toBeNull();
    expect(cells(rows()[0]).slice(1, 4)).toEqual(["run started", " (execution 1)", "ana"]);

    fireEvent.change(screen.getByLabelText("Kind"), { target: { value: "0" } });
    await untilShown(["step failed", "run started"]);
    expect(asked.listed.at(-1)).toMatchObject({ candidateId: "acme/api", kinds: [] });
    expect(page.location()).toBe("/history?c=acme%2Fapi");

    fireEvent.change(screen.getByLabelText("Candidate id"), { target: { value: "" } });
    fireEvent.change(screen.getByLabelText("Migration"), { target: { value: "node-20" } });
    await screen.findByRole("link", { name: "acme/ui" });
    expect(asked.listed.at(-1)).toMatchObject({ migrationId: "node-20", candidateId: "", kinds: [] });
    expect(page.location()).toBe("/history?m=node-20");
    expect(kindsShown()).toEqual(["run started"]);
  });

  it("reads its filters from the URL", async () => {
    const asked: Asked = { listed: [], watched: [] };
    serve({ path: `/history?m=node-20&c=acme/ui&kind=${EventKind.RUN_STARTED}`, asked });
    await untilShown(["run started"]);
    expect(asked.listed).toHaveLength(1);
    expect(asked.listed[0]).toMatchObject({ migrationId: "node-20", candidateId: "acme/ui", kinds: [EventKind.RUN_STARTED] });
    expect((screen.getByLabelText("Migration") as HTMLSelectElement).value).toBe("node-20");
    expect((screen.getByLabelText("Candidate id") as HTMLInputElement).value).toBe("acme/ui");
    expect((screen.getByLabelText("Kind") as HTMLSelectElement).selectedOptions[0].textContent).toBe("run started");
    expect(cells(rows()[0]).slice(1, 4)).toEqual(["run started", " (execution 1)", "bo"]);
  });

  it("pages to older events with the server's page token", async () => {
    const asked: Asked = { listed: [], watched: [] };
    serve({ path: "/history", asked, page: 3 });
    await untilShown(["step failed", "run started", "run started"]);
    expect(asked.listed.at(-1)).toMatchObject({ pageSize: 50, pageToken: "" });
    fireEvent.click(screen.getByRole("button", { name: "Older events" }));
    await untilShown(["step failed", "run started", "run started", "migration announced"]);
    expect(asked.listed.at(-1)).toMatchObject({ migrationId: "go-upgrade", pageToken: "3" });
    expect(screen.queryByRole("button", { name: "Older events" })).toBeNull();
  });

  it("shows the server's refusal of the history", async () => {
    serve({ path: "/history", listError: new ConnectError("no role may read the history", Code.PermissionDenied) });
    expect((await screen.findByRole("alert")).textContent).toBe("permission_denied: no role may read the history");
    // The filters stay, to choose another Migration.
    expect(screen.getByLabelText("Migration")).toBeTruthy();
  });

  it("shows the server's error when the fleet cannot be read", async () => {
    serve({ path: "/history", fleetError: new ConnectError("redis is down", Code.Unavailable) });
    expect((await screen.findByRole("alert")).textContent).toBe("unavailable: redis is down");
  });

  it("says when there is no Migration, or no event", async () => {
    const asked: Asked = { listed: [], watched: [] };
    const empty = serve({ path: "/history", fleet: [], asked });
    expect(await screen.findByText("No Migration yet.")).toBeTruthy();
    expect(asked.listed).toHaveLength(0);
    empty.unmount();
    serve({ path: "/history?m=node-20&kind=" + EventKind.STEP_FAILED });
    expect(await screen.findByText("No event yet.")).toBeTruthy();
  });
});
