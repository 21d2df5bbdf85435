import type { StepDurations } from "../gen/loom/v1/metrics_service_pb";
import { duration, n } from "../format";

// StepDurationsTable shows, per step, successful and failed attempts, the
// failure rate, dispatch → success percentiles and time to merge; detailed
// adds the maxima and the merged count.
export function StepDurationsTable({ steps, detailed = false }: { steps: StepDurations[]; detailed?: boolean }) {
  return (
    <table className="grid compact">
      <thead>
        <tr>
          <th>Step</th>
          <th className="num">Succeeded</th>
          <th className="num">Failed</th>
          <th className="num">Failure rate</th>
          <th className="num">p50</th>
          <th className="num">p95</th>
          {detailed && <th className="num">max</th>}
          {detailed && <th className="num">Merged</th>}
          <th className="num">Time to merge p50</th>
          {detailed && <th className="num">p95</th>}
        </tr>
      </thead>
      <tbody>
        {steps.map((s) => {
          const failed = n(s.failedCount);
          const attempts = n(s.count) + failed;
          const merged = n(s.mergedCount) > 0;
          return (
            <tr key={s.step}>
              <td>{s.step}</td>
              <td className="num">{n(s.count)}</td>
              <td className={`num ${failed > 0 ? "bad" : ""}`}>{failed}</td>
              <td className="num">{attempts ? `${Math.round((100 * failed) / attempts)}%` : "—"}</td>
              <td className="num">{duration(s.p50)}</td>
              <td className="num">{duration(s.p95)}</td>
              {detailed && <td className="num">{duration(s.max)}</td>}
              {detailed && <td className="num">{n(s.mergedCount)}</td>}
              <td className="num">{merged ? duration(s.mergeP50) : "—"}</td>
              {detailed && <td className="num">{merged ? duration(s.mergeP95) : "—"}</td>}
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
