import { DispatchTrouble } from "../../components/DispatchTrouble";
import { Badge } from "../../components/Common";
import { RunStatus, StepStatus, type Run } from "../../gen/loom/v1/run_pb";
import { stepStatusLabel, time } from "../../format";
import { StepActions } from "./StepActions";

// Timeline shows a Run's steps in order, each with where it stands.
export function Timeline({ run, onChanged }: { run: Run; onChanged: () => void }) {
  const results = new Map(run.stepResults.map((s) => [s.stepName, s]));
  return (
    <ol className="timeline">
      {run.steps.map((def) => {
        const s = results.get(def.name);
        const status = s ? stepStatusLabel(s.status) : "pending";
        return (
          <li key={def.name} className={`step step-${status}`} data-step={def.name} data-status={status}>
            <div className="step-head">
              <strong>{def.name}</strong> <code className="muted">{def.type}</code> <Badge value={status} />
              {s && s.attempt > 1 && <span className="muted small"> attempt {s.attempt}</span>}
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
