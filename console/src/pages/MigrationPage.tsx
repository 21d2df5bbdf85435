import { useParams, useSearchParams } from "react-router";
import Markdown from "react-markdown";
import { useMigration } from "../data/registry";
import { ErrorBox, Loading } from "../components/Common";
import { CandidateTable } from "../components/CandidateTable";
import { RolloutsList } from "../components/Rollouts";
import { MigrationMetricsView } from "../components/MigrationMetrics";
import { n } from "../format";
import { useLiveMigration } from "../useLiveMigration";
import { useTitle } from "../title";

const tabs = ["candidates", "rollouts", "overview", "metrics"] as const;
type Tab = (typeof tabs)[number];

export function MigrationPage() {
  const { migrationId = "" } = useParams();
  const [params, setParams] = useSearchParams();
  const tab: Tab = (tabs as readonly string[]).includes(params.get("tab") ?? "") ? (params.get("tab") as Tab) : "candidates";
  useLiveMigration(migrationId);
  const mig = useMigration(migrationId);
  useTitle(mig.data?.migration?.name || migrationId);
  if (mig.isPending) return <Loading what="the Migration" />;
  if (mig.isError) return <ErrorBox error={mig.error} />;
  const m = mig.data.migration!;
  const c = m.candidateCounts;
  return (
    <>
      <div className="page-head">
        <h1>{m.name || m.id}</h1>
        <span className="muted">
          {n(c?.total)} Candidates · {n(c?.completed)} completed · {n(c?.running)} running · {n(c?.notStarted)} not started
        </span>
      </div>
      <div role="tablist" className="tabs" aria-label="Migration">
        {tabs.map((t) => (
          <button
            key={t}
            role="tab"
            type="button"
            aria-selected={tab === t}
            onClick={() => {
              const next = new URLSearchParams(params);
              next.set("tab", t);
              setParams(next);
            }}
          >
            {t}
          </button>
        ))}
      </div>
      {tab === "candidates" && <CandidateTable migration={m} />}
      {tab === "rollouts" && <RolloutsList migrationId={m.id} />}
      {tab === "metrics" && <MigrationMetricsView migrationId={m.id} />}
      {tab === "overview" && (
        <div className="overview">
          <p>{m.description}</p>
          {m.overview && (
            <div className="markdown card">
              <Markdown>{m.overview}</Markdown>
            </div>
          )}
          <h2>Steps</h2>
          <ol className="steps">
            {m.steps.map((s) => (
              <li key={s.name}>
                <strong>{s.name}</strong> <code>{s.type}</code>
                {s.description && <div className="muted">{s.description}</div>}
              </li>
            ))}
          </ol>
          <h2>Required inputs</h2>
          {m.requiredInputs.length === 0 ? (
            <p className="muted">None.</p>
          ) : (
            <dl>
              {m.requiredInputs.map((i) => (
                <div key={i.name}>
                  <dt>
                    {i.label || i.name} <code>{i.name}</code>
                  </dt>
                  <dd>{i.description}</dd>
                </div>
              ))}
            </dl>
          )}
          <p className="muted small">Migrator: {m.migratorUrl}</p>
        </div>
      )}
    </>
  );
}
