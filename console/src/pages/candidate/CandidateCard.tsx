import type { Candidate } from "../../gen/loom/v1/candidate_pb";
import type { Migration } from "../../gen/loom/v1/migration_pb";
import { time } from "../../format";
import { InputsEditor } from "./InputsEditor";

// CandidateCard shows what discovery knows of a Candidate: its metadata,
// its files and its inputs (which it edits).
export function CandidateCard({ m, c, onSaved }: { m: Migration; c: Candidate; onSaved: () => void }) {
  return (
    <section className="card" aria-labelledby="about-h">
      <h2 id="about-h">Candidate</h2>
      <dl className="kv">
        {Object.entries(c.metadata)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([k, v]) => (
            <div key={k}>
              <dt>{k}</dt>
              <dd>{v}</dd>
            </div>
          ))}
        <div>
          <dt>discovered</dt>
          <dd>{time(c.createTime)}</dd>
        </div>
      </dl>
      {c.files.map((g) => (
        <div key={g.name}>
          <h3>{g.name}</h3>
          <ul>
            {g.files.map((f) => (
              <li key={f.path}>{f.url ? <a href={f.url}>{f.path}</a> : f.path}</li>
            ))}
          </ul>
        </div>
      ))}
      <InputsEditor m={m} migrationId={m.id} candidateId={c.id} stored={c.inputs} onSaved={onSaved} />
    </section>
  );
}
