import { useState, type ReactNode } from "react";
import { beforeAll, describe, expect, it } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { Code, ConnectError } from "@connectrpc/connect";
import { mount, untilAborted } from "./test/mount";
import { CommandPalette, parsePaletteQuery } from "./components/CommandPalette";
import { CandidatePage } from "./pages/CandidatePage";
import { MetricsService } from "./gen/loom/v1/metrics_service_pb";
import { DiscoveryService, type ListCandidatesRequest } from "./gen/loom/v1/discovery_service_pb";
import { RegistryService } from "./gen/loom/v1/registry_service_pb";
import { RunService } from "./gen/loom/v1/run_service_pb";
import { HistoryService } from "./gen/loom/v1/history_service_pb";
import { CandidateStatus } from "./gen/loom/v1/candidate_pb";

// cmdk measures its list and scrolls the selected item into view: jsdom
// does neither.
beforeAll(() => {
  globalThis.ResizeObserver ??= class {
    observe() {}
    unobserve() {}
    disconnect() {}
  } as unknown as typeof ResizeObserver;
  Element.prototype.scrollIntoView ??= function () {};
});

describe("what is typed in the palette", () => {
  it("reads an action first, key=value pairs anywhere, and the rest as a name or id prefix", () => {
    expect(parsePaletteQuery("start acme/ team=payments")).toEqual({ verb: "start", text: "acme/", metadata: { team: "payments" } });
    expect(parsePaletteQuery("  History  Go 1.23 ")).toEqual({ verb: "history", text: "Go 1.23", metadata: {} });
    expect(parsePaletteQuery("tier=1 lang=go")).toEqual({ verb: null, text: "", metadata: { tier: "1", lang: "go" } });
    // A value may hold "=", a word "=x" is no pair, an action is one only first.
    expect(parsePaletteQuery("q=a=b =x acme start")).toEqual({ verb: null, text: "=x acme start", metadata: { q: "a=b" } });
  });
});

