import { useState } from "react";
import { useMutation } from "@tanstack/react-query";
import { toast } from "sonner";
import { errorText } from "../../api";
import type { Migration } from "../../gen/loom/v1/migration_pb";
import type { PreviewRunResponse } from "../../gen/loom/v1/run_service_pb";
import { useRunClient } from "../../transport";
import { Dialog } from "../../components/Dialog";
import { WhyField } from "../../components/Common";

function requiredMissing(m: Migration, inputs: Record<string, string>): string[] {
  return m.requiredInputs.filter((i) => !(inputs[i.name] ?? "").trim()).map((i) => i.label || i.name);
}

// RunForm asks for the Migration's required inputs, prefilled from the
// Candidate's stored ones and checked before anything is sent, then
// previews the Run or starts it. When the preview shown has a step whose
// preview failed, Start warns and asks again in a dialog: that step's
// changes were never shown to anyone.
export function RunForm(props: {
  m: Migration;
  candidateId: string;
  stored: Record<string, string>;
  canStart: boolean;
  // failedPreview names the steps whose preview failed, in the preview
  // shown (none when there is none).
  failedPreview: string[];
  onPreview: (p: PreviewRunResponse) => void;
  onClose: () => void;
  onStarted: () => void;
}) {
  const runs = useRunClient();
  const [inputs, setInputs] = useState<Record<string, string>>(() => ({ ...props.stored }));
  const [tried, setTried] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [note, setNote] = useState("");
  const missing = requiredMissing(props.m, inputs);
  const start = useMutation({
    mutationFn: () => runs.startRun({ migrationId: props.m.id, candidateId: props.candidateId, inputs, note: note.trim() }),
    onSuccess: () => {
      setConfirming(false);
      toast.success(`Started ${props.candidateId}`);
      props.onStarted();
    },
    onError: (err) => toast.error(`Start failed: ${errorText(err)}`),
  });
  const preview = useMutation({
    mutationFn: () => runs.previewRun({ migrationId: props.m.id, candidateId: props.candidateId, inputs }),
    onSuccess: (res) => props.onPreview(res),
    onError: (err) => toast.error(`Preview failed: ${errorText(err)}`),
  });
  const check = () => {
    setTried(true);
    return missing.length === 0;
  };
  return (
    <form
      className="card startform"
      aria-label={props.canStart ? "Preview or start a Run" : "Preview a Run"}
      onSubmit={(e) => {
        e.preventDefault();
        if (!check() || !props.canStart) return;
        if (props.failedPreview.length > 0) setConfirming(true);
        else start.mutate();
      }}
    >
      <h2>Run {props.candidateId}</h2>
      {props.m.requiredInputs.length === 0 && <p className="muted">This Migration needs no inputs.</p>}
      {props.m.requiredInputs.map((i) => (
        <label key={i.name}>
          {i.label || i.name} <code>{i.name}</code>
          <input
            name={i.name}
            value={inputs[i.name] ?? ""}
            onChange={(e) => setInputs({ ...inputs, [i.name]: e.target.value })}
            aria-invalid={tried && !(inputs[i.name] ?? "").trim()}
          />
          {i.description && <span className="muted small">{i.description}</span>}
        </label>
      ))}
      {props.canStart && (
        <WhyField value={note} onChange={setNote} placeholder="optional, recorded with the start, e.g. the team asked before the freeze" />
      )}
      {tried && missing.length > 0 && (
        <div role="alert" className="error">
          Required: {missing.join(", ")}
        </div>
      )}
      {props.canStart && props.failedPreview.length > 0 && (
        <div role="status" className="warning">
          The preview of {props.failedPreview.join(", ")} failed: what {props.failedPreview.length === 1 ? "it" : "they"} would
          change was not shown.
        </div>
      )}
      <div className="actions">
        <button type="button" disabled={preview.isPending} onClick={() => check() && preview.mutate()}>
          {preview.isPending ? "Previewing…" : "Preview"}
        </button>
        {props.canStart && (
          <button type="submit" className="primary" disabled={start.isPending}>
            {start.isPending ? "Starting…" : "Start Run"}
          </button>
        )}
        <button type="button" onClick={props.onClose}>
          Close
        </button>
      </div>
      {confirming && (
        <Dialog title="Start despite the failed preview?" onClose={() => setConfirming(false)}>
          <p>
            The Migrator could not preview {props.failedPreview.join(", ")} for {props.candidateId}. Starting runs every step,
            including changes nobody has seen.
          </p>
          {/* Back comes first, so the focus the dialog gives its first
              button is on it: a second Enter does not start the Run. */}
          <div className="actions">
            <button type="button" onClick={() => setConfirming(false)}>
              Back
            </button>
            <button type="button" className="danger" disabled={start.isPending} onClick={() => start.mutate()}>
              {start.isPending ? "Starting…" : "Start anyway"}
            </button>
          </div>
        </Dialog>
      )}
    </form>
  );
}
