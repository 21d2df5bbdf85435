import { useState } from "react";
import { Command } from "cmdk";
import { useNavigate } from "react-router";
import { usePaletteCandidates } from "../data/discovery";
import { candidatePath } from "./Common";
import { useFleet } from "../data/metrics";

// Ctrl/⌘-K: jump to a Migration by name or id, or to a Candidate by id
// (the Candidates whose id starts with what is typed, in each Migration).
export function CommandPalette({ open, onClose }: { open: boolean; onClose: () => void }) {
  const [search, setSearch] = useState("");
  const navigate = useNavigate();
  const fleet = useFleet();
  const migrations = (fleet.data?.migrations ?? []).map((s) => s.migration!).filter(Boolean);
  const prefix = search.trim();
  const candidates = usePaletteCandidates(prefix, migrations, open && prefix.length > 0);
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
