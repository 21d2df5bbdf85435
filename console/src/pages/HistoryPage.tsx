import { useSearchParams } from "react-router";
import { EventKind } from "../gen/loom/v1/history_service_pb";
import { eventKindLabel } from "../format";
import { EventLog } from "../components/EventLog";
import { useFleet } from "../data/metrics";
import { Empty, ErrorBox, Loading } from "../components/Common";
import { useTitle } from "../title";

const kinds = Object.values(EventKind).filter((v): v is EventKind => typeof v === "number" && v !== 0);

// The lifecycle event log of one Migration (history is kept per Migration),
// filterable by Candidate and kind, live. The filters live in the URL.
export function HistoryPage() {
  const fleet = useFleet();
  const [params, setParams] = useSearchParams();
  const migrations = fleet.data?.migrations.map((s) => s.migration!) ?? [];
  const migrationId = params.get("m") ?? migrations[0]?.id ?? "";
  useTitle("History", migrations.find((m) => m.id === migrationId)?.name || migrationId);
  if (fleet.isPending) return <Loading what="the fleet" />;
  if (fleet.isError) return <ErrorBox error={fleet.error} />;
  const candidateId = params.get("c") ?? "";
  const kind = Number(params.get("kind") ?? 0) as EventKind;
  const set = (k: string, v: string) => {
    const next = new URLSearchParams(params);
    if (v) next.set(k, v);
    else next.delete(k);
    setParams(next, { replace: true });
  };
  return (
    <>
      <div className="page-head">
        <h1>History</h1>
      </div>
      <form className="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Migration
          <select value={migrationId} onChange={(e) => set("m", e.target.value)}>
            {migrations.map((m) => (
              <option key={m.id} value={m.id}>
                {m.name || m.id}
              </option>
            ))}
          </select>
        </label>
        <label>
          Candidate id
          <input value={candidateId} onChange={(e) => set("c", e.target.value.trim())} placeholder="all" />
        </label>
        <label>
          Kind
          <select value={kind} onChange={(e) => set("kind", e.target.value === "0" ? "" : e.target.value)}>
            <option value={0}>all</option>
            {kinds.map((k) => (
              <option key={k} value={k}>
                {eventKindLabel(k)}
              </option>
            ))}
          </select>
        </label>
      </form>
      {migrationId ? (
        <EventLog migrationId={migrationId} candidateId={candidateId} kinds={kind ? [kind] : []} />
      ) : (
        <Empty>No Migration yet.</Empty>
      )}
    </>
  );
}
