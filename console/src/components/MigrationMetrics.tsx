import { Link, useSearchParams } from "react-router";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ago, n, stepStatusLabel, time } from "../format";
import { Badge, candidatePath, Empty, ErrorBox, Loading } from "./Common";
import { Burndown } from "./Charts";
import { burndownRanges, burndownSeries, hourMs, type BurndownRange } from "./chartSeries";
import { StepDurationsTable } from "./StepDurationsTable";
import { useMigrationMetrics } from "../data/metrics";

// The burndown's range lives in the URL (`range=7d`, …), so a link
// reproduces the view; anything else is the default.
const defaultRange: BurndownRange = 30;
function rangeOf(v: string | null): BurndownRange {
  const d = Number(v?.replace(/d$/, ""));
  return (burndownRanges as readonly number[]).includes(d) ? (d as BurndownRange) : defaultRange;
}

export function MigrationMetricsView({ migrationId }: { migrationId: string }) {
  const q = useMigrationMetrics(migrationId);
  const [params, setParams] = useSearchParams();
  const range = rangeOf(params.get("range"));
  if (q.isPending) return <Loading what="metrics" />;
  if (q.isError) return <ErrorBox error={q.error} />;
  const m = q.data.metrics!;
  const started = m.burndown.some((p) => n(p.started) > 0 || n(p.completed) > 0) || n(m.candidates?.completed) > 0;
  return (
    <div className="metrics">
      <div className="tiles">
        <Tile label="Open PRs" value={n(m.openPullRequests)} />
        <Tile label="Awaiting review" value={n(m.awaitingReview)} />
        <Tile label="Failed steps" value={n(m.failed)} bad={n(m.failed) > 0} />
        <Tile label="Stuck" value={n(m.stuckCount)} bad={n(m.stuckCount) > 0} />
        <Tile label="Migrator unreachable" value={n(m.dispatchFailing)} bad={n(m.dispatchFailing) > 0} />
      </div>
      <div className="chart-head">
        <h2>Burndown</h2>
        <div className="seg" role="group" aria-label="Burndown range">
          {burndownRanges.map((d) => (
            <button
              key={d}
              type="button"
              aria-pressed={range === d}
              onClick={() => {
                const next = new URLSearchParams(params);
                next.set("range", `${d}d`);
                setParams(next, { replace: true });
              }}
            >
              {d} days
            </button>
          ))}
        </div>
      </div>
      {!started ? (
        <Empty>No Run has started yet.</Empty>
      ) : (
        <Burndown
          series={burndownSeries(
            m.burndown.map((p) => ({ t: p.start ? timestampMs(p.start) : 0, started: n(p.started), completed: n(p.completed) })),
            { total: n(m.candidates?.total), completed: n(m.candidates?.completed) },
            { unitMs: hourMs, days: range },
          )}
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
