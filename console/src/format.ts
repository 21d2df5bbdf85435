import { timestampDate, type Timestamp, type Duration } from "@bufbuild/protobuf/wkt";
import { CandidateStatus } from "./gen/loom/v1/candidate_pb";
import { EventKind } from "./gen/loom/v1/history_service_pb";
import { RolloutState } from "./gen/loom/v1/rollout_pb";
import { RunStatus, StepStatus } from "./gen/loom/v1/run_pb";

// Enum names in lower case, as the domain model spells them: protobuf-es
// drops the prefix, so STEP_STATUS_AWAITING_REVIEW is AWAITING_REVIEW here
// and "awaiting_review" on screen and in URLs.
function enumLabel(e: Record<number, string>, v: number): string {
  const name = e[v];
  return name ? name.toLowerCase() : String(v);
}

export const stepStatusLabel = (s: StepStatus) => enumLabel(StepStatus, s);
export const runStatusLabel = (s: RunStatus) => enumLabel(RunStatus, s);
export const candidateStatusLabel = (s: CandidateStatus) => enumLabel(CandidateStatus, s);
export const rolloutStateLabel = (s: RolloutState) => enumLabel(RolloutState, s);
export const eventKindLabel = (k: EventKind) => enumLabel(EventKind, k).replaceAll("_", " ");

export function parseEnum<T extends number>(e: Record<string, string | number>, label: string | null): T | 0 {
  if (!label) return 0;
  const v = e[label.toUpperCase()];
  return typeof v === "number" ? (v as T) : 0;
}

export function time(ts?: Timestamp): string {
  if (!ts) return "—";
  return timestampDate(ts).toLocaleString();
}

export function ago(ts?: Timestamp, now = Date.now()): string {
  if (!ts) return "—";
  const s = Math.round((now - timestampDate(ts).getTime()) / 1000);
  if (s < 60) return `${Math.max(s, 0)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function duration(d?: Duration): string {
  if (!d) return "—";
  const ms = Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${(s / 60).toFixed(1)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

export function n(v: bigint | number | undefined): number {
  return v === undefined ? 0 : Number(v);
}
