// Pure functions that shape the charts' series from GetMigrationMetrics'
// figures, so what a chart draws can be checked without a canvas.

export const hourMs = 3600_000;
export const dayMs = 24 * hourMs;

// The ranges the burndown offers, in days.
export const burndownRanges = [7, 14, 30, 90] as const;
export type BurndownRange = (typeof burndownRanges)[number];

// One burndown bucket as the API gives it: its start (ms since the epoch),
// Candidates started for the first time and Candidates completed in it.
export type Bucket = { t: number; started: number; completed: number };

// What the burndown chart draws: at each time (ms), the Candidates not
// completed (remaining) and completed by then; the x and y domains.
export type BurndownSeries = {
  t: number[];
  remaining: number[];
  completed: number[];
  xMin: number;
  xMax: number;
  yMax: number;
  total: number;
  remainingNow: number;
  completedNow: number;
};

// burndownSeries turns the buckets (oldest first, contiguous, the last one
// holding now, as GetMigrationMetrics answers them) and the Migration's
// Candidate counts into remaining and completed over time, for the last
// `days` days.
//
// The counts anchor the series: remaining now is total − completed (the
// not-completed Candidates), and going back in time each bucket's
// completions are added back. So the last point is exactly what the
// Migration's counts say, whatever the buckets left out (completions
// older than the buckets the server keeps). Remaining counts today's
// Candidates: those discovered later are counted from the start.
//
// Points lie at each bucket's end (the figure after it), the first at the
// first bucket's start (the figure before it), the last at now (clamped
// into the current bucket): one bucket makes a line an hour wide, not a
// point with no time range.
export function burndownSeries(
  buckets: Bucket[],
  counts: { total: number; completed: number },
  opts: { unitMs: number; days: number; now?: number },
): BurndownSeries {
  const total = Math.max(counts.total, 0);
  const completedNow = Math.min(Math.max(counts.completed, 0), total);
  const remainingNow = total - completedNow;
  const empty = { t: [], remaining: [], completed: [], xMin: 0, xMax: 0, yMax: niceCeil(total), total, remainingNow, completedNow };
  if (buckets.length === 0) return empty;
  const last = buckets[buckets.length - 1];
  const now = opts.now ?? Date.now();
  const end = Math.min(Math.max(now, last.t + 60_000), last.t + opts.unitMs);
  const from = end - opts.days * dayMs;

  // Completions after each bucket's end, from the newest bucket back.
  const after: number[] = new Array(buckets.length);
  for (let i = buckets.length - 1, acc = 0; i >= 0; i--) {
    after[i] = acc;
    acc += buckets[i].completed;
  }
  const at = (laterCompletions: number) => ({
    remaining: remainingNow + laterCompletions,
    completed: Math.max(completedNow - laterCompletions, 0),
  });

  const t: number[] = [];
  const remaining: number[] = [];
  const completed: number[] = [];
  const push = (time: number, p: { remaining: number; completed: number }) => {
    t.push(time);
    remaining.push(p.remaining);
    completed.push(p.completed);
  };
  buckets.forEach((b, i) => {
    // Buckets that start in the range (the last one always does).
    if (b.t < from) return;
    if (t.length === 0) push(b.t, at(after[i] + b.completed));
    push(i === buckets.length - 1 ? end : b.t + opts.unitMs, at(after[i]));
  });
  const yMax = niceCeil(Math.max(total, ...remaining));
  return { t, remaining, completed, xMin: t[0], xMax: t[t.length - 1], yMax, total, remainingNow, completedNow };
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten (at least 1), the
// top of a y-axis that starts at zero.
export function niceCeil(v: number): number {
  if (v <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// dailySeries lays counts by UTC day onto the given days (oldest first),
// 0 for a day with none: the buckets of a daily burndown onto the 30 days
// of events per day.
export function dailySeries(days: number[], counts: { t: number; count: number }[]): number[] {
  const byDay = new Map<number, number>();
  for (const c of counts) {
    const d = c.t - (((c.t % dayMs) + dayMs) % dayMs);
    byDay.set(d, (byDay.get(d) ?? 0) + c.count);
  }
  return days.map((d) => byDay.get(d) ?? 0);
}
