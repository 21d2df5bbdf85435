import { useState, type ReactNode } from "react";
import { useMutation } from "@tanstack/react-query";
import { toast } from "sonner";
import { errorText } from "../../api";
import { StepStatus, type Run, type StepResult } from "../../gen/loom/v1/run_pb";
import { RunService } from "../../gen/loom/v1/run_service_pb";
import { useCan } from "../../data/registry";
import { useRunClient } from "../../transport";
import { StepOverride, type Override } from "./StepOverride";

// StepActions are what an operator may do to a step of a running Run:
// retry it when it failed, finish its review, mark its pull request merged,
// and, on the current step, skip it or adopt its existing pull request
// (each asking for its reason or URL in an in-page dialog).
export function StepActions({ run, step, onChanged }: { run: Run; step: StepResult; onChanged: () => void }) {
  const runs = useRunClient();
  const can = useCan();
  const [asking, setAsking] = useState<Override | null>(null);
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
  const override = (what: Override, label: string) => (
    <button type="button" disabled={asking !== null} onClick={() => setAsking(what)}>
      {label}
    </button>
  );
  const actions: ReactNode[] = [];
  switch (step.status) {
    case StepStatus.FAILED:
      if (can(RunService.method.retryStep)) actions.push(<span key="retry">{b("retry", "Retry step", "primary")}</span>);
      break;
    case StepStatus.AWAITING_REVIEW:
      if (can(RunService.method.finishReview)) {
        actions.push(<span key="done">{b("done", "Review done", "primary")}</span>, <span key="failed">{b("failed", "Review failed", "danger")}</span>);
      }
      break;
    case StepStatus.OPEN:
      if (can(RunService.method.markStepMerged)) actions.push(<span key="merged">{b("merged", "Mark merged (merged outside Loom)")}</span>);
      break;
  }
  // Only the current step can be skipped or get its pull request adopted.
  const current = run.currentStep === step.stepName;
  if (current && skippable.includes(step.status) && can(RunService.method.skipStep)) {
    actions.push(<span key="skip">{override("skip", "Skip step…")}</span>);
  }
  if (current && adoptable.includes(step.status) && can(RunService.method.adoptPullRequest)) {
    actions.push(<span key="adopt">{override("adopt", "Adopt existing PR…")}</span>);
  }
  if (actions.length === 0) return null;
  return (
    <>
      <div className="actions">{actions}</div>
      {asking && <StepOverride what={asking} run={run} step={step} onClose={() => setAsking(null)} onChanged={onChanged} />}
    </>
  );
}

// The statuses a step may be skipped from, and those whose pull request may
// be adopted (as the server's transition table allows).
const skippable = [StepStatus.IN_PROGRESS, StepStatus.OPEN, StepStatus.AWAITING_REVIEW, StepStatus.FAILED];
const adoptable = [StepStatus.IN_PROGRESS, StepStatus.FAILED];