describe("the palette", () => {
  const migrations = [
    { id: "go-upgrade", name: "Go 1.23" },
    { id: "node-20", name: "Node 20", viewersMayPreview: true },
  ];
  const candidates: Record<string, { id: string; metadata: Record<string, string> }[]> = {
    "go-upgrade": [
      { id: "acme/billing", metadata: { team: "payments" } },
      { id: "acme/search", metadata: { team: "discovery" } },
    ],
    "node-20": [{ id: "acme/web", metadata: { team: "payments" } }],
  };

  // The palette open on a page of the fleet, and the pages it may open;
  // the ListCandidates requests it makes are kept.
  // On a Candidate's page (route), the palette stands for the page.
  const operator = [`/${RunService.typeName}/PreviewRun`, `/${RunService.typeName}/StartRun`];
  function open(path: string, asked: ListCandidatesRequest[] = [], route = "*", viewer = false, element?: ReactNode) {
    return mount({
      path,
      route,
      element: element ?? <CommandPalette open onClose={() => {}} />,
      also: route === "*" ? [{ route: "/m/:migrationId/c/*", element: <CandidatePage /> }] : [],
      routes: (r) => {
        r.service(MetricsService, { getFleetOverview: () => ({ migrations: migrations.map((migration) => ({ migration })) }) });
        r.service(DiscoveryService, {
          listCandidates: (req) => {
            asked.push(req);
            return {
              candidates: (candidates[req.migrationId] ?? [])
                .filter((c) => c.id.startsWith(req.idPrefix) && Object.entries(req.metadata).every(([k, v]) => c.metadata[k] === v))
                .map((c) => ({ ...c, kind: "service" })),
            };
          },
          getCandidate: (req) => ({ candidate: { id: req.candidateId, kind: "service", status: CandidateStatus.NOT_STARTED } }),
        });
        r.service(RegistryService, {
          getCaller: () =>
            viewer
              ? { authenticated: true, role: "viewer", allowedIfMigrationAllows: [`/${RunService.typeName}/PreviewRun`] }
              : { authenticated: true, allowedProcedures: operator },
          getMigration: (req) => ({ migration: migrations.find((m) => m.id === req.migrationId) }),
        });
        r.service(RunService, {
          watchRun: () => {
            throw new ConnectError("no Run", Code.NotFound);
          },
          previewRun: (req) => ({ steps: [{ stepName: "bump-go", skipped: true, skipReason: `nothing to do in ${req.candidateId}` }] }),
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
  const type = (text: string) => fireEvent.change(screen.getByRole("combobox"), { target: { value: text } });
  const options = () => screen.queryAllByRole("option").map((o) => o.textContent);

  it("offers the page's Migration's history and metrics before anything is typed", async () => {
    const page = open("/m/go-upgrade");
    await waitFor(() => expect(options()).toContain("History of Go 1.23 go-upgrade"));
    expect(options()).toContain("Metrics of Go 1.23 go-upgrade");
    // Other Migrations are offered to open only.
    expect(options()).toContain("Node 20 node-20");
    expect(options()).not.toContain("History of Node 20 node-20");
    fireEvent.click(screen.getByRole("option", { name: /Metrics of Go 1.23/ }));
    expect(page.location()).toBe("/m/go-upgrade?tab=metrics");
  });

  it("acts on any Migration found by name", async () => {
    const page = open("/");
    type("history node");
    await waitFor(() => expect(options()).toEqual(["History of Node 20 node-20"]));
    fireEvent.click(screen.getByRole("option"));
    expect(page.location()).toBe("/history?m=node-20");
  });

  it("finds Candidates by metadata, the page's Migration first, then across the fleet", async () => {
    const asked: ListCandidatesRequest[] = [];
    const page = open("/m/node-20", asked);
    type("team=payments");
    await waitFor(() => expect(options()).toEqual(["acme/web Node 20 team=payments", "acme/billing Go 1.23 team=payments"]));
    expect(asked.at(-1)).toMatchObject({ idPrefix: "", metadata: { team: "payments" } });
    // Metadata and an id prefix together; the Candidate's history.
    type("history team=payments acme/b");
    await waitFor(() => expect(options()).toEqual(["History of acme/billing Go 1.23 team=payments"]));
    fireEvent.click(screen.getByRole("option"));
    expect(page.location()).toBe("/history?m=go-upgrade&c=acme%2Fbilling");
  });

  it("starts a Candidate: its page opens with the preview and start form", async () => {
    open("/");
    type("start acme/bi");
    fireEvent.click(await screen.findByRole("option", { name: /Start or preview acme\/billing/ }));
    const form = await screen.findByRole("form", { name: "Preview or start a Run" });
    expect(within(form).getByRole("button", { name: "Start Run" })).toBeTruthy();
  });

  it("offers the Candidate of the page its start and history", async () => {
    open("/m/go-upgrade/c/acme/billing", [], "/m/:migrationId/c/*");
    await waitFor(() => expect(options()).toContain("Start or preview acme/billing"));
    expect(options()).toContain("History of acme/billing");
    type("start");
    await waitFor(() => expect(options()).toEqual(["Start or preview acme/billing"]));
  });

  it("offers a viewer Preview only where the Migration allows it, and never Start", async () => {
    open("/", [], "*", true);
    type("start acme/");
    await waitFor(() => expect(options()).toEqual(["Preview acme/web Node 20"]));
    fireEvent.click(screen.getByRole("option"));
    const form = await screen.findByRole("form", { name: "Preview a Run" });
    expect(within(form).queryByRole("button", { name: /Start/ })).toBeNull();
  });

  it("leaves the last Candidate's preview behind when it opens another Candidate", async () => {
    // A Candidate's page with the palette over it, as the console has it.
    function PageAndPalette() {
      const [palette, setPalette] = useState(false);
      return (
        <>
          <button type="button" onClick={() => setPalette(true)}>
            Ctrl-K
          </button>
          <CandidatePage />
          <CommandPalette open={palette} onClose={() => setPalette(false)} />
        </>
      );
    }
    open("/m/go-upgrade/c/acme/billing", [], "/m/:migrationId/c/*", false, <PageAndPalette />);
    fireEvent.click(await screen.findByRole("button", { name: "Preview or start…" }));
    fireEvent.click(within(screen.getByRole("form")).getByRole("button", { name: "Preview" }));
    expect(await screen.findByText("nothing to do in acme/billing")).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: "Ctrl-K" }));
    type("acme/se");
    fireEvent.click(await screen.findByRole("option", { name: /acme\/search/ }));
    expect((await screen.findByRole("heading", { level: 1, name: "acme/search" })).textContent).toBe("acme/search");
    expect(screen.queryByText("nothing to do in acme/billing")).toBeNull();
    expect(screen.queryByRole("form")).toBeNull();
  });
});
