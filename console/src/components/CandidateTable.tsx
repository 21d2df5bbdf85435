import { useEffect, useRef, useState, type RefObject } from "react";
import { Link, useSearchParams } from "react-router";
import { useCandidatesPage } from "../data/discovery";
import { useCan } from "../data/registry";
import { CandidateStatus } from "../gen/loom/v1/candidate_pb";
import { CandidateOrder, DiscoveryService } from "../gen/loom/v1/discovery_service_pb";
import type { Migration } from "../gen/loom/v1/migration_pb";
import { RolloutService } from "../gen/loom/v1/rollout_service_pb";
import { StepStatus } from "../gen/loom/v1/run_pb";
import { RunService } from "../gen/loom/v1/run_service_pb";
import { ago, candidateStatusLabel, n, parseEnum, stepStatusLabel, time } from "../format";
import { candidatesLabel, type CandidateFilterInit, type Selection } from "../selection";
import { BulkBar } from "./BulkActions";
import { Badge, candidatePath, Empty, ErrorBox } from "./Common";

const candidateStatuses = ["not_started", "running", "completed"];
const stepStatuses = ["in_progress", "open", "merged", "awaiting_review", "completed", "failed"];
const orders = ["id", "status", "current_step", "last_change"];

// Filters is the table's state as the URL holds it, so a link reproduces
// the view: ?status=running&step=bump-go&step_status=open&q=acme/&meta=team=payments&order=last_change&desc=1
export function readFilters(p: URLSearchParams) {
  const meta: Record<string, string> = {};
  for (const kv of p.getAll("meta")) {
    const i = kv.indexOf("=");
    if (i > 0) meta[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return {
    status: p.get("status") ?? "",
    kind: p.get("kind") ?? "",
    step: p.get("step") ?? "",
    stepStatus: p.get("step_status") ?? "",
    q: p.get("q") ?? "",
    meta,
    order: p.get("order") ?? "id",
    desc: p.get("desc") === "1",
    page: p.get("page") ?? "",
  };
}

export function listRequest(migrationId: string, f: ReturnType<typeof readFilters>, pageSize: number) {
  return {
    migrationId,
    status: parseEnum<CandidateStatus>(CandidateStatus, f.status),
    kind: f.kind,
    currentStep: f.step,
    currentStepStatus: parseEnum<StepStatus>(StepStatus, f.stepStatus),
    idPrefix: f.q,
    metadata: f.meta,
    orderBy: parseEnum<CandidateOrder>(CandidateOrder, f.order),
    descending: f.desc,
    pageSize,
    pageToken: f.page,
  };
}

// selectionFilter is the table's filter as a CandidateSelection's filter:
// the very fields ListCandidates is called with, so that "all matching"
// selects what the table lists.
export function selectionFilter(migrationId: string, f: ReturnType<typeof readFilters>): CandidateFilterInit {
  const r = listRequest(migrationId, f, 0);
  return {
    status: r.status,
    kind: r.kind,
    currentStep: r.currentStep,
    currentStepStatus: r.currentStepStatus,
    idPrefix: r.idPrefix,
    metadata: r.metadata,
  };
}

// filterParams are the URL parameters that filter the table (the sort
// and the page are not filters); "Clear filters" removes them all.
const filterParams = ["status", "kind", "step", "step_status", "q", "meta"];

// kindOptions are the kinds of the Migration's Candidates, by name, with
// how many Candidates are of each (Migration.candidate_kinds); the URL's
// kind is kept among them even when no Candidate is of it.
export function kindOptions(kinds: Record<string, bigint>, current: string) {
  const names = Object.keys(kinds);
  if (current && !names.includes(current)) names.push(current);
  return names.sort().map((k) => ({ value: k, label: `${k} (${n(kinds[k] ?? 0n)})` }));
}

// The metadata columns an operator chose to show, per Migration, are kept
// in localStorage under loom.columns.<migration id> (a JSON array of keys).
const columnsKey = (migrationId: string) => `loom.columns.${migrationId}`;

export function readColumns(migrationId: string): string[] {
  try {
    const v: unknown = JSON.parse(localStorage.getItem(columnsKey(migrationId)) ?? "[]");
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  } catch {
    return [];
  }
}

function useColumns(migrationId: string): [string[], (cols: string[]) => void] {
  const [chosen, setChosen] = useState(() => ({ migrationId, cols: readColumns(migrationId) }));
  const cols = chosen.migrationId === migrationId ? chosen.cols : readColumns(migrationId);
  const setCols = (next: string[]) => {
    try {
      localStorage.setItem(columnsKey(migrationId), JSON.stringify(next));
    } catch {
      // Storage full or refused: the choice lasts as long as the page.
    }
    setChosen({ migrationId, cols: next });
  };
  return [cols, setCols];
}

// Choice is one select of the filter bar; "" (any) first when anyOption.
function Choice(props: {
  label: string;
  value: string;
  options: (string | { value: string; label: string })[];
  anyOption?: boolean;
  onChange: (v: string) => void;
}) {
  return (
    <label>
      {props.label}
      <select aria-label={props.label} value={props.value} onChange={(e) => props.onChange(e.target.value)}>
        {props.anyOption && <option value="">any</option>}
        {props.options.map((o) => {
          const { value, label } = typeof o === "string" ? { value: o, label: o.replaceAll("_", " ") } : o;
          return (
            <option key={value} value={value}>
              {label}
            </option>
          );
        })}
      </select>
    </label>
  );
}

// typing tells whether keys pressed in el are text or a choice (an input
// other than a checkbox or button, a select, a text area, editable text)
// rather than the table's shortcuts.
function typing(el: Element | null) {
  if (el instanceof HTMLInputElement) return !["checkbox", "radio", "button", "submit", "reset"].includes(el.type);
  return el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement || (el instanceof HTMLElement && el.isContentEditable);
}

// useRowKeys lets the keyboard walk the table from the moment the page
// loads: j and k (and ↓ and ↑ once the focus is in the table) move between
// the Candidates' links, from the first row when none has the focus, and
// Enter opens the Candidate whose link has it. Not while typing, nor while
// a dialog is open over the page.
function useRowKeys(table: RefObject<HTMLTableElement | null>) {
  useEffect(() => {
    const onKey = (e: globalThis.KeyboardEvent) => {
      const t = table.current;
      const active = document.activeElement;
      if (!t || e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey || typing(active)) return;
      if (document.querySelector('[role="dialog"]')) return;
      const inTable = active !== null && t.contains(active);
      const down = e.key === "j" || (inTable && e.key === "ArrowDown");
      const up = e.key === "k" || (inTable && e.key === "ArrowUp");
      const links = Array.from(t.querySelectorAll<HTMLAnchorElement>("tbody td.cand-id a"));
      const row = inTable ? active.closest("tr") : null;
      const at = row ? links.findIndex((l) => row.contains(l)) : -1;
      if (e.key === "Enter" && at >= 0 && active === links[at]) {
        e.preventDefault();
        links[at].click();
        return;
      }
      if (!down && !up) return;
      const next = at < 0 ? 0 : at + (down ? 1 : -1);
      if (next >= 0 && next < links.length) {
        e.preventDefault();
        links[next].focus();
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [table]);
}

export function CandidateTable({ migration }: { migration: Migration }) {
  const [params, setParams] = useSearchParams();
  const f = readFilters(params);
  const [pageSize] = useState(50);
  // Tokens of the pages before this one, for "previous".
  const [back, setBack] = useState<string[]>([]);
  const q = useCandidatesPage(migration.id, params.toString(), listRequest(migration.id, f, pageSize));
  const [metaDraft, setMetaDraft] = useState("");
  const tableRef = useRef<HTMLTableElement>(null);
  useRowKeys(tableRef);
  const set = (changes: Record<string, string | string[] | null>, keepPage = false) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      next.delete(k);
      if (Array.isArray(v)) v.forEach((x) => next.append(k, x));
      else if (v) next.set(k, v);
    }
    if (!keepPage) {
      next.delete("page");
      setBack([]);
    }
    setParams(next, { replace: !keepPage });
  };
  // A new order starts ascending; the same one again reverses it.
  const sortBy = (key: string) => set({ order: key, desc: f.order === key && !f.desc ? "1" : null });
  // Narrow to key=value, replacing any other value of the key.
  const addMeta = (k: string, v: string) => set({ meta: [...params.getAll("meta").filter((x) => !x.startsWith(k + "=")), `${k}=${v}`] });
  const [columns, setColumns] = useColumns(migration.id);
  // The keys offered as columns: those of the Candidates on this page, and
  // the ones already chosen.
  const metaKeys = Array.from(new Set([...(q.data?.candidates.flatMap((c) => Object.keys(c.metadata)) ?? []), ...columns])).sort();
  const shown = metaKeys.filter((k) => columns.includes(k));
  const filtered = filterParams.some((k) => params.has(k));
  const clearFilters = () => {
    set(Object.fromEntries(filterParams.map((k) => [k, null])));
    setMetaDraft("");
  };
  const sortMark = (key: string) => (f.order === key ? (f.desc ? " ▼" : " ▲") : "");
  const ariaSort = (key: string) => (f.order === key ? (f.desc ? "descending" : "ascending") : "none");

  // The selection belongs to the filter it was made under: changing the
  // filter drops it (paging and sorting keep it).
  const can = useCan();
  const selectable =
    can(RolloutService.method.startRollout) ||
    can(RunService.method.bulkRetrySteps) ||
    can(RunService.method.bulkCancelRuns) ||
    can(RunService.method.bulkFinishReviews) ||
    can(RunService.method.bulkMarkStepsMerged) ||
    can(DiscoveryService.method.bulkUpdateCandidateInputs);
  const filter = selectionFilter(migration.id, f);
  const filterKey = JSON.stringify(filter);
  const [picked, setPicked] = useState<{ key: string; selection: Selection } | null>(null);
  const total = q.data ? n(q.data.totalSize) : 0;
  let selection = picked && picked.key === filterKey ? picked.selection : null;
  if (selection?.kind === "filter" && q.data) selection = { ...selection, count: total };
  const select = (s: Selection | null) => setPicked(s && (s.kind === "filter" || s.ids.length > 0) ? { key: filterKey, selection: s } : null);
  const rows = q.data?.candidates.map((c) => c.id) ?? [];
  const ids = selection?.kind === "ids" ? selection.ids : [];
  const isChecked = (id: string) => selection?.kind === "filter" || ids.includes(id);
  const allOnPage = rows.length > 0 && rows.every(isChecked);
  const someOnPage = rows.some(isChecked);
  const toggleRow = (id: string, on: boolean) => {
    if (selection?.kind === "filter") select({ kind: "ids", ids: rows.filter((r) => r !== id) });
    else select({ kind: "ids", ids: on ? [...ids, id] : ids.filter((x) => x !== id) });
  };
  const togglePage = () => {
    if (allOnPage) select(selection?.kind === "filter" ? null : { kind: "ids", ids: ids.filter((x) => !rows.includes(x)) });
    else select({ kind: "ids", ids: [...ids, ...rows.filter((r) => !ids.includes(r))] });
  };
  return (
    <section aria-label="Candidates">
      <form className="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Id starts with
          <input aria-label="Id starts with" type="search" value={f.q} onChange={(e) => set({ q: e.target.value })} placeholder="acme/" />
        </label>
        <Choice label="Status" value={f.status} options={candidateStatuses} anyOption onChange={(v) => set({ status: v })} />
        <Choice label="Kind" value={f.kind} options={kindOptions(migration.candidateKinds, f.kind)} anyOption onChange={(v) => set({ kind: v })} />
        <Choice label="Current step" value={f.step} options={migration.steps.map((s) => s.name)} anyOption onChange={(v) => set({ step: v })} />
        <Choice label="Step status" value={f.stepStatus} options={stepStatuses} anyOption onChange={(v) => set({ step_status: v })} />
        <label>
          Metadata key=value
          <input aria-label="Metadata key=value" value={metaDraft}
            onChange={(e) => setMetaDraft(e.target.value)}
            onKeyDown={(e) => {
              const kv = metaDraft.trim();
              if (e.key === "Enter" && kv.indexOf("=") > 0) {
                addMeta(kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1));
                setMetaDraft("");
              }
            }}
            placeholder="team=payments ⏎"
          />
        </label>
        {Object.entries(f.meta).map(([k, v]) => (
          <button
            key={k}
            type="button"
            className="chip"
            aria-label={`Remove filter ${k}=${v}`}
            onClick={() => set({ meta: params.getAll("meta").filter((x) => !x.startsWith(k + "=")) })}
          >
            {k}={v} ×
          </button>
        ))}
        <Choice label="Sort by" value={f.order} options={orders} onChange={(v) => sortBy(v)} />
        <button type="button" onClick={clearFilters} disabled={!filtered && !metaDraft}>
          Clear filters
        </button>
        {metaKeys.length > 0 && (
          <details className="meta-columns">
            <summary>Metadata columns{shown.length > 0 && ` (${shown.length})`}</summary>
            <div className="columns-menu">
              {metaKeys.map((k) => (
                <label key={k}>
                  <input
                    type="checkbox"
                    aria-label={`Show the column ${k}`}
                    checked={columns.includes(k)}
                    onChange={(e) => setColumns(e.target.checked ? [...columns, k] : columns.filter((c) => c !== k))}
                  />
                  {k}
                </label>
              ))}
            </div>
          </details>
        )}
      </form>
      {q.isError && <ErrorBox error={q.error} />}
      <div className="table-meta" aria-live="polite">
        {q.data ? `${q.data.totalSizeIsEstimate ? "About " : ""}${n(q.data.totalSize)} Candidates match` : "Loading Candidates…"}
        <span className="small"> · j/k or ↓/↑ move between rows, Enter opens</span>
        {q.isFetching && q.data && " · updating…"}
      </div>
      {selection?.kind === "ids" && allOnPage && total > ids.length && (
        <div className="select-all" role="status">
          {ids.length === rows.length ? `All ${candidatesLabel(rows.length)} on this page are selected.` : `${candidatesLabel(ids.length)} selected.`}{" "}
          <button type="button" className="link" onClick={() => select({ kind: "filter", filter, count: total })}>
            Select all {q.data?.totalSizeIsEstimate ? "about " : ""}
            {total} matching this filter
          </button>
        </div>
      )}
      {selection?.kind === "filter" && (
        <div className="select-all" role="status">
          All {candidatesLabel(selection.count)} matching this filter are selected.{" "}
          <button type="button" className="link" onClick={() => select(null)}>
            Clear selection
          </button>
        </div>
      )}
      {selection && <BulkBar migration={migration} selection={selection} onClear={() => select(null)} />}
      {q.data && q.data.candidates.length === 0 ? (
        <Empty>No Candidate matches these filters.</Empty>
      ) : (
        <table ref={tableRef} className="grid candidates" aria-busy={q.isFetching}>
          <thead>
            <tr>
              {selectable && (
                <th className="check">
                  <input
                    type="checkbox"
                    aria-label="Select every Candidate on this page"
                    checked={allOnPage}
                    ref={(el) => {
                      if (el) el.indeterminate = someOnPage && !allOnPage;
                    }}
                    onChange={togglePage}
                  />
                </th>
              )}
              <th aria-sort={ariaSort("id")}>
                <button type="button" className="sort" onClick={() => sortBy("id")}>
                  Candidate{sortMark("id")}
                </button>
              </th>
              <th>Kind</th>
              {shown.map((k) => (
                <th key={k} className="meta-col">
                  {k}
                </th>
              ))}
              <th aria-sort={ariaSort("status")}>
                <button type="button" className="sort" onClick={() => sortBy("status")}>
                  Status{sortMark("status")}
                </button>
              </th>
              <th aria-sort={ariaSort("current_step")}>
                <button type="button" className="sort" onClick={() => sortBy("current_step")}>
                  Current step{sortMark("current_step")}
                </button>
              </th>
              <th aria-sort={ariaSort("last_change")}>
                <button type="button" className="sort" onClick={() => sortBy("last_change")}>
                  Last change{sortMark("last_change")}
                </button>
              </th>
            </tr>
          </thead>
          <tbody>
            {q.data?.candidates.map((c) => {
              const p = q.data.progress[c.id];
              return (
                <tr key={c.id}>
                  {selectable && (
                    <td className="check">
                      <input type="checkbox" aria-label={`Select ${c.id}`} checked={isChecked(c.id)} onChange={(e) => toggleRow(c.id, e.target.checked)} />
                    </td>
                  )}
                  <td className="cand-id">
                    <Link to={candidatePath(migration.id, c.id)}>{c.id}</Link>
                    {c.noLongerDiscovered && <span className="muted small"> (no longer discovered)</span>}
                  </td>
                  <td>{c.kind}</td>
                  {shown.map((k) => (
                    <td key={k} className="meta-col">
                      {c.metadata[k] !== undefined ? (
                        <button
                          type="button"
                          className="link"
                          title={`Only Candidates with ${k}=${c.metadata[k]}`}
                          aria-label={`Filter by ${k}=${c.metadata[k]}`}
                          onClick={() => addMeta(k, c.metadata[k])}
                        >
                          {c.metadata[k] || "(empty)"}
                        </button>
                      ) : (
                        <span className="muted">—</span>
                      )}
                    </td>
                  ))}
                  <td>
                    <Badge value={candidateStatusLabel(c.status)} />
                  </td>
                  <td>
                    {p?.currentStep ? (
                      <>
                        {p.currentStep} <Badge value={stepStatusLabel(p.currentStepStatus)} />
                      </>
                    ) : (
                      <span className="muted">—</span>
                    )}
                  </td>
                  <td title={time(c.lastChangeTime)}>{ago(c.lastChangeTime)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <div className="pager">
        <button
          type="button"
          disabled={back.length === 0}
          onClick={() => {
            const prev = back[back.length - 1];
            setBack(back.slice(0, -1));
            set({ page: prev || null }, true);
          }}
        >
          ← Previous
        </button>
        <button
          type="button"
          disabled={!q.data?.nextPageToken}
          onClick={() => {
            setBack([...back, f.page]);
            set({ page: q.data!.nextPageToken }, true);
          }}
        >
          Next →
        </button>
      </div>
    </section>
  );
}
