import { useEffect, useRef, useState } from "react";
import uPlot from "uplot";
import { dayMs, niceCeil, type BurndownSeries } from "./chartSeries";

// Charts are drawn by uPlot (small, fast, canvas): the burndown of a
// Migration (Candidates remaining and completed), the activity of each
// Migration on the fleet metrics page, and a sparkline per Migration on the
// home page. The series are shaped by the pure functions of chartSeries.ts;
// every chart gets explicit domains (the x-axis over the data's time range,
// the y-axis from zero), labelled axes and a legend of names, and says what
// it shows in words for those who cannot see the canvas.

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

function usePlot(make: (el: HTMLDivElement) => uPlot | null, deps: unknown[]) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!ref.current) return;
    const plot = make(ref.current);
    return () => plot?.destroy();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return ref;
}

// Whole numbers only on a count axis.
const countIncrs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000];

const axis = (label: string, extra: Partial<uPlot.Axis> = {}): uPlot.Axis => ({
  label,
  stroke: cssVar("--fg-muted"),
  grid: { stroke: cssVar("--border"), width: 1 },
  ticks: { stroke: cssVar("--border"), width: 1 },
  ...extra,
});

const when = (ms: number) => new Date(ms).toLocaleString();
const dayOf = (ms: number) => new Date(ms).toLocaleDateString(undefined, { timeZone: "UTC" });

export function Sparkline({ values, label }: { values: number[]; label: string }) {
  const ref = usePlot(
    (el) =>
      values.length === 0
        ? null
        : new uPlot(
            {
              width: 120,
              height: 28,
              cursor: { show: false },
              legend: { show: false },
              scales: { x: { time: false } },
              axes: [{ show: false }, { show: false }],
              series: [{}, { stroke: cssVar("--accent"), width: 1.5, fill: cssVar("--accent-soft") }],
            },
            [values.map((_, i) => i), values],
            el,
          ),
    [values.join(",")],
  );
  return <div ref={ref} className="sparkline" role="img" aria-label={label} />;
}

// Burndown draws Candidates remaining (and completed) over time, from the
// series burndownSeries shaped.
export function Burndown({ series: s }: { series: BurndownSeries }) {
  const [figures, setFigures] = useState(false);
  const ref = usePlot(
    (el) =>
      s.t.length === 0
        ? null
        : new uPlot(
            {
              width: Math.min(el.clientWidth || 640, 900),
              height: 240,
              scales: {
                x: { time: true, range: [s.xMin / 1000, s.xMax / 1000] },
                y: { range: [0, s.yMax] },
              },
              legend: { live: false },
              series: [
                { label: "Time" },
                { label: "Remaining", stroke: cssVar("--accent"), width: 2, fill: cssVar("--accent-soft") },
                { label: "Completed", stroke: cssVar("--ok"), width: 2 },
              ],
              axes: [axis("Time"), axis("Candidates", { incrs: countIncrs, size: 60 })],
            },
            [s.t.map((t) => t / 1000), s.remaining, s.completed],
            el,
          ),
    [JSON.stringify(s)],
  );
  const summary = `${s.remainingNow} of ${s.total} Candidates remaining · ${s.completedNow} completed`;
  return (
    <figure className="burndown">
      <div
        ref={ref}
        className="chart"
        role="img"
        aria-label={`Burndown: Candidates remaining and completed, ${when(s.xMin)} to ${when(s.xMax)}; now ${summary}`}
      />
      <figcaption>
        {summary}{" "}
        <button type="button" className="link" aria-expanded={figures} onClick={() => setFigures(!figures)}>
          {figures ? "Hide the figures" : "Show the figures"}
        </button>
      </figcaption>
      {figures && (
        <table className="grid compact" aria-label="Burndown figures">
          <thead>
            <tr>
              <th>Time</th>
              <th className="num">Remaining</th>
              <th className="num">Completed</th>
            </tr>
          </thead>
          <tbody>
            {s.t.map((t, i) => (
              <tr key={t}>
                <td>{when(t)}</td>
                <td className="num">{s.remaining[i]}</td>
                <td className="num">{s.completed[i]}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </figure>
  );
}

// ActivityChart draws, per UTC day, the events recorded (bars) and the
// Candidates completed (a line) of one Migration.
export function ActivityChart({ days, events, completed }: { days: number[]; events: number[]; completed: number[] }) {
  const ref = usePlot(
    (el) =>
      days.length === 0
        ? null
        : new uPlot(
            {
              width: Math.min(el.clientWidth || 560, 720),
              height: 160,
              scales: {
                // Half a day either side, so the first and last bars show whole.
                x: { time: true, range: [(days[0] - dayMs / 2) / 1000, (days[days.length - 1] + dayMs / 2) / 1000] },
                y: { range: [0, niceCeil(Math.max(...events, ...completed))] },
              },
              legend: { live: false },
              series: [
                { label: "Day" },
                {
                  label: "Events",
                  stroke: cssVar("--accent"),
                  fill: cssVar("--accent-soft"),
                  paths: uPlot.paths.bars!({ size: [0.7, 24] }),
                  points: { show: false },
                },
                { label: "Completed", stroke: cssVar("--ok"), width: 2 },
              ],
              axes: [axis("Day (UTC)"), axis("Per day", { incrs: countIncrs, size: 50 })],
            },
            [days.map((d) => d / 1000), events, completed],
            el,
          ),
    [days.join(","), events.join(","), completed.join(",")],
  );
  return (
    <div
      ref={ref}
      className="chart"
      role="img"
      aria-label={
        days.length === 0
          ? "Activity: no day yet"
          : `Activity per day, ${dayOf(days[0])} to ${dayOf(days[days.length - 1])}: events ${events.join(", ")}; completed ${completed.join(", ")}`
      }
    />
  );
}
