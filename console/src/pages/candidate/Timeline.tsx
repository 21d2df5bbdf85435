import { DispatchTrouble } from "../../components/DispatchTrouble";
import { Badge } from "../../components/Common";
import { RunStatus, StepStatus, type Run } from "../../gen/loom/v1/run_pb";
import { stepStatusLabel, time } from "../../format";
import { StepActions } from "./StepActions";

// The statuses of a step still waiting on something (the Migrator, a merge,
// a reviewer): in a cancelled Run, nothing waits any more.
const waiting = [StepStatus.IN_PROGRESS, StepStatus.OPEN, StepStatus.AWAITING_REVIEW];

// Timeline shows a Run's steps in order, each with where it stands. In a
// cancelled Run, the steps show how they ended: the one the Run was waiting
// on shows "cancelled" (and what it was waiting for), those never reached
// "not reached"; none is offered an action.
export function Timeline({ run, onChanged }: { run: Run; onChanged: () => void }) {
  const results = new Map(run.stepResults.map((s) => [s.stepName, s]));
  const cancelled = run.status === RunStatus.CANCELLED;
  return (
    <ol className="timeline">
      {run.steps.map((def) => {
        const s = results.get(def.name);
        const cut = cancelled && s !== undefined && waiting.includes(s.status);
        const status = cut ? "cancelled" : s ? stepStatusLabel(s.status) : cancelled ? "not_reached" : "pending";
        return (
          <li key={def.name} className={`step step-${status}`} data-step={def.name} data-status={status}>
            <div className="step-head">
              <strong>{def.name}</strong> <code className="muted">{def.type}</code> <Badge value={status} />
              {s && s.attempt > 1 && <span className="muted small"> attempt {s.attempt}</span>}
              {cut && <span className="muted small"> (was {stepStatusLabel(s.status).replaceAll("_", " ")} when the Run was cancelled)</span>}
            </div>
            {s && (
              <div className="step-body">
                {s.prUrl && (
                  <div>
                    PR: <a href={s.prUrl}>{s.prUrl}</a>
                  </div>
                )}
                {s.message && (
                  <div className="message">
                    {s.status === StepStatus.SKIPPED && <strong>Skipped: </strong>}
                    {s.message}
                  </div>
                )}
                <DispatchTrouble step={s} />
                <div className="muted small">
                  started {time(s.startTime)}
                  {s.openTime && <> · opened {time(s.openTime)}</>}
                  {s.endTime && <> · ended {time(s.endTime)}</>}
                  {s.actor && <> · by {s.actor}</>}
                </div>
                {run.status === RunStatus.RUNNING && <StepActions run={run} step={s} onChanged={onChanged} />}
              </div>
            )}
          </li>
        );
      })}
    </ol>
  );
}
