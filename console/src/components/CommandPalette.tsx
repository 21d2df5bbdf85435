import { useState } from "react";
import { Command } from "cmdk";
import { useNavigate } from "react-router";
import { useQuery } from "@tanstack/react-query";
import { useDiscoveryClient } from "../transport";
import { candidatePath } from "./Common";
import { useFleet } from "../fleet";
import { queryKeys } from "../queryKeys";

// Ctrl/⌘-K: jump to a Migration by name or id, or to a Candidate by id
// (the Candidates whose id starts with what is typed, in each Migration).
export function CommandPalette({ open, onClose }: { open: boolean; onClose: () => void }) {
  const discovery = useDiscoveryClient();
  const [search, setSearch] = useState("");
  const navigate = useNavigate();
  const fleet = useFleet();
  const migrations = (fleet.data?.migrations ?? []).map((s) => s.migration!).filter(Boolean);
  const prefix = search.trim();
  const candidates = useQuery({
    queryKey: queryKeys.palette(prefix, migrations.map((m) => m.id)),
    enabled: open && prefix.length > 0,
    queryFn: async ({ signal }) => {
      const pages = await Promise.all(
        migrations.map((m) =>
          discovery
            .listCandidates({ migrationId: m.id, idPrefix: prefix, pageSize: 8 }, { signal })
            .then((r) => r.candidates.map((c) => ({ migration: m, id: c.id })))
            .catch(() => []),
        ),
      );
      return pages.flat();
    },
  });
  const go = (to: string) => {
    onClose();
    setSearch("");
    navigate(to);
  };
  return (
    <Command.Dialog open={open} onOpenChange={(o) => !o && onClose()} label="Jump to a Migration or Candidate" shouldFilter={false}>
      <Command.Input value={search} onValueChange={setSearch} placeholder="Migration name or Candidate id…" />
      <Command.List>
        <Command.Empty>No match.</Command.Empty>
        <Command.Group heading="Migrations">
          {migrations
            .filter((m) => (m.name + " " + m.id).toLowerCase().includes(prefix.toLowerCase()))
            .map((m) => (
              <Command.Item key={m.id} value={"m:" + m.id} onSelect={() => go(`/m/${m.id}`)}>
                {m.name || m.id} <span className="muted">{m.id}</span>
              </Command.Item>
            ))}
        </Command.Group>
        {(candidates.data?.length ?? 0) > 0 && (
          <Command.Group heading="Candidates">
            {candidates.data!.map((c) => (
              <Command.Item
                key={c.migration.id + "/" + c.id}
                value={"c:" + c.migration.id + ":" + c.id}
                onSelect={() => go(candidatePath(c.migration.id, c.id))}
              >
                {c.id} <span className="muted">{c.migration.name || c.migration.id}</span>
              </Command.Item>
            ))}
          </Command.Group>
        )}
      </Command.List>
    </Command.Dialog>
  );
}
