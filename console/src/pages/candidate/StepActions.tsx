import { useMutation } from "@tanstack/react-query";
import { toast } from "sonner";
import { errorText } from "../../api";
import { StepStatus, type Run, type StepResult } from "../../gen/loom/v1/run_pb";
import { RunService } from "../../gen/loom/v1/run_service_pb";
import { useCan } from "../../data/registry";
import { useRunClient } from "../../transport";

// StepActions are what an operator may do to a step of a running Run:
// retry it when it failed, finish its review, mark its pull request merged.
export function StepActions({ run, step, onChanged }: { run: Run; step: StepResult; onChanged: () => void }) {
  const runs = useRunClient();
  const can = useCan();
  const act = useMutation({
    mutationFn: async (what: "retry" | "done" | "failed" | "merged") => {
      const base = { runId: run.id, stepName: step.stepName, attempt: step.attempt };
      switch (what) {
        case "retry":
          return runs.retryStep(base);
        case "merged":
          return runs.markStepMerged({ ...base, note: "marked merged in the console" });
        default:
          return runs.finishReview({
            ...base,
            outcome: what === "done" ? StepStatus.COMPLETED : StepStatus.FAILED,
            note: `finished in the console as ${what}`,
          });
      }
    },
    onSuccess: (_, what) => {
      toast.success(`${step.stepName}: ${what === "retry" ? "retrying" : what}`);
      onChanged();
    },
    onError: (err) => toast.error(`${step.stepName}: ${errorText(err)}`),
  });
  const b = (what: "retry" | "done" | "failed" | "merged", label: string, cls = "") => (
    <button type="button" className={cls} disabled={act.isPending} onClick={() => act.mutate(what)}>
      {label}
    </button>
  );
  switch (step.status) {
    case StepStatus.FAILED:
      return can(RunService.method.retryStep) && <div className="actions">{b("retry", "Retry step", "primary")}</div>;
    case StepStatus.AWAITING_REVIEW:
      return (
        can(RunService.method.finishReview) && (
        <div className="actions">
          {b("done", "Review done", "primary")}
          {b("failed", "Review failed", "danger")}
        </div>
        )
      );
    case StepStatus.OPEN:
      return (
        can(RunService.method.markStepMerged) && <div className="actions">{b("merged", "Mark merged (merged outside Loom)")}</div>
      );
    default:
      return null;
  }
}
