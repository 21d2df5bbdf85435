import { useState } from "react";
import { Command } from "cmdk";
import { useMatch, useNavigate } from "react-router";
import { usePaletteCandidates } from "../data/discovery";
import { candidatePath } from "./Common";
import { useFleet } from "../data/metrics";
import type { Migration } from "../gen/loom/v1/migration_pb";
import { RunService } from "../gen/loom/v1/run_service_pb";
import { useCan, useCanPreview } from "../data/registry";

// The palette's actions. "start" opens a Candidate's page with its preview
// and start form open; "history" and "metrics" open a Migration's (or a
// Candidate's) history and a Migration's metrics.
export type Verb = "open" | "start" | "history" | "metrics";
const verbs: Verb[] = ["open", "start", "history", "metrics"];

// PaletteQuery is what is typed, read as: an optional action first, then
// key=value pairs (Candidates' metadata, ListCandidates' own filter: exact
// pairs, at most 4) anywhere, and the rest: a Candidate id prefix, or part
// of a Migration's name or id. "start acme/ team=payments".
export type PaletteQuery = { verb: Verb | null; text: string; metadata: Record<string, string> };

export function parsePaletteQuery(q: string): PaletteQuery {
  const words = q.trim().split(/\s+/).filter(Boolean);
  let verb: Verb | null = null;
  if (words.length > 0 && (verbs as string[]).includes(words[0].toLowerCase())) verb = words.shift()!.toLowerCase() as Verb;
  const metadata: Record<string, string> = {};
  const rest: string[] = [];
  for (const w of words) {
    const eq = w.indexOf("=");
    if (eq > 0) metadata[w.slice(0, eq)] = w.slice(eq + 1);
    else rest.push(w);
  }
  return { verb, text: rest.join(" "), metadata };
}

export function historyPath(migrationId: string, candidateId?: string): string {
  const q = new URLSearchParams({ m: migrationId });
  if (candidateId) q.set("c", candidateId);
  return `/history?${q}`;
}

// candidateActions are what the palette does with one Candidate: start
// (or only preview, for a caller who may not start) where the caller may
// preview, and open its history.
function candidateActions(
  migrationId: string,
  id: string,
  may: { preview: boolean; start: boolean },
): { verb: Verb; text: string; to: string; state?: unknown }[] {
  const path = candidatePath(migrationId, id);
  const out: { verb: Verb; text: string; to: string; state?: unknown }[] = [];
  if (may.preview) {
    out.push({ verb: "start", text: `${may.start ? "Start or preview" : "Preview"} ${id}`, to: path, state: { start: true } });
  }
  out.push({ verb: "history", text: `History of ${id}`, to: historyPath(migrationId, id) });
  return out;
}

export const metricsPath = (migrationId: string) => `/m/${encodeURIComponent(migrationId)}?tab=metrics`;

