import { useState } from "react";
import { Link } from "react-router";
import { ErrorBox, Empty, Loading } from "../components/Common";
import { Sparkline } from "../components/Charts";
import { useFleet } from "../data/metrics";
import { n } from "../format";
import { useTitle } from "../title";

// The fleet: every Migration with its progress, what needs attention, and
// the Runs completed per day lately.
export function Home() {
  const fleet = useFleet();
  const [search, setSearch] = useState("");
  useTitle("Fleet");
  if (fleet.isPending) return <Loading what="the fleet" />;
  if (fleet.isError) return <ErrorBox error={fleet.error} />;
  const rows = fleet.data.migrations.filter((s) =>
    `${s.migration?.name} ${s.migration?.id}`.toLowerCase().includes(search.trim().toLowerCase()),
  );
  return (
    <>
      <div className="page-head">
        <h1>Migrations</h1>
        <input
          type="search"
          aria-label="Search Migrations by name"
          placeholder="Search by name…"
          value={search}
          onChange={(e) => setSearch(e.target.value)}
        />
      </div>
      {fleet.data.migrations.length === 0 ? (
        <Empty>No Migration has been announced yet. A Migrator announces one when it starts (see the README).</Empty>
      ) : rows.length === 0 ? (
        <Empty>No Migration matches “{search}”.</Empty>
      ) : (
        <table className="grid">
          <thead>
            <tr>
              <th>Migration</th>
              <th>Progress</th>
              <th className="num">Open PRs</th>
              <th className="num">Awaiting review</th>
              <th className="num">Failed</th>
              <th>Completed per day</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((s) => {
              const m = s.migration!;
              const c = m.candidateCounts;
              const total = Math.max(n(c?.total), 1);
              return (
                <tr key={m.id}>
                  <td>
                    <Link to={`/m/${m.id}`}>{m.name || m.id}</Link>
                    <div className="muted small">{m.description}</div>
                  </td>
                  <td>
                    <div
                      className="progress"
                      role="img"
                      aria-label={`${n(c?.completed)} completed, ${n(c?.running)} running, ${n(c?.notStarted)} not started`}
                    >
                      <span className="done" style={{ width: `${(100 * n(c?.completed)) / total}%` }} />
                      <span className="run" style={{ width: `${(100 * n(c?.running)) / total}%` }} />
                    </div>
                    <div className="muted small">
                      {n(c?.completed)} completed · {n(c?.running)} running · {n(c?.notStarted)} not started
                    </div>
                  </td>
                  <td className="num">{n(s.openPullRequests)}</td>
                  <td className="num">{n(s.awaitingReview)}</td>
                  <td className={`num ${n(s.failed) > 0 ? "bad" : ""}`}>{n(s.failed)}</td>
                  <td>
                    <Sparkline
                      values={s.completedLastDays.map(Number)}
                      label={`Completed per day: ${s.completedLastDays.join(", ")}`}
                    />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </>
  );
}
