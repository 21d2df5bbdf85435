import { useMutation } from "@tanstack/react-query";
import { toast } from "sonner";
import { errorText } from "../../api";
import type { Run } from "../../gen/loom/v1/run_pb";
import { useRunClient } from "../../transport";

// CancelButton cancels a running Run, asking why first.
export function CancelButton({ run, onDone }: { run: Run; onDone: () => void }) {
  const runs = useRunClient();
  const cancel = useMutation({
    mutationFn: (reason: string) => runs.cancelRun({ runId: run.id, reason }),
    onSuccess: () => {
      toast.success(`Cancelled ${run.candidateId}`);
      onDone();
    },
    onError: (err) => toast.error(`Cancel failed: ${errorText(err)}`),
  });
  return (
    <button
      type="button"
      className="danger"
      disabled={cancel.isPending}
      onClick={() => {
        const reason = window.prompt(`Cancel the Run of ${run.candidateId}? Open pull requests stay open. Reason:`, "");
        if (reason !== null) cancel.mutate(reason);
      }}
    >
      Cancel Run…
    </button>
  );
}