// Ctrl/⌘-K: find a Migration by name or id, or a Candidate by id prefix or
// metadata (key=value), and open it, start it (its page with the preview
// and start form open), or open its history or its Migration's metrics. The
// Migration of the page comes first, with its history and metrics offered
// before anything is typed; Candidates are looked up in it first, then in
// every Migration of the fleet.
export function CommandPalette({ open, onClose }: { open: boolean; onClose: () => void }) {
  const [search, setSearch] = useState("");
  const navigate = useNavigate();
  const fleet = useFleet();
  const can = useCan();
  const canPreview = useCanPreview();
  const here = useMatch("/m/:migrationId/*")?.params.migrationId;
  const hereCandidate = decodeURIComponent(useMatch("/m/:migrationId/c/*")?.params["*"] ?? "");
  const all = (fleet.data?.migrations ?? []).map((s) => s.migration!).filter(Boolean);
  // The current Migration first: its Candidates are listed first too.
  const migrations = [...all.filter((m) => m.id === here), ...all.filter((m) => m.id !== here)];
  const q = parsePaletteQuery(search);
  const hasMetadata = Object.keys(q.metadata).length > 0;
  const candidates = usePaletteCandidates(q.text, q.metadata, migrations, open && (q.text.length > 0 || hasMetadata));
  const go = (to: string, state?: unknown) => {
    onClose();
    setSearch("");
    navigate(to, { state });
  };
  const current = migrations.find((m) => m.id === here);
  const may = (m: Migration | undefined) => ({ preview: !!m && canPreview(m), start: can(RunService.method.startRun) });
  const matching = hasMetadata
    ? []
    : migrations.filter(
        (m) => (m.name + " " + m.id).toLowerCase().includes(q.text.toLowerCase()) && (q.text !== "" || m === current || !q.verb),
      );
  const migrationItems = (m: Migration) => {
    const label = m.name || m.id;
    const items: { verb: Verb; text: string; to: string }[] = [
      { verb: "open", text: label, to: `/m/${encodeURIComponent(m.id)}` },
      { verb: "history", text: `History of ${label}`, to: historyPath(m.id) },
      { verb: "metrics", text: `Metrics of ${label}`, to: metricsPath(m.id) },
    ];
    // An action typed keeps that action; else a Migration is opened, and the
    // page's own (so with nothing typed, its actions are there at once), or
    // the only match, offers the rest.
    return items.filter((i) => (q.verb ? i.verb === q.verb : i.verb === "open" || m === current || matching.length === 1));
  };
  // A Candidate found is opened, or gets the action typed.
  const candidateItems = (c: { migration: Migration; id: string }) =>
    !q.verb || q.verb === "open"
      ? [{ verb: "open" as Verb, text: c.id, to: candidatePath(c.migration.id, c.id), state: undefined as unknown }]
      : candidateActions(c.migration.id, c.id, may(c.migration)).filter((i) => i.verb === q.verb);
  // On a Candidate's page, with no name typed, that Candidate's actions.
  const thisCandidate =
    here && hereCandidate && q.text === "" && !hasMetadata
      ? candidateActions(here, hereCandidate, may(current)).filter((i) => !q.verb || i.verb === q.verb)
      : [];
  return (
    <Command.Dialog
      open={open}
      onOpenChange={(o) => !o && onClose()}
      label="Find a Migration or Candidate, or act on one"
      shouldFilter={false}
    >
      {/* The e2e finds the input by the start of its placeholder. */}
      <Command.Input
        value={search}
        onValueChange={setSearch}
        placeholder="Migration name or Candidate id, key=value; start, history or metrics first to act…"
      />
      <Command.List>
        <Command.Empty>No match.</Command.Empty>
        {thisCandidate.length > 0 && (
          <Command.Group heading="This Candidate">
            {thisCandidate.map((i) => (
              <Command.Item key={i.verb} value={i.verb + ":here"} onSelect={() => go(i.to, i.state)}>
                {i.text}
              </Command.Item>
            ))}
          </Command.Group>
        )}
        {matching.length > 0 && (
          <Command.Group heading="Migrations">
            {matching.flatMap((m) =>
              migrationItems(m).map((i) => (
                <Command.Item key={i.verb + ":" + m.id} value={i.verb + ":m:" + m.id} onSelect={() => go(i.to)}>
                  {i.text} <span className="muted">{m.id === here && i.verb === "open" ? "this Migration" : m.id}</span>
                </Command.Item>
              )),
            )}
          </Command.Group>
        )}
        {(candidates.data?.length ?? 0) > 0 && (
          <Command.Group heading="Candidates">
            {candidates.data!.flatMap((c) =>
              candidateItems(c).map((i) => (
                <Command.Item
                  key={i.verb + ":" + c.migration.id + "/" + c.id}
                  value={i.verb + ":c:" + c.migration.id + ":" + c.id}
                  onSelect={() => go(i.to, i.state)}
                >
                  {i.text} <span className="muted">{c.migration.name || c.migration.id}</span>
                  {Object.entries(q.metadata).map(([k]) => (
                    <span key={k} className="muted small">
                      {" "}
                      {k}={c.metadata[k]}
                    </span>
                  ))}
                </Command.Item>
              )),
            )}
          </Command.Group>
        )}
      </Command.List>
      <p className="palette-hint muted small">
        <kbd>start</kbd>, <kbd>history</kbd> or <kbd>metrics</kbd> first acts instead of opening; <kbd>key=value</kbd> filters
        Candidates by metadata.
      </p>
    </Command.Dialog>
  );
}
