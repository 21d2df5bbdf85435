import { useState } from "react";
import { useLocation, useParams } from "react-router";
import { runId as makeRunId } from "../api";
import { CandidateStatus } from "../gen/loom/v1/candidate_pb";
import type { PreviewRunResponse } from "../gen/loom/v1/run_service_pb";
import { RunStatus } from "../gen/loom/v1/run_pb";
import { RunService } from "../gen/loom/v1/run_service_pb";
import { ErrorBox, Loading } from "../components/Common";
import { useCandidate, useRefreshCandidate } from "../data/discovery";
import { useRun } from "../data/runs";
import { useCan, useCanPreview, useMigration } from "../data/registry";
import { CandidateHeader } from "./candidate/CandidateHeader";
import { CancelButton } from "./candidate/CancelButton";
import { RunForm } from "./candidate/RunForm";
import { RunCard } from "./candidate/RunCard";
import { CandidateCard } from "./candidate/CandidateCard";
import { PreviewSection } from "./candidate/PreviewSection";
import { failedSteps } from "../components/Preview";
import { CandidateHistory } from "./candidate/CandidateHistory";
import { useTitle } from "../title";

// CandidatePage is one Candidate: its Run live, what discovery knows of it,
// and its history; it previews, starts and cancels its Run. It reads the
// data and holds the page's state; each part is a component of its own
// (./candidate/). It is keyed by the Candidate: going from one Candidate's
// page to another's (the palette, history links) starts afresh, with no
// preview or form of the other. Arriving with the state {start: true} (the
// palette's "start") opens the preview and start form.
export function CandidatePage() {
  const { migrationId = "", "*": rest = "" } = useParams();
  const candidateId = decodeURIComponent(rest);
  const location = useLocation();
  const start = (location.state as { start?: unknown } | null)?.start === true;
  // The location's key too: "start" again on the same page opens the form again.
  return (
    <CandidatePageOf
      key={migrationId + "/" + candidateId + (start ? "/" + location.key : "")}
      migrationId={migrationId}
      candidateId={candidateId}
      start={start}
    />
  );
}

function CandidatePageOf({ migrationId, candidateId, start }: { migrationId: string; candidateId: string; start: boolean }) {
  const mig = useMigration(migrationId);
  const cand = useCandidate(migrationId, candidateId);
  const refresh = useRefreshCandidate(migrationId, candidateId);
  const [generation, setGeneration] = useState(0);
  const run = useRun(makeRunId(migrationId, candidateId), generation);
  const [preview, setPreview] = useState<PreviewRunResponse | null>(null);
  const [starting, setStarting] = useState(start);
  const can = useCan();
  const canPreview = useCanPreview();
  useTitle(candidateId, mig.data?.migration?.name || migrationId);

  if (cand.isPending || mig.isPending) return <Loading what="the Candidate" />;
  if (mig.isError) return <ErrorBox error={mig.error} />;
  if (cand.isError) return <ErrorBox error={cand.error} />;
  const m = mig.data.migration!;
  const c = cand.data.candidate!;
  const r = run.run;
  const active = r?.status === RunStatus.RUNNING;
  // A viewer the Migration lets preview gets Preview, never Start.
  const canStart = !active && c.status !== CandidateStatus.COMPLETED && can(RunService.method.startRun);
  return (
    <>
      <CandidateHeader m={m} c={c} />

      <div className="actions">
        {!starting && canPreview(m) && (
          <button type="button" onClick={() => setStarting(true)}>
            {canStart ? "Preview or start…" : "Preview…"}
          </button>
        )}
        {active && r && can(RunService.method.cancelRun) && <CancelButton run={r} onDone={refresh} />}
      </div>

      {starting && canPreview(m) && (
        <RunForm
          m={m}
          candidateId={c.id}
          stored={c.inputs}
          canStart={canStart}
          failedPreview={preview ? failedSteps(preview.steps) : []}
          onPreview={setPreview}
          onClose={() => setStarting(false)}
          onStarted={() => {
            // The preview was of a Run not yet started: once it runs, the
            // Run's own steps say what happens.
            setPreview(null);
            setStarting(false);
            setGeneration((g) => g + 1);
            refresh();
          }}
        />
      )}

      {/* Under the form that asked for it, above the Run and the Candidate. */}
      {preview && <PreviewSection preview={preview} onClose={() => setPreview(null)} />}

      <div className="columns">
        <RunCard run={run} onChanged={refresh} />
        <CandidateCard m={m} c={c} onSaved={refresh} />
      </div>

      <CandidateHistory
        migrationId={migrationId}
        candidateId={c.id}
        onRunChanged={(started) => {
          // A Run started or ended elsewhere: refresh the Candidate, and
          // follow a Run that started while there was none.
          refresh();
          if (started && run.missing) setGeneration((g) => g + 1);
        }}
      />
    </>
  );
}
