import { Link } from "react-router";
import { useRollouts } from "../data/rollouts";
import type { RolloutProgress } from "../gen/loom/v1/rollout_pb";
import { ago, rolloutStateLabel, time } from "../format";
import { Badge, Empty, ErrorBox, Loading, rolloutPath } from "./Common";

// RolloutProgressBar shows how far a rollout got: completed, in flight
// (failed ones apart), cancelled and skipped, of the planned Candidates.
export function RolloutProgressBar({ p, wide }: { p?: RolloutProgress; wide?: boolean }) {
  const planned = Math.max(p?.planned ?? 0, 1);
  const pct = (v = 0) => `${(100 * v) / planned}%`;
  const ended = (p?.completed ?? 0) + (p?.cancelled ?? 0) + (p?.skipped ?? 0);
  return (
    <div
      className={`progress${wide ? " wide" : ""}`}
      role="progressbar"
      aria-label="Rollout progress"
      aria-valuemin={0}
      aria-valuemax={p?.planned ?? 0}
      aria-valuenow={ended}
      aria-valuetext={`${p?.completed ?? 0} of ${p?.planned ?? 0} completed, ${p?.inFlight ?? 0} in flight (${p?.failed ?? 0} failed), ${p?.cancelled ?? 0} cancelled, ${p?.skipped ?? 0} skipped, ${p?.waiting ?? 0} waiting`}
    >
      <span className="done" style={{ width: pct(p?.completed) }} />
      <span className="run" style={{ width: pct((p?.inFlight ?? 0) - (p?.failed ?? 0)) }} />
      <span className="bad" style={{ width: pct(p?.failed) }} />
      <span className="skipped" style={{ width: pct((p?.cancelled ?? 0) + (p?.skipped ?? 0)) }} />
    </div>
  );
}

// RolloutsList is a Migration's rollouts, newest first, each linking to its
// page.
export function RolloutsList({ migrationId }: { migrationId: string }) {
  const q = useRollouts(migrationId);
  if (q.isPending) return <Loading what="rollouts" />;
  if (q.isError) return <ErrorBox error={q.error} />;
  const rollouts = q.data.pages.flatMap((p) => p.rollouts);
  if (rollouts.length === 0) {
    return <Empty>No rollout yet. Select Candidates in the table and choose “Start rollout…”.</Empty>;
  }
  return (
    <section aria-label="Rollouts">
      <table className="grid">
        <thead>
          <tr>
            <th>Rollout</th>
            <th>State</th>
            <th>Progress</th>
            <th>Started</th>
            <th>By</th>
          </tr>
        </thead>
        <tbody>
          {rollouts.map((r) => (
            <tr key={r.id}>
              <td>
                <Link to={rolloutPath(migrationId, r.id)}>{r.id}</Link>
              </td>
              <td>
                <Badge value={rolloutStateLabel(r.state)} />
                {r.stateReason && <div className="muted small">{r.stateReason}</div>}
              </td>
              <td>
                <RolloutProgressBar p={r.progress} />
                <div className="muted small">
                  {r.progress?.completed ?? 0} of {r.progress?.planned ?? 0} completed · {r.progress?.inFlight ?? 0} in flight
                </div>
              </td>
              <td title={time(r.createTime)}>{ago(r.createTime)}</td>
              <td>{r.createdBy}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {q.hasNextPage && (
        <div className="pager">
          <button type="button" disabled={q.isFetchingNextPage} onClick={() => q.fetchNextPage()}>
            More
          </button>
        </div>
      )}
    </section>
  );
}
