import { Link } from "react-router";
import { n, time } from "../format";
import { candidatePath, Empty, ErrorBox, Loading } from "../components/Common";
import { useDailyMetrics, useFleet } from "../data/metrics";
import { Sparkline } from "../components/Charts";
import { StepDurationsTable } from "../components/StepDurationsTable";
import { useFleetRefresh } from "../fleetFeed";
import { queryKeys } from "../queryKeys";

// The figures of the Migrations the fleet feed names are read again, at
// most once every two seconds, however busy the fleet.
const metricsOf = (e: { migrationId: string } | null) => [e ? queryKeys.metrics(e.migrationId) : queryKeys.allMetrics()];

// Fleet metrics: per Migration, events per day; per step, how long steps
// take and how often they fail; Runs completed per day, and the latest
// failures everywhere.
export function FleetMetricsPage() {
  const fleet = useFleet();
  const ids = (fleet.data?.migrations ?? []).map((s) => s.migration!.id);
  const all = useDailyMetrics(ids);
  useFleetRefresh(metricsOf, 2_000);
  if (fleet.isPending) return <Loading what="the fleet" />;
  if (fleet.isError) return <ErrorBox error={fleet.error} />;
  const failing = all.find((q) => q.isError);
  const loaded = all.flatMap((q) => (q.data?.metrics ? [q.data.metrics] : []));
  const failures = loaded
    .flatMap((m) => m.recentFailures.map((f) => ({ ...f, migrationId: m.migrationId })))
    .sort((a, b) => Number((b.time?.seconds ?? 0n) - (a.time?.seconds ?? 0n)))
    .slice(0, 30);
  return (
    <>
      <div className="page-head">
        <h1>Fleet metrics</h1>
      </div>
      {failing && <ErrorBox error={failing.error} />}
      {ids.length === 0 && <Empty>No Migration yet.</Empty>}
      {loaded.map((m) => (
        <section key={m.migrationId} className="card">
          <h2>
            <Link to={`/m/${m.migrationId}?tab=metrics`}>{m.migrationId}</Link>
          </h2>
          <div className="events-per-day">
            <Sparkline
              values={m.eventsPerDay.map((d) => n(d.count))}
              label={`Events per day over 30 days: ${m.eventsPerDay.map((d) => n(d.count)).join(", ")}`}
            />
            <span className="muted small">
              {m.eventsPerDay.reduce((a, d) => a + n(d.count), 0)} events in 30 days ·{" "}
              {n(m.eventsPerDay[m.eventsPerDay.length - 1]?.count)} today
            </span>
          </div>
          <p className="muted small">
            Runs completed per day:{" "}
            {m.burndown.length === 0
              ? "none yet"
              : m.burndown.map((p) => `${time(p.start).split(",")[0]}: ${n(p.completed)}`).join(" · ")}
          </p>
          <StepDurationsTable steps={m.stepDurations} />
        </section>
      ))}
      <h2>Recent failures across the fleet</h2>
      {failures.length === 0 ? (
        <Empty>No step has failed lately.</Empty>
      ) : (
        <ul className="failures">
          {failures.map((f, i) => (
            <li key={i}>
              <Link to={candidatePath(f.migrationId, f.candidateId)}>{f.candidateId}</Link> · {f.migrationId} · {f.step} (attempt{" "}
              {f.attempt}) · <span className="muted">{time(f.time)}</span>
              <div className="message">{f.message}</div>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}
