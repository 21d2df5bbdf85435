import type { StepDurations } from "../gen/loom/v1/metrics_service_pb";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { duration, n } from "../format";

// StepDurationsTable shows, per step, successful and failed attempts, the
// failure rate, dispatch → success percentiles and time to merge; detailed
// adds the maxima and the merged count. The last column draws p50 and p95
// as bars on one scale for every step (the longest p95, or max when
// detailed), so the slow steps stand out.
export function StepDurationsTable({ steps, detailed = false }: { steps: StepDurations[]; detailed?: boolean }) {
  const scale = Math.max(0, ...steps.map((s) => ms(detailed ? s.max : undefined) || ms(s.p95)));
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
          <th className="bars-col">Duration (p50 / p95{detailed ? " / max" : ""})</th>
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
              <td className="bars-col">
                {n(s.count) > 0 && scale > 0 && (
                  <div
                    className="duration-bar"
                    role="img"
                    aria-label={`${s.step}: p50 ${duration(s.p50)}, p95 ${duration(s.p95)}${detailed ? `, max ${duration(s.max)}` : ""}`}
                  >
                    {detailed && <span className="max" style={{ width: pct(ms(s.max), scale) }} />}
                    <span className="p95" style={{ width: pct(ms(s.p95), scale) }} />
                    <span className="p50" style={{ width: pct(ms(s.p50), scale) }} />
                  </div>
                )}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

const ms = (d?: Duration) => (d ? Number(d.seconds) * 1000 + d.nanos / 1e6 : 0);
const pct = (v: number, of: number) => `${Math.min(100, (100 * v) / of).toFixed(1)}%`;
