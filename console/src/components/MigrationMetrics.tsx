import { Link } from "react-router";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ago, n, stepStatusLabel, time } from "../format";
import { Badge, candidatePath, Empty, ErrorBox, Loading } from "./Common";
import { Burndown } from "./Charts";
import { StepDurationsTable } from "./StepDurationsTable";
import { useMigrationMetrics } from "../data/metrics";

export function MigrationMetricsView({ migrationId }: { migrationId: string }) {
  const q = useMigrationMetrics(migrationId);
  if (q.isPending) return <Loading what="metrics" />;
  if (q.isError) return <ErrorBox error={q.error} />;
  const m = q.data.metrics!;
  return (
    <div className="metrics">
      <div className="tiles">
        <Tile label="Open PRs" value={n(m.openPullRequests)} />
        <Tile label="Awaiting review" value={n(m.awaitingReview)} />
        <Tile label="Failed steps" value={n(m.failed)} bad={n(m.failed) > 0} />
        <Tile label="Stuck" value={n(m.stuckCount)} bad={n(m.stuckCount) > 0} />
        <Tile label="Migrator unreachable" value={n(m.dispatchFailing)} bad={n(m.dispatchFailing) > 0} />
      </div>
      <h2>Burndown</h2>
      {m.burndown.length === 0 ? (
        <Empty>No Run has started yet.</Empty>
      ) : (
        <Burndown
          points={m.burndown.map((p) => ({
            t: p.start ? timestampMs(p.start) : 0,
            started: n(p.started),
            completed: n(p.completed),
          }))}
        />
      )}
      <h2>Where the running Candidates are</h2>
      {m.currentSteps.length === 0 ? (
        <Empty>Nothing is running.</Empty>
      ) : (
        <table className="grid compact">
          <thead>
            <tr>
              <th>Step</th>
              <th>Status</th>
              <th className="num">Runs</th>
            </tr>
          </thead>
          <tbody>
            {m.currentSteps.map((s) => (
              <tr key={s.step + s.status}>
                <td>{s.step}</td>
                <td>
                  <Badge value={stepStatusLabel(s.status)} />
                </td>
                <td className="num">{n(s.count)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Step durations</h2>
      <StepDurationsTable steps={m.stepDurations} detailed />
      <h2>Recent failures</h2>
      {m.recentFailures.length === 0 ? (
        <Empty>No step has failed.</Empty>
      ) : (
        <ul className="failures">
          {m.recentFailures.map((f, i) => (
            <li key={i}>
              <Link to={candidatePath(migrationId, f.candidateId)}>{f.candidateId}</Link> · {f.step} (attempt {f.attempt}) ·{" "}
              <span className="muted">{time(f.time)}</span>
              <div className="message">{f.message}</div>
            </li>
          ))}
        </ul>
      )}
      <h2>Stuck Candidates</h2>
      {m.stuck.length === 0 ? (
        <Empty>No running Candidate has been quiet for long.</Empty>
      ) : (
        <ul>
          {m.stuck.map((s) => (
            <li key={s.candidateId}>
              <Link to={candidatePath(migrationId, s.candidateId)}>{s.candidateId}</Link>{" "}
              <span className="muted">last event {ago(s.lastEventTime)}</span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function Tile({ label, value, bad }: { label: string; value: number; bad?: boolean }) {
  return (
    <div className={`tile ${bad ? "bad" : ""}`}>
      <div className="value">{value}</div>
      <div className="label">{label}</div>
    </div>
  );
}
