import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type uPlot from "uplot";
import { mount } from "./test/mount";
import { MigrationMetricsView } from "./components/MigrationMetrics";
import { burndownSeries, dailySeries, dayMs, hourMs, niceCeil } from "./components/chartSeries";
import { MetricsService, MigrationMetricsSchema, type MigrationMetrics } from "./gen/loom/v1/metrics_service_pb";

// Every uPlot the page makes, to read the domains it was given: the canvas
// itself draws nothing under jsdom.
const plots = vi.hoisted(() => [] as uPlot[]);
vi.mock("uplot", async (importOriginal) => {
  const real = ((await importOriginal()) as { default: typeof uPlot }).default;
  class Recorded extends real {
    constructor(...args: ConstructorParameters<typeof uPlot>) {
      super(...args);
      plots.push(this as unknown as uPlot);
    }
  }
  return { default: Recorded };
});

// Now is 10:30 UTC on 7 December 2026; the current bucket started at 10:00.
const now = Date.UTC(2026, 11, 7, 10, 30);
const hour = Date.UTC(2026, 11, 7, 10);

beforeEach(() => {
  plots.length = 0;
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(now);
});
afterEach(() => vi.useRealTimers());

type Point = { t: number; started: number; completed: number };
const figures = (burndown: Point[], total: number, completed: number): MigrationMetrics =>
  create(MigrationMetricsSchema, {
    migrationId: "go-upgrade",
    candidates: { total: BigInt(total), completed: BigInt(completed), running: 2n, notStarted: BigInt(total - completed - 2) },
    burndown: burndown.map((p) => ({ start: timestampFromMs(p.t), started: BigInt(p.started), completed: BigInt(p.completed) })),
  });

function serve(m: MigrationMetrics, path = "/m/go-upgrade?tab=metrics") {
  return mount({
    path,
    route: "/m/:migrationId",
    element: <MigrationMetricsView migrationId="go-upgrade" />,
    routes: (r) => r.service(MetricsService, { getMigrationMetrics: () => ({ metrics: m }) }),
  });
}

// The burndown's uPlot, once drawn, and what it was given.
async function chart() {
  await screen.findByRole("img", { name: /^Burndown:/ });
  await waitFor(() => expect(plots.length).toBeGreaterThan(0));
  const u = plots[plots.length - 1];
  // The domains uPlot settled on, as the axes draw them.
  const { x, y } = u.scales;
  return {
    u,
    xMs: [x.min! * 1000, x.max! * 1000],
    y: [y.min, y.max],
    times: (u.data[0] as number[]).map((t) => t * 1000),
    remaining: u.data[1] as number[],
    completed: u.data[2] as number[],
  };
}

const year = (ms: number) => new Date(ms).getUTCFullYear();

