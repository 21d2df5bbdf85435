import { Link } from "react-router";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { n, time } from "../format";
import { candidatePath, Empty, ErrorBox, Loading } from "../components/Common";
import { useDailyMetrics, useFleet } from "../data/metrics";
import { ActivityChart } from "../components/Charts";
import { dailySeries } from "../components/chartSeries";
import { StepDurationsTable } from "../components/StepDurationsTable";
import { useFleetRefresh } from "../fleetFeed";
import { queryKeys } from "../queryKeys";

// The figures of the Migrations the fleet feed names are read again, at
// most once every two seconds, however busy the fleet.
const metricsOf = (e: { migrationId: string } | null) => [e ? queryKeys.metrics(e.migrationId) : queryKeys.allMetrics()];

// Fleet metrics: per Migration (by name), its figures in cards, events
// and Candidates completed per day on a chart; per step, how long steps
// take and how often they fail; and the latest failures everywhere.
export function FleetMetricsPage() {
  const fleet = useFleet();
  const ids = (fleet.data?.migrations ?? []).map((s) => s.migration!.id);
  const names = new Map((fleet.data?.migrations ?? []).map((s) => [s.migration!.id, s.migration!.name || s.migration!.id]));
  const nameOf = (id: string) => names.get(id) ?? id;
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
      {loaded.map((m) => {
        const days = m.eventsPerDay.map((d) => (d.day ? timestampMs(d.day) : 0));
        const events = m.eventsPerDay.map((d) => n(d.count));
        const completed = dailySeries(
          days,
          m.burndown.map((p) => ({ t: p.start ? timestampMs(p.start) : 0, count: n(p.completed) })),
        );
        const done = completed.reduce((a, v) => a + v, 0);
        const c = m.candidates;
        return (
          <section key={m.migrationId} className="card" aria-label={nameOf(m.migrationId)}>
            <h2>
              <Link to={`/m/${m.migrationId}?tab=metrics`}>{nameOf(m.migrationId)}</Link>{" "}
              <span className="muted small">{m.migrationId}</span>
            </h2>
            <div className="tiles">
              <Stat label="Candidates" value={n(c?.total)} />
              <Stat label="Remaining" value={n(c?.total) - n(c?.completed)} />
              <Stat label="Completed" value={n(c?.completed)} />
              <Stat label="Running" value={n(c?.running)} />
              <Stat label="Open PRs" value={n(m.openPullRequests)} />
              <Stat label="Failed steps" value={n(m.failed)} bad={n(m.failed) > 0} />
            </div>
            <ActivityChart days={days} events={events} completed={completed} />
            <p className="muted small">
              {events.reduce((a, v) => a + v, 0)} events in 30 days · {events[events.length - 1] ?? 0} today ·{" "}
              {done} {done === 1 ? "Candidate" : "Candidates"} completed in 30 days
            </p>
            <StepDurationsTable steps={m.stepDurations} />
          </section>
        );
      })}
      <h2>Recent failures across the fleet</h2>
      {failures.length === 0 ? (
        <Empty>No step has failed lately.</Empty>
      ) : (
        <ul className="failures">
          {failures.map((f, i) => (
            <li key={i}>
              <Link to={candidatePath(f.migrationId, f.candidateId)}>{f.candidateId}</Link> · {nameOf(f.migrationId)} · {f.step} (attempt{" "}
              {f.attempt}) · <span className="muted">{time(f.time)}</span>
              <div className="message">{f.message}</div>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

function Stat({ label, value, bad }: { label: string; value: number; bad?: boolean }) {
  return (
    <div className={`tile ${bad ? "bad" : ""}`}>
      <div className="value">{value}</div>
      <div className="label">{label}</div>
    </div>
  );
}
