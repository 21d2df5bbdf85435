import { Link } from "react-router";
import { stepStatusLabel } from "../format";
import { Badge, candidatePath } from "./Common";
import { useFleet } from "../data/metrics";
import { useRunningRuns } from "../data/runs";

// The Candidates running now, across the fleet: the first Runs of each
// Migration that has any running (the count says how many there are). The
// fleet feed refreshes it when anything happens.
export function RunningPanel() {
  const fleet = useFleet();
  const active = (fleet.data?.migrations ?? []).filter((s) => Number(s.migration?.candidateCounts?.running ?? 0n) > 0);
  const lists = useRunningRuns(active.map((s) => s.migration!.id));
  return (
    <aside className="running" aria-label="Running now">
      <h2>Running now</h2>
      {active.length === 0 && <p className="muted">Nothing is running.</p>}
      {active.map((s, i) => {
        const id = s.migration!.id;
        const data = lists[i]?.data;
        return (
          <section key={id}>
            <h3>
              <Link to={`/m/${id}?status=running`}>{s.migration!.name || id}</Link>{" "}
              <span className="muted">{String(data?.totalSize ?? s.migration!.candidateCounts?.running ?? "")}</span>
            </h3>
            <ul>
              {data?.runs.map((r) => (
                <li key={r.id}>
                  <Link to={candidatePath(id, r.candidateId)}>{r.candidateId}</Link>
                  <div className="muted small">
                    {r.currentStep} <Badge value={stepStatusLabel(r.currentStepStatus)} />
                  </div>
                </li>
              ))}
            </ul>
          </section>
        );
      })}
    </aside>
  );
}