describe("the burndown", () => {
  it("with one bucket spans that hour up to now, from zero, labelled, with remaining from the counts", async () => {
    serve(figures([{ t: hour, started: 3, completed: 1 }], 40, 1));
    const c = await chart();
    // The x-axis runs over the hour of data, not 2027 to 2029.
    expect(c.xMs).toEqual([hour, now]);
    expect(year(c.xMs[0])).toBe(2026);
    expect(year(c.xMs[1])).toBe(2026);
    expect(c.u.scales.x.time).toBe(true);
    // The y-axis starts at zero and holds every Candidate.
    expect(c.y).toEqual([0, 50]);
    // Before the hour all 40 remained; now 39 do: total − completed.
    expect(c.times).toEqual([hour, now]);
    expect(c.remaining).toEqual([40, 39]);
    expect(c.completed).toEqual([0, 1]);
    // Labelled axes, and a legend that names the series (no "--").
    expect(c.u.axes.map((a) => a.label)).toEqual(["Time", "Candidates"]);
    const legend = c.u.root.querySelector(".u-legend") as HTMLElement;
    expect([...legend.querySelectorAll(".u-label")].map((l) => l.textContent)).toEqual(["Remaining", "Completed"]);
    expect(legend.textContent).not.toContain("--");
    expect(screen.getByText(/39 of 40 Candidates remaining · 1 completed/)).toBeTruthy();
  });

  it("with two buckets draws the figure before, between and now", async () => {
    serve(
      figures(
        [
          { t: hour - hourMs, started: 5, completed: 2 },
          { t: hour, started: 1, completed: 1 },
        ],
        40,
        3,
      ),
    );
    const c = await chart();
    expect(c.xMs).toEqual([hour - hourMs, now]);
    expect(c.y[0]).toBe(0);
    expect(c.times).toEqual([hour - hourMs, hour, now]);
    expect(c.remaining).toEqual([40, 38, 37]);
    expect(c.completed).toEqual([0, 2, 3]);
    // The figures, in words, match GetMigrationMetrics.
    fireEvent.click(screen.getByRole("button", { name: "Show the figures" }));
    const rows = within(screen.getByRole("table", { name: "Burndown figures" })).getAllByRole("row").slice(1);
    expect(rows.map((r) => within(r).getAllByRole("cell").slice(1).map((td) => td.textContent))).toEqual([
      ["40", "0"],
      ["38", "2"],
      ["37", "3"],
    ]);
  });

  it("with many buckets shows the range chosen, 30 days unless the URL says otherwise, and ends at the counts", async () => {
    // 45 days of hours; one Candidate completed every 6 hours, 200 in all.
    const first = hour - 45 * dayMs;
    const buckets: Point[] = [];
    for (let t = first; t <= hour; t += hourMs) buckets.push({ t, started: 1, completed: (t - first) % (6 * hourMs) === 0 ? 1 : 0 });
    const completedAll = buckets.reduce((a, b) => a + b.completed, 0);
    const page = serve(figures(buckets, 300, completedAll));
    let c = await chart();
    expect(c.xMs[1]).toBe(now);
    expect(c.xMs[0]).toBeGreaterThanOrEqual(now - 30 * dayMs);
    expect(c.xMs[0]).toBeLessThan(now - 30 * dayMs + hourMs);
    expect(c.y).toEqual([0, 500]);
    expect(c.remaining[c.remaining.length - 1]).toBe(300 - completedAll);
    expect(c.completed[c.completed.length - 1]).toBe(completedAll);
    // Remaining only goes down, completed only up, and they add up to the total.
    c.remaining.forEach((r, i) => {
      expect(r + c.completed[i]).toBe(300);
      if (i > 0) expect(r).toBeLessThanOrEqual(c.remaining[i - 1]);
    });
    expect(screen.getByRole("button", { name: "30 days" }).getAttribute("aria-pressed")).toBe("true");

    // 7 days: the x-axis starts a week ago; the last figure is the same.
    fireEvent.click(screen.getByRole("button", { name: "7 days" }));
    await waitFor(() => expect(page.location()).toBe("/m/go-upgrade?tab=metrics&range=7d"));
    expect(screen.getByRole("button", { name: "7 days" }).getAttribute("aria-pressed")).toBe("true");
    c = await chart();
    expect(c.xMs[0]).toBeGreaterThanOrEqual(now - 7 * dayMs);
    expect(c.xMs[0]).toBeLessThan(now - 7 * dayMs + hourMs);
    expect(c.remaining[c.remaining.length - 1]).toBe(300 - completedAll);
    // Every point lies in the week: 7 × 24 buckets, plus the figure before the first.
    expect(c.times.every((t) => t >= c.xMs[0] && t <= now)).toBe(true);

    // 90 days: everything from the first bucket, when all 300 remained.
    fireEvent.click(screen.getByRole("button", { name: "90 days" }));
    c = await chart();
    expect(c.xMs).toEqual([first, now]);
    expect(c.remaining[0]).toBe(300);
  });

  it("reads its range from the URL, and ignores one it does not offer", async () => {
    const buckets = [20, 10, 5, 2, 0].map((d) => ({ t: hour - d * dayMs, started: 1, completed: 1 }));
    const fortnight = serve(figures(buckets, 10, 5), "/m/go-upgrade?tab=metrics&range=14d");
    let c = await chart();
    expect(c.xMs).toEqual([hour - 10 * dayMs, now]);
    expect(screen.getByRole("button", { name: "14 days" }).getAttribute("aria-pressed")).toBe("true");
    expect(c.remaining).toEqual([9, 8, 7, 6, 5]);
    fortnight.unmount();
    plots.length = 0;
    serve(figures(buckets, 10, 5), "/m/go-upgrade?tab=metrics&range=3d");
    c = await chart();
    expect(screen.getByRole("button", { name: "30 days" }).getAttribute("aria-pressed")).toBe("true");
    expect(c.xMs).toEqual([hour - 20 * dayMs, now]);
  });

  it("says so, rather than drawing, when no Run has started", async () => {
    serve(figures([{ t: hour, started: 0, completed: 0 }], 40, 0));
    expect(await screen.findByText("No Run has started yet.")).toBeTruthy();
    expect(screen.queryByRole("img", { name: /^Burndown:/ })).toBeNull();
  });
});

describe("burndownSeries", () => {
  it("anchors on the counts when the buckets miss older completions", () => {
    const s = burndownSeries([{ t: hour, started: 0, completed: 2 }], { total: 10, completed: 7 }, { unitMs: hourMs, days: 7, now });
    expect(s.remaining).toEqual([5, 3]);
    expect(s.completed).toEqual([5, 7]);
  });

  it("gives a line an hour wide for a bucket that just started", () => {
    const s = burndownSeries([{ t: hour, started: 1, completed: 0 }], { total: 1, completed: 0 }, { unitMs: hourMs, days: 7, now: hour });
    expect([s.xMin, s.xMax]).toEqual([hour, hour + 60_000]);
  });

  it("rounds the y-axis up to 1, 2 or 5 times a power of ten", () => {
    expect([0, 1, 3, 40, 101, 300, 5000].map(niceCeil)).toEqual([1, 1, 5, 50, 200, 500, 5000]);
  });

  it("lays daily counts onto the days, 0 for a day with none", () => {
    const d0 = Date.UTC(2026, 11, 5);
    const days = [d0, d0 + dayMs, d0 + 2 * dayMs];
    expect(dailySeries(days, [{ t: d0 + 2 * dayMs, count: 4 }, { t: d0, count: 1 }, { t: d0 - dayMs, count: 9 }])).toEqual([1, 0, 4]);
  });
});
