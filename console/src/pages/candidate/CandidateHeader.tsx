import { Link } from "react-router";
import { Badge } from "../../components/Common";
import type { Candidate } from "../../gen/loom/v1/candidate_pb";
import type { Migration } from "../../gen/loom/v1/migration_pb";
import { candidateStatusLabel } from "../../format";

// CandidateHeader is the breadcrumb and the Candidate's id, status and kind.
export function CandidateHeader({ m, c }: { m: Migration; c: Candidate }) {
  return (
    <>
      <nav className="crumbs" aria-label="Breadcrumb">
        <Link to="/">Fleet</Link> / <Link to={`/m/${m.id}`}>{m.name || m.id}</Link> /
      </nav>
      <div className="page-head">
        <h1>{c.id}</h1>
        <Badge value={candidateStatusLabel(c.status)} />
        <span className="muted">{c.kind}</span>
        {c.noLongerDiscovered && <span className="muted">no longer discovered</span>}
      </div>
    </>
  );
}
