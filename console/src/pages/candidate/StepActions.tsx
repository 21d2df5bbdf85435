import { useState, type ReactNode } from "react";
import { toast } from "sonner";
import { StepStatus, type Run, type StepResult } from "../../gen/loom/v1/run_pb";
import { RunService } from "../../gen/loom/v1/run_service_pb";
import { useCan } from "../../data/registry";
import { useRunClient } from "../../transport";
import { StepOverride, type Override } from "./StepOverride";
import { NoteDialog } from "./NoteDialog";

// StepActions are what an operator may do to a step of a running Run:
// retry it when it failed (confirmed, with an optional note); finish its
// review as done (confirmed, with an optional note) or failed (with a
// required note); mark its pull request merged (confirmed, with an optional
// note); and, on the current step, skip it or adopt its existing pull
// request. Each asks in an in-page dialog, and the note typed there is what
// is sent and recorded in the Run's history.
export function StepActions({ run, step, onChanged }: { run: Run; step: StepResult; onChanged: () => void }) {
  const can = useCan();
  const [asking, setAsking] = useState<Override | null>(null);
  const [deciding, setDeciding] = useState<Decision | null>(null);
  const b = (what: Decision, label: string, cls = "") => (
    <button type="button" className={cls} disabled={deciding !== null} onClick={() => setDeciding(what)}>
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
      if (can(RunService.method.retryStep)) {
        actions.push(<span key="retry">{b("retry", "Retry step…", "primary")}</span>);
      }
      break;
    case StepStatus.AWAITING_REVIEW:
      if (can(RunService.method.finishReview)) {
        actions.push(<span key="done">{b("done", "Review done…", "primary")}</span>, <span key="failed">{b("failed", "Review failed…", "danger")}</span>);
      }
      break;
    case StepStatus.OPEN:
      if (can(RunService.method.markStepMerged)) actions.push(<span key="merged">{b("merged", "Mark merged…")}</span>);
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
      {deciding && (
        <DecisionDialog
          what={deciding}
          run={run}
          step={step}
          onClose={() => setDeciding(null)}
          onDone={() => {
            setDeciding(null);
            onChanged();
          }}
        />
      )}
    </>
  );
}

// The statuses a step may be skipped from, and those whose pull request may
// be adopted (as the server's transition table allows).
const skippable = [StepStatus.IN_PROGRESS, StepStatus.OPEN, StepStatus.AWAITING_REVIEW, StepStatus.FAILED];
const adoptable = [StepStatus.IN_PROGRESS, StepStatus.FAILED];

// The decisions an operator confirms in a dialog, with a note.
type Decision = "retry" | "done" | "failed" | "merged";

// DecisionDialog confirms retrying a step, finishing a review or marking a
// step merged, and sends the note the operator typed (required when a
// review fails: the Migration's owners read why). The request names the step and its attempt,
// so a decision meant for one attempt never lands on a retry.
function DecisionDialog({ what, run, step, onClose, onDone }: { what: Decision; run: Run; step: StepResult; onClose: () => void; onDone: () => void }) {
  const runs = useRunClient();
  const base = { runId: run.id, stepName: step.stepName, attempt: step.attempt };
  const done = (result: string) => () => {
    toast.success(`${step.stepName}: ${result}`);
    onDone();
  };
  switch (what) {
    case "retry":
      return (
        <NoteDialog
          title={`Retry ${step.stepName}?`}
          noteLabel="Why"
          required={false}
          maxLength={4000}
          placeholder="e.g. the runner ran out of disk, fixed in INFRA-88"
          submit="Retry the step"
          send={(note) => runs.retryStep({ ...base, note })}
          onClose={onClose}
          onDone={done("retrying")}
        >
          <p>
            Attempt {step.attempt} failed: the step is dispatched again as attempt {step.attempt + 1}, starting clean.{" "}
            {step.message && <span className="muted small">Its last message: {step.message}</span>}
          </p>
        </NoteDialog>
      );
    case "done":
    case "failed": {
      const failed = what === "failed";
      return (
        <NoteDialog
          title={`Finish the review of ${step.stepName} as ${failed ? "failed" : "done"}?`}
          noteLabel={failed ? "Why it failed" : "Note"}
          required={failed}
          maxLength={4000}
          placeholder={failed ? "e.g. canary error rate doubled, see INC-231" : "e.g. checked the dashboards"}
          submit={failed ? "Fail the review" : "Finish the review"}
          danger={failed}
          send={(note) => runs.finishReview({ ...base, outcome: failed ? StepStatus.FAILED : StepStatus.COMPLETED, note })}
          onClose={onClose}
          onDone={done(failed ? "review failed" : "review done")}
        >
          <p>
            {failed
              ? "The step becomes failed and the Run waits until it is retried or cancelled."
              : "The step completes and the Run moves on to the next step (or completes)."}{" "}
            <span className="muted small">
              {run.candidateId}, attempt {step.attempt}.
            </span>
          </p>
        </NoteDialog>
      );
    }
    case "merged":
      return (
        <NoteDialog
          title={`Mark ${step.stepName} merged?`}
          noteLabel="Note"
          required={false}
          maxLength={4000}
          placeholder="e.g. merged by hand after a CI flake"
          submit="Mark merged"
          send={(note) => runs.markStepMerged({ ...base, note })}
          onClose={onClose}
          onDone={done("marked merged")}
        >
          <p>
            Only when its pull request
            {step.prUrl && (
              <>
                {" "}
                <a href={step.prUrl}>{step.prUrl}</a>
              </>
            )}{" "}
            was merged outside Loom: the step becomes merged and the Run moves on. Loom does not check the merge.
          </p>
        </NoteDialog>
      );
  }
}
