import { Link } from "react-router";
import { Badge, Empty, ErrorBox, rolloutPath } from "../../components/Common";
import { runStatusLabel, time } from "../../format";
import { RunStatus } from "../../gen/loom/v1/run_pb";
import type { RunState } from "../../data/runs";
import { Timeline } from "./Timeline";

// RunCard shows the Candidate's Run as useRun keeps it: its status,
// whether the browser's feed is up, why and when it was cancelled, and its steps.
export function RunCard({ run, onChanged }: { run: RunState; onChanged: () => void }) {
  const r = run.run;
  return (
    <section className="card" aria-labelledby="run-h">
      <h2 id="run-h">
        Run {r && <Badge value={runStatusLabel(r.status)} />}{" "}
        {r && <span className="muted small">execution {String(r.execution)}</span>}{" "}
        <span className="muted small" aria-live="polite">
          {run.live ? "● live" : run.missing ? "" : "○ connecting…"}
        </span>
      </h2>
      {r?.rolloutId && (
        <p className="muted small">
          started by rollout <Link to={rolloutPath(r.migrationId, r.rolloutId)}>{r.rolloutId}</Link>
        </p>
      )}
      {run.error !== undefined && !r && <ErrorBox error={run.error} />}
      {run.missing && <Empty>Not started yet.</Empty>}
      {r?.status === RunStatus.CANCELLED && (
        <p className="cancel-reason">
          Cancelled: {r.cancelReason || "no reason given"}
          <span className="muted small"> · {time(r.endTime)}</span>
        </p>
      )}
      {r && <Timeline run={r} onChanged={onChanged} />}
    </section>
  );
}
