import { EventKind } from "./gen/loom/v1/history_service_pb";

// The history page's filters as its URL keeps them, so a link reproduces
// the view:
//
//   m=<migration id>          c=<exact Candidate id>   prefix=<Candidate id prefix>
//   kind=step_failed&kind=run_started   (the enum's names, lower case, no
//                                        EVENT_KIND_; the numbers of older
//                                        links are still understood)
//   from=1h | 1d | 7d | <ISO time>      to=<ISO time> (or relative, as from)
//
// A relative time counts back from when the page reads it.

// The kinds, grouped as an operator looks for them.
export const kindGroups: { name: string; kinds: EventKind[] }[] = [
  { name: "Migrations", kinds: [EventKind.MIGRATION_ANNOUNCED, EventKind.MIGRATION_UPDATED, EventKind.MIGRATION_DELETED] },
  {
    name: "Candidates",
    kinds: [EventKind.CANDIDATES_DISCOVERED, EventKind.CANDIDATE_DISCOVERED, EventKind.CANDIDATE_INPUTS_UPDATED],
  },
  { name: "Runs", kinds: [EventKind.RUN_STARTED, EventKind.RUN_COMPLETED, EventKind.RUN_CANCELLED] },
  {
    name: "Steps",
    kinds: [
      EventKind.STEP_DISPATCHED,
      EventKind.DISPATCH_FAILED,
      EventKind.STEP_REPORTED,
      EventKind.STEP_FAILED,
      EventKind.STEP_RETRIED,
      EventKind.REVIEW_FINISHED,
      EventKind.STEP_MARKED_MERGED,
      EventKind.STEP_SKIPPED,
      EventKind.PR_ADOPTED,
    ],
  },
  {
    name: "Rollouts",
    kinds: [
      EventKind.ROLLOUT_STARTED,
      EventKind.ROLLOUT_PAUSED,
      EventKind.ROLLOUT_RESUMED,
      EventKind.ROLLOUT_UPDATED,
      EventKind.ROLLOUT_AWAITING_APPROVAL,
      EventKind.ROLLOUT_CANCELLED,
      EventKind.ROLLOUT_COMPLETED,
    ],
  },
];

// Every kind but UNSPECIFIED, in the enum's order.
export const allKinds = Object.values(EventKind).filter((v): v is EventKind => typeof v === "number" && v !== 0);

// kindName is a kind as the URL spells it: "step_failed".
export const kindName = (k: EventKind) => EventKind[k].toLowerCase();

// parseKind reads a kind of the URL: its name ("step_failed", any case,
// with or without EVENT_KIND_) or, from older links, its number. Anything
// else is 0.
export function parseKind(s: string): EventKind | 0 {
  const t = s.trim();
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    return (allKinds as number[]).includes(n) ? (n as EventKind) : 0;
  }
  const v = (EventKind as unknown as Record<string, number | string>)[t.toUpperCase().replace(/^EVENT_KIND_/, "")];
  return typeof v === "number" && v !== 0 ? (v as EventKind) : 0;
}

// The quick choices of the time range, as `from` keeps them.
export const quickRanges: { value: string; label: string }[] = [
  { value: "1h", label: "last hour" },
  { value: "1d", label: "last day" },
  { value: "7d", label: "last 7 days" },
];

const units: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };

// parseTime reads a time of the URL: relative to now ("1h", "30m", "7d":
// that long ago) or an ISO time. Anything else is undefined (no bound).
export function parseTime(s: string | null, now: number): number | undefined {
  if (!s) return undefined;
  const rel = /^(\d+)([mhd])$/.exec(s.trim());
  if (rel) return now - Number(rel[1]) * units[rel[2]];
  const ms = Date.parse(s);
  return Number.isNaN(ms) ? undefined : ms;
}

export type HistoryFilters = {
  migrationId: string | null;
  candidateId: string;
  candidatePrefix: string;
  kinds: EventKind[];
  from: string;
  to: string;
};

// readFilters reads the filters of the URL's query; kinds come back once
// each, in the enum's order.
export function readFilters(params: URLSearchParams): HistoryFilters {
  const kinds = new Set(params.getAll("kind").map(parseKind));
  return {
    migrationId: params.get("m"),
    candidateId: params.get("c") ?? "",
    candidatePrefix: params.get("prefix") ?? "",
    kinds: allKinds.filter((k) => kinds.has(k)),
    from: params.get("from") ?? "",
    to: params.get("to") ?? "",
  };
}

// withKinds is params with its kinds replaced, by name, in the enum's
// order.
export function withKinds(params: URLSearchParams, kinds: Iterable<EventKind>): URLSearchParams {
  const next = new URLSearchParams(params);
  const set = new Set(kinds);
  next.delete("kind");
  for (const k of allKinds) if (set.has(k)) next.append("kind", kindName(k));
  return next;
}

// toLocalInput is a time as a datetime-local input shows it (local time,
// to the minute); fromLocalInput reads one back as an ISO time.
export function toLocalInput(ms: number | undefined): string {
  if (ms === undefined) return "";
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function fromLocalInput(v: string): string {
  if (!v) return "";
  const ms = new Date(v).getTime();
  return Number.isNaN(ms) ? "" : new Date(ms).toISOString();
}
