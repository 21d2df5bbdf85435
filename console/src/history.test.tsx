import { describe, expect, it } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { mount, untilAborted } from "./test/mount";
import { HistoryPage } from "./pages/HistoryPage";
import { eventIdAfter } from "./components/EventLog";
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
// Migration, Candidate (exact or prefix), kinds and time range and pages by
// pageSize (the page asks 50;
// pages of `page` here), WatchEvents (the browser's one feed, the whole
// fleet's) sends `live`. What the page asks is recorded.
function serve(opts: {
  path: string;
  asked?: Asked;
  page?: number;
  live?: Event | Event[];
  fleet?: typeof fleet;
  listError?: ConnectError;
  fleetError?: ConnectError;
}) {
  let listed = 0;
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
          listed++;
          opts.asked?.listed.push(req);
          if (opts.listError) throw opts.listError;
          const matching = events.filter(
            (e) =>
              e.migrationId === req.migrationId &&
              (!req.candidateId || e.candidateId === req.candidateId) &&
              (!req.candidateIdPrefix || (e.candidateId !== "" && e.candidateId.startsWith(req.candidateIdPrefix))) &&
              (req.kinds.length === 0 || req.kinds.includes(e.kind)) &&
              (!req.startTime || timestampMs(e.time!) >= timestampMs(req.startTime)) &&
              (!req.endTime || timestampMs(e.time!) < timestampMs(req.endTime)),
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
          // Written after the page read its history (an event written
          // before would be in ListEvents' answer).
          while (listed === 0) await new Promise((r) => setTimeout(r, 10));
          if (opts.live && req.migrationId === "") {
            for (const e of [opts.live].flat()) yield { update: { case: "event" as const, value: e } };
          }
          await untilAborted(ctx.signal);
        },
      });
    },
  });
}

