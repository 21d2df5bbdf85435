import { useEffect, useRef } from "react";
import uPlot from "uplot";

// Charts are drawn by uPlot (small, fast, canvas): a burndown of Candidates
// started and completed, and a sparkline per Migration on the home page.

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

export function Burndown({ points }: { points: { t: number; started: number; completed: number }[] }) {
  const ref = usePlot(
    (el) => {
      if (points.length === 0) return null;
      let s = 0;
      let c = 0;
      const started = points.map((p) => (s += p.started));
      const completed = points.map((p) => (c += p.completed));
      return new uPlot(
        {
          width: Math.min(el.clientWidth || 640, 900),
          height: 220,
          series: [
            {},
            { label: "started (total)", stroke: cssVar("--accent"), width: 2 },
            { label: "completed (total)", stroke: cssVar("--ok"), width: 2 },
          ],
          axes: [{ stroke: cssVar("--fg-muted") }, { stroke: cssVar("--fg-muted") }],
        },
        [points.map((p) => p.t / 1000), started, completed],
        el,
      );
    },
    [JSON.stringify(points)],
  );
  return <div ref={ref} className="chart" role="img" aria-label="Burndown: Candidates started and completed over time" />;
}
