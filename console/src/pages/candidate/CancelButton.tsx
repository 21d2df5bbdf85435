import { useState } from "react";
import { toast } from "sonner";
import type { Run } from "../../gen/loom/v1/run_pb";
import { useRunClient } from "../../transport";
import { NoteDialog } from "./NoteDialog";

// CancelButton cancels a running Run, asking why first in an in-page
// dialog: the reason is required, and kept on the Run (cancel_reason) and
// in its history.
export function CancelButton({ run, onDone }: { run: Run; onDone: () => void }) {
  const runs = useRunClient();
  const [asking, setAsking] = useState(false);
  return (
    <>
      <button type="button" className="danger" disabled={asking} onClick={() => setAsking(true)}>
        Cancel Run…
      </button>
      {asking && (
        <NoteDialog
          title={`Cancel the Run of ${run.candidateId}?`}
          noteLabel="Reason"
          required
          maxLength={2000}
          placeholder="e.g. owners asked to wait for the freeze to end"
          submit="Cancel the Run"
          danger
          send={(reason) => runs.cancelRun({ runId: run.id, reason })}
          onClose={() => setAsking(false)}
          onDone={() => {
            setAsking(false);
            toast.success(`Cancelled ${run.candidateId}`);
            onDone();
          }}
        >
          <p>
            The Run stops now, even while it waits, and {run.candidateId} goes back to not started: it can be started again later. Open
            pull requests stay open.
          </p>
        </NoteDialog>
      )}
    </>
  );
}