// A time as a datetime-local input takes it: local time, to the minute.
const toLocal = (d: Date) => {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
};

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
    // The live event is prepended once the feed delivers it: the fleet's
    // feed, the page's only stream (no watch of its own).
    await untilShown(["step retried", "step failed", "run started", "run started", "migration announced"]);
    expect(screen.getByText("● live")).toBeTruthy();
    expect(asked.watched).toEqual([expect.objectContaining({ migrationId: "", candidateId: "", kinds: [], afterId: "" })]);
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

  it("sends the kinds, Candidate and Migration filters in the request and keeps them in the URL, kinds by name", async () => {
    const asked: Asked = { listed: [], watched: [] };
    const page = serve({ path: "/history", asked });
    await untilShown(["step failed", "run started", "run started", "migration announced"]);
    expect(screen.getByRole("columnheader", { name: "Candidate" })).toBeTruthy();
    const kinds = within(screen.getByRole("group", { name: "Kinds" }));

    fireEvent.click(kinds.getByRole("checkbox", { name: "run started" }));
    await untilShown(["run started", "run started"]);
    expect(asked.listed.at(-1)).toMatchObject({ migrationId: "go-upgrade", candidateId: "", kinds: [EventKind.RUN_STARTED] });
    expect(rows().map((r) => cells(r)[2])).toEqual(["acme/web", "acme/api"]);
    expect(page.location()).toBe("/history?kind=run_started");
    // The live view follows the same filter from the same feed: no new stream.
    expect(asked.watched.length).toBe(1);

    // Several kinds, kept in the enum's order whatever the order of the clicks.
    fireEvent.click(kinds.getByRole("checkbox", { name: "step failed" }));
    await untilShown(["step failed", "run started", "run started"]);
    expect(asked.listed.at(-1)).toMatchObject({ kinds: [EventKind.RUN_STARTED, EventKind.STEP_FAILED] });
    expect(page.location()).toBe("/history?kind=run_started&kind=step_failed");
    expect(screen.getByText("run started, step failed")).toBeTruthy();
    // A group's box: all of the group, then none of it.
    const group = kinds.getByRole("checkbox", { name: "Migrations" }) as HTMLInputElement;
    expect(group.checked).toBe(false);
    fireEvent.click(group);
    await untilShown(["step failed", "run started", "run started", "migration announced"]);
    expect(asked.listed.at(-1)!.kinds).toEqual([
      EventKind.MIGRATION_ANNOUNCED,
      EventKind.MIGRATION_UPDATED,
      EventKind.MIGRATION_DELETED,
      EventKind.RUN_STARTED,
      EventKind.STEP_FAILED,
    ]);
    expect(page.location()).toBe(
      "/history?kind=migration_announced&kind=migration_updated&kind=migration_deleted&kind=run_started&kind=step_failed",
    );
    expect(screen.getByText("5 kinds")).toBeTruthy();
    fireEvent.click(kinds.getByRole("checkbox", { name: "Migrations" }));
    await waitFor(() => expect(page.location()).toBe("/history?kind=run_started&kind=step_failed"));
    fireEvent.click(kinds.getByRole("checkbox", { name: "step failed" }));
    await untilShown(["run started", "run started"]);
    expect(page.location()).toBe("/history?kind=run_started");
    expect((kinds.getByRole("checkbox", { name: "Runs" }) as HTMLInputElement).indeterminate).toBe(true);

    fireEvent.change(screen.getByLabelText("Candidate id"), { target: { value: " acme/api " } });
    await untilShown(["run started"]);
    expect(asked.listed.at(-1)).toMatchObject({ migrationId: "go-upgrade", candidateId: "acme/api", kinds: [EventKind.RUN_STARTED] });
    expect(page.location()).toBe("/history?kind=run_started&c=acme%2Fapi");
    // One Candidate's history has no Candidate column.
    expect(screen.queryByRole("columnheader", { name: "Candidate" })).toBeNull();
    expect(cells(rows()[0]).slice(1, 4)).toEqual(["run started", " (execution 1)", "ana"]);

    fireEvent.click(kinds.getByRole("button", { name: "Any kind" }));
    await untilShown(["step failed", "run started"]);
    expect(asked.listed.at(-1)).toMatchObject({ candidateId: "acme/api", kinds: [] });
    expect(page.location()).toBe("/history?c=acme%2Fapi");

    fireEvent.change(screen.getByLabelText("Candidate id"), { target: { value: "" } });
    fireEvent.change(screen.getByLabelText("Migration"), { target: { value: "node-20" } });
    await screen.findByRole("link", { name: "acme/ui" });
    expect(asked.listed.at(-1)).toMatchObject({ migrationId: "node-20", candidateId: "", kinds: [] });
    expect(page.location()).toBe("/history?m=node-20");
    expect(kindsShown()).toEqual(["run started"]);
    // A dozen filter changes, each a request and a render: on a busy
    // machine this nears vitest's default 5 s.
  }, 15_000);

  it("sends a Candidate id prefix and keeps it in the URL; live events of other Candidates are left out", async () => {
    const asked: Asked = { listed: [], watched: [] };
    // A live event of a Candidate outside the prefix, then one inside it:
    // the feed delivers in order, so once the second shows, the first was
    // heard and left out.
    const live = [
      create(EventSchema, { id: "6", time: at(6), kind: EventKind.RUN_STARTED, migrationId: "go-upgrade", candidateId: "acme/web", actor: "ana" }),
      create(EventSchema, {
        id: "7",
        time: at(7),
        kind: EventKind.STEP_RETRIED,
        migrationId: "go-upgrade",
        candidateId: "acme/api",
        step: "bump-go",
        attempt: 2,
        execution: 1n,
        actor: "ana",
      }),
    ];
    const page = serve({ path: "/history?prefix=acme/a", asked, live });
    // The page (acme/api's two events), and of the feed acme/api's only.
    await untilShown(["step retried", "step failed", "run started"]);
    expect(asked.listed[0]).toMatchObject({ migrationId: "go-upgrade", candidateId: "", candidateIdPrefix: "acme/a" });
    expect((screen.getByLabelText("Candidate id prefix") as HTMLInputElement).value).toBe("acme/a");

    fireEvent.change(screen.getByLabelText("Candidate id prefix"), { target: { value: " acme/ " } });
    await waitFor(() => expect(asked.listed.at(-1)).toMatchObject({ candidateIdPrefix: "acme/" }));
    await waitFor(() => expect(kindsShown().slice(-3)).toEqual(["step failed", "run started", "run started"]));
    expect(page.location()).toBe("/history?prefix=acme%2F");
    fireEvent.change(screen.getByLabelText("Candidate id prefix"), { target: { value: "" } });
    await waitFor(() => expect(kindsShown()).toContain("migration announced"));
    expect(asked.listed.at(-1)).toMatchObject({ candidateIdPrefix: "" });
    expect(page.location()).toBe("/history");
  });

  it("sends a time range, quick or custom, and keeps it in the URL", async () => {
    const asked: Asked = { listed: [], watched: [] };
    const page = serve({ path: "/history", asked });
    await untilShown(["step failed", "run started", "run started", "migration announced"]);
    expect(asked.listed[0].startTime).toBeUndefined();
    expect(asked.listed[0].endTime).toBeUndefined();

    // Quick: the last hour, counted back from now, kept relative.
    const before = Date.now();
    fireEvent.change(screen.getByLabelText("Time"), { target: { value: "1h" } });
    await waitFor(() => expect(asked.listed.at(-1)!.startTime).toBeDefined());
    const start = timestampMs(asked.listed.at(-1)!.startTime!);
    expect(start).toBeGreaterThanOrEqual(before - 3_600_000);
    expect(start).toBeLessThanOrEqual(Date.now() - 3_600_000);
    expect(asked.listed.at(-1)!.endTime).toBeUndefined();
    expect(page.location()).toBe("/history?from=1h");
    // (The events of the fixture are older: none.)
    expect(await screen.findByText("No event yet.")).toBeTruthy();

    // Custom: from and to, as ISO times.
    fireEvent.change(screen.getByLabelText("Time"), { target: { value: "custom" } });
    const from = new Date(2026, 11, 7, 0, 0); // local, as the input reads it
    fireEvent.change(screen.getByLabelText("From"), { target: { value: "2026-12-07T00:00" } });
    await waitFor(() => expect(page.location()).toBe(`/history?from=${encodeURIComponent(from.toISOString())}`));
    const to = new Date(Date.UTC(2026, 11, 7, 9, 3, 30));
    const toMinute = new Date(Math.floor(to.getTime() / 60_000) * 60_000);
    fireEvent.change(screen.getByLabelText("To"), { target: { value: toLocal(to) } });
    await waitFor(() =>
      expect(page.location()).toBe(
        `/history?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(toMinute.toISOString())}`,
      ),
    );
    await waitFor(() => expect(asked.listed.at(-1)!.endTime).toBeDefined());
    expect(timestampMs(asked.listed.at(-1)!.startTime!)).toBe(from.getTime());
    expect(timestampMs(asked.listed.at(-1)!.endTime!)).toBe(toMinute.getTime());
    expect((screen.getByLabelText("Time") as HTMLSelectElement).value).toBe("custom");

    fireEvent.change(screen.getByLabelText("Time"), { target: { value: "" } });
    await waitFor(() => expect(page.location()).toBe("/history"));
    await untilShown(["step failed", "run started", "run started", "migration announced"]);
  });

  it("reads a time range of the URL: ISO times", async () => {
    const asked: Asked = { listed: [], watched: [] };
    serve({ path: "/history?from=2026-12-07T09:02:00Z&to=2026-12-07T09:04:00Z", asked });
    // Minutes 2 and 3 of the fixture: at or after from, before to.
    await untilShown(["run started", "run started"]);
    expect(timestampMs(asked.listed[0].startTime!)).toBe(Date.UTC(2026, 11, 7, 9, 2));
    expect(timestampMs(asked.listed[0].endTime!)).toBe(Date.UTC(2026, 11, 7, 9, 4));
    expect((screen.getByLabelText("Time") as HTMLSelectElement).value).toBe("custom");
    expect((screen.getByLabelText("From") as HTMLInputElement).value).toBe(toLocal(new Date(Date.UTC(2026, 11, 7, 9, 2))));
  });

  it("reads its filters from the URL, kinds by name", async () => {
    const asked: Asked = { listed: [], watched: [] };
    serve({ path: "/history?m=node-20&c=acme/ui&kind=run_started&kind=step_failed&prefix=acme/", asked });
    await untilShown(["run started"]);
    expect(asked.listed).toHaveLength(1);
    expect(asked.listed[0]).toMatchObject({
      migrationId: "node-20",
      candidateId: "acme/ui",
      candidateIdPrefix: "acme/",
      kinds: [EventKind.RUN_STARTED, EventKind.STEP_FAILED],
    });
    expect((screen.getByLabelText("Migration") as HTMLSelectElement).value).toBe("node-20");
    expect((screen.getByLabelText("Candidate id") as HTMLInputElement).value).toBe("acme/ui");
    expect((screen.getByLabelText("Candidate id prefix") as HTMLInputElement).value).toBe("acme/");
    const kinds = within(screen.getByRole("group", { name: "Kinds" }));
    const ticked = kinds.getAllByRole("checkbox").filter((c) => (c as HTMLInputElement).checked);
    expect(ticked.map((c) => c.parentElement!.textContent)).toEqual(["run started", "step failed"]);
    expect(cells(rows()[0]).slice(1, 4)).toEqual(["run started", " (execution 1)", "bo"]);
  });

  it("understands the kind numbers of older links; unknown kinds are left out", async () => {
    const asked: Asked = { listed: [], watched: [] };
    const page = serve({ path: `/history?kind=${EventKind.RUN_STARTED}&kind=nope&kind=EVENT_KIND_STEP_FAILED&kind=99`, asked });
    await untilShown(["step failed", "run started", "run started"]);
    expect(asked.listed[0].kinds).toEqual([EventKind.RUN_STARTED, EventKind.STEP_FAILED]);
    // The next change writes them by name.
    fireEvent.click(within(screen.getByRole("group", { name: "Kinds" })).getByRole("checkbox", { name: "step failed" }));
    await untilShown(["run started", "run started"]);
    expect(page.location()).toBe("/history?kind=run_started");
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
    serve({ path: "/history?m=node-20&kind=step_failed" });
    expect(await screen.findByText("No event yet.")).toBeTruthy();
  });
});

describe("eventIdAfter", () => {
  it("orders event ids by time, then sequence, as numbers", () => {
    expect(eventIdAfter("1700000000001-0", "1700000000000-9")).toBe(true);
    expect(eventIdAfter("1700000000000-10", "1700000000000-9")).toBe(true);
    expect(eventIdAfter("1700000000000-9", "1700000000000-10")).toBe(false);
    expect(eventIdAfter("1000-0", "999-0")).toBe(true);
    expect(eventIdAfter("5-0", "5-0")).toBe(false);
    expect(eventIdAfter("5-0", "")).toBe(true);
  });
});
