import { useState } from "react";
import { useMutation } from "@tanstack/react-query";
import { toast } from "sonner";
import { errorText } from "../../api";
import type { Migration } from "../../gen/loom/v1/migration_pb";
import { DiscoveryService } from "../../gen/loom/v1/discovery_service_pb";
import { useCan } from "../../data/registry";
import { useDiscoveryClient } from "../../transport";
import { WhyField } from "../../components/Common";

// InputsEditor shows a Candidate's stored inputs and edits them.
export function InputsEditor(props: {
  m: Migration;
  migrationId: string;
  candidateId: string;
  stored: Record<string, string>;
  onSaved: () => void;
}) {
  const discovery = useDiscoveryClient();
  const [draft, setDraft] = useState<Record<string, string> | null>(null);
  const [note, setNote] = useState("");
  const can = useCan();
  const save = useMutation({
    mutationFn: (inputs: Record<string, string>) => {
      const set: Record<string, string> = {};
      const remove: string[] = [];
      for (const [k, v] of Object.entries(inputs)) {
        if (v.trim()) set[k] = v;
        else if (k in props.stored) remove.push(k);
      }
      return discovery.updateCandidateInputs({
        migrationId: props.migrationId,
        candidateId: props.candidateId,
        inputs: set,
        removeInputs: remove,
        note: note.trim(),
      });
    },
    onSuccess: () => {
      toast.success("Inputs saved");
      setDraft(null);
      setNote("");
      props.onSaved();
    },
    onError: (err) => toast.error(`Saving inputs failed: ${errorText(err)}`),
  });
  const names = [...new Set([...props.m.requiredInputs.map((i) => i.name), ...Object.keys(props.stored)])];
  if (!draft) {
    return (
      <div>
        <h3>Inputs</h3>
        {names.length === 0 ? (
          <p className="muted">None.</p>
        ) : (
          <dl className="kv">
            {names.map((k) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>{props.stored[k] ?? <span className="muted">not set</span>}</dd>
              </div>
            ))}
          </dl>
        )}
        {names.length > 0 && can(DiscoveryService.method.updateCandidateInputs) && (
          <button type="button" onClick={() => setDraft({ ...props.stored })}>
            Edit inputs
          </button>
        )}
      </div>
    );
  }
  return (
    <form
      aria-label="Edit inputs"
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate(draft);
      }}
    >
      <h3>Inputs</h3>
      {names.map((k) => (
        <label key={k}>
          {k}
          <input value={draft[k] ?? ""} onChange={(e) => setDraft({ ...draft, [k]: e.target.value })} />
        </label>
      ))}
      <WhyField value={note} onChange={setNote} placeholder="e.g. the canary needs the new tag" />
      <div className="actions">
        <button type="submit" className="primary" disabled={save.isPending}>
          Save
        </button>
        <button type="button" onClick={() => setDraft(null)}>
          Discard
        </button>
      </div>
    </form>
  );
}
