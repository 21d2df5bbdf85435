import { useMemo } from "react";
import { useSearchParams } from "react-router";
import type { EventKind } from "../gen/loom/v1/history_service_pb";
import { eventKindLabel } from "../format";
import { EventLog } from "../components/EventLog";
import { useFleet } from "../data/metrics";
import { Empty, ErrorBox, Loading } from "../components/Common";
import { useTitle } from "../title";
import {
  fromLocalInput,
  kindGroups,
  parseTime,
  quickRanges,
  readFilters,
  toLocalInput,
  withKinds,
} from "../historyFilters";

// The lifecycle event log of one Migration (history is kept per Migration),
// filterable by Candidate (exact id or id prefix), kinds and time range,
// live. The filters live in the URL (historyFilters.ts).
export function HistoryPage() {
  const fleet = useFleet();
  const [params, setParams] = useSearchParams();
  const f = readFilters(params);
  const migrations = fleet.data?.migrations.map((s) => s.migration!) ?? [];
  const migrationId = f.migrationId ?? migrations[0]?.id ?? "";
  useTitle("History", migrations.find((m) => m.id === migrationId)?.name || migrationId);
  // A relative time counts back from when the URL says it: the range then
  // stays put while the page pages and follows.
  const { from, to } = f;
  const range = useMemo(() => {
    const now = Date.now();
    return { startMs: parseTime(from, now), endMs: parseTime(to, now) };
  }, [from, to]);
  if (fleet.isPending) return <Loading what="the fleet" />;
  if (fleet.isError) return <ErrorBox error={fleet.error} />;
  const replace = (next: URLSearchParams) => setParams(next, { replace: true });
  const set = (k: string, v: string) => {
    const next = new URLSearchParams(params);
    if (v) next.set(k, v);
    else next.delete(k);
    replace(next);
  };
  const chosen = new Set(f.kinds);
  const setKinds = (kinds: Iterable<EventKind>) => replace(withKinds(params, kinds));
  const toggle = (ks: EventKind[], on: boolean) => {
    const next = new Set(chosen);
    for (const k of ks) {
      if (on) next.add(k);
      else next.delete(k);
    }
    setKinds(next);
  };
  const quick = quickRanges.some((q) => q.value === from) && !to;
  const timeChoice = quick ? from : from || to ? "custom" : "";
  const chooseTime = (v: string) => {
    const next = new URLSearchParams(params);
    next.delete("to");
    if (v === "custom") {
      // Start from what was shown (or the last day), to the minute.
      const start = range.startMs ?? Date.now() - 86_400_000;
      next.set("from", new Date(Math.floor(start / 60_000) * 60_000).toISOString());
    } else if (v) next.set("from", v);
    else next.delete("from");
    replace(next);
  };
  const kindsSummary =
    f.kinds.length === 0 ? "all" : f.kinds.length <= 2 ? f.kinds.map(eventKindLabel).join(", ") : `${f.kinds.length} kinds`;
  return (
    <>
      <div className="page-head">
        <h1>History</h1>
      </div>
      <form className="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Migration
          <select value={migrationId} onChange={(e) => set("m", e.target.value)}>
            {migrations.map((m) => (
              <option key={m.id} value={m.id}>
                {m.name || m.id}
              </option>
            ))}
          </select>
        </label>
        <label>
          Candidate id
          <input value={f.candidateId} onChange={(e) => set("c", e.target.value.trim())} placeholder="all" />
        </label>
        <label>
          Candidate id prefix
          <input
            value={f.candidatePrefix}
            onChange={(e) => set("prefix", e.target.value.trim())}
            placeholder="e.g. acme/"
          />
        </label>
        <details className="kind-picker">
          <summary>
            Kinds: <span>{kindsSummary}</span>
          </summary>
          <div role="group" aria-label="Kinds" className="kind-groups">
            {kindGroups.map((g) => {
              const n = g.kinds.filter((k) => chosen.has(k)).length;
              return (
                <fieldset key={g.name}>
                  <legend>
                    <label>
                      <input
                        type="checkbox"
                        checked={n === g.kinds.length}
                        ref={(el) => {
                          if (el) el.indeterminate = n > 0 && n < g.kinds.length;
                        }}
                        onChange={(e) => toggle(g.kinds, e.target.checked)}
                      />
                      {g.name}
                    </label>
                  </legend>
                  {g.kinds.map((k) => (
                    <label key={k}>
                      <input type="checkbox" checked={chosen.has(k)} onChange={(e) => toggle([k], e.target.checked)} />
                      {eventKindLabel(k)}
                    </label>
                  ))}
                </fieldset>
              );
            })}
            <button type="button" onClick={() => setKinds([])} disabled={f.kinds.length === 0}>
              Any kind
            </button>
          </div>
        </details>
        <label>
          Time
          <select value={timeChoice} onChange={(e) => chooseTime(e.target.value)}>
            <option value="">any time</option>
            {quickRanges.map((q) => (
              <option key={q.value} value={q.value}>
                {q.label}
              </option>
            ))}
            <option value="custom">custom…</option>
          </select>
        </label>
        {timeChoice === "custom" && (
          <>
            <label>
              From
              <input
                type="datetime-local"
                value={toLocalInput(range.startMs)}
                onChange={(e) => set("from", fromLocalInput(e.target.value))}
              />
            </label>
            <label>
              To
              <input
                type="datetime-local"
                value={toLocalInput(range.endMs)}
                onChange={(e) => set("to", fromLocalInput(e.target.value))}
              />
            </label>
          </>
        )}
      </form>
      {migrationId ? (
        <EventLog
          migrationId={migrationId}
          candidateId={f.candidateId}
          kinds={f.kinds}
          range={{ candidatePrefix: f.candidatePrefix, ...range }}
        />
      ) : (
        <Empty>No Migration yet.</Empty>
      )}
    </>
  );
}
