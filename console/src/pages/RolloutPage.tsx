import { useState } from "react";
import { Link, useParams } from "react-router";
import { useMutation } from "@tanstack/react-query";
import { toast } from "sonner";
import { errorText } from "../api";
import { Badge, ErrorBox, Loading, WhyField } from "../components/Common";
import { Dialog } from "../components/Dialog";
import { RolloutProgressBar } from "../components/Rollouts";
import { useRefreshSelection } from "../data/discovery";
import { useCan, useMigration } from "../data/registry";
import { rolloutEnded, useRefreshRollouts, useRollout } from "../data/rollouts";
import { CanaryContinuation, RolloutState, type Rollout } from "../gen/loom/v1/rollout_pb";
import { RolloutService } from "../gen/loom/v1/rollout_service_pb";
import { candidateStatusLabel, rolloutStateLabel, stepStatusLabel, time } from "../format";
import { useRolloutClient } from "../transport";
import { useTitle } from "../title";

function selectionText(r: Rollout): string {
  const s = r.selection;
  if (!s) return "—";
  if (s.candidateIds.length > 0) return `${s.candidateIds.length} Candidates by id`;
  const f = s.filter;
  if (!f) return "—";
  const parts = [
    f.status ? `status ${candidateStatusLabel(f.status)}` : "",
    f.kind ? `kind ${f.kind}` : "",
    f.currentStep ? `current step ${f.currentStep}` : "",
    f.currentStepStatus ? `step status ${stepStatusLabel(f.currentStepStatus)}` : "",
    f.idPrefix ? `id starts with ${f.idPrefix}` : "",
    ...Object.entries(f.metadata).map(([k, v]) => `${k}=${v}`),
  ].filter(Boolean);
  return `every Candidate matching ${parts.length ? parts.join(", ") : "(no filter: all)"} when it started`;
}

// RolloutPage is one rollout, live (useRollout): where it stands and
// why, its progress, its settings, and — for operators — pause, resume or
// approve, cancel, and a new max in flight.
export function RolloutPage() {
  const { migrationId = "", rolloutId = "" } = useParams();
  const mig = useMigration(migrationId);
  const watch = useRollout(migrationId, rolloutId);
  const r = watch.rollout;
  useTitle(`Rollout ${rolloutId}`, mig.data?.migration?.name || migrationId);
  if (!r) {
    if (watch.error !== undefined) return <ErrorBox error={watch.error} />;
    return <Loading what="the rollout" />;
  }
  const m = mig.data?.migration;
  const p = r.progress;
  const s = r.settings;
  return (
    <>
      <nav className="crumbs" aria-label="Breadcrumb">
        <Link to="/">Fleet</Link> / <Link to={`/m/${migrationId}?tab=rollouts`}>{m?.name || migrationId}</Link> /
      </nav>
      <div className="page-head">
        <h1>Rollout {r.id}</h1>
        <Badge value={rolloutStateLabel(r.state)} />
        <span className="muted small" aria-live="polite">
          {watch.live ? "● live" : rolloutEnded(r) ? "" : "○ connecting…"}
        </span>
      </div>
      {r.stateReason && (
        <p className={r.state === RolloutState.PAUSED ? "error" : ""} aria-label="Why">
          {r.stateReason}
          {r.stateActor && <span className="muted"> — {r.stateActor}</span>}
        </p>
      )}
      {!r.stateReason && r.stateActor && <p className="muted">Last changed by {r.stateActor}</p>}
      {watch.error !== undefined && !rolloutEnded(r) && <ErrorBox error={watch.error} />}

      <RolloutControls rollout={r} onChanged={watch.apply} />

      <section className="card" aria-labelledby="progress-h">
        <h2 id="progress-h">Progress</h2>
        <RolloutProgressBar p={p} wide />
        <div className="tiles" style={{ marginTop: 10 }}>
          {(
            [
              ["planned", p?.planned],
              ["started", p?.started],
              ["in flight", p?.inFlight],
              ["completed", p?.completed],
              ["failed", p?.failed],
              ["cancelled", p?.cancelled],
              ["skipped", p?.skipped],
              ["waiting", p?.waiting],
            ] as const
          ).map(([label, v]) => (
            <div key={label} className={`tile${label === "failed" && (v ?? 0) > 0 ? " bad" : ""}`} aria-label={label}>
              <div className="value">{v ?? 0}</div>
              <div className="muted">{label}</div>
            </div>
          ))}
        </div>
        <dl className="kv" style={{ marginTop: 10 }}>
          {p?.heldBy && (
            <div>
              <dt>held by</dt>
              <dd>{p.heldBy}</dd>
            </div>
          )}
          {(p?.canarySize ?? 0) > 0 && (
            <div>
              <dt>canary</dt>
              <dd>
                {p!.canarySize} Candidates · {p!.canaryPassed ? "passed" : "not over yet"}
              </dd>
            </div>
          )}
          <div>
            <dt>step failures</dt>
            <dd>{p?.stepFailures ?? 0}</dd>
          </div>
          {p?.skippedReason && (
            <div>
              <dt>latest skip</dt>
              <dd>{p.skippedReason}</dd>
            </div>
          )}
        </dl>
      </section>

      <section className="card" aria-labelledby="settings-h">
        <h2 id="settings-h">Settings</h2>
        <dl className="kv">
          <div>
            <dt>selection</dt>
            <dd>{selectionText(r)}</dd>
          </div>
          <div>
            <dt>max in flight</dt>
            <dd>{s?.maxInFlight ?? "—"}</dd>
          </div>
          <div>
            <dt>canary</dt>
            <dd>
              {s?.canarySize
                ? `${s.canarySize}, then ${s.afterCanary === CanaryContinuation.AUTOMATIC ? "continue by itself" : "wait for approval"}`
                : "none"}
            </dd>
          </div>
          <div>
            <dt>pause on failures</dt>
            <dd>{s?.pauseOnFailures ? `${s.pauseOnFailures.failures} of the last ${s.pauseOnFailures.window} outcomes` : "off"}</dd>
          </div>
          <div>
            <dt>max starts per minute</dt>
            <dd>{s?.maxStartsPerMinute || "no limit"}</dd>
          </div>
          <div>
            <dt>max open pull requests</dt>
            <dd>{s?.maxOpenPullRequests || "no limit"}</dd>
          </div>
          {Object.entries(r.defaultInputs).map(([k, v]) => (
            <div key={k}>
              <dt>input {k}</dt>
              <dd>{v}</dd>
            </div>
          ))}
          <div>
            <dt>started</dt>
            <dd>
              {time(r.createTime)} by {r.createdBy || "—"}
            </dd>
          </div>
          {r.endTime && (
            <div>
              <dt>ended</dt>
              <dd>{time(r.endTime)}</dd>
            </div>
          )}
        </dl>
      </section>
    </>
  );
}

// RolloutControls are what an operator may do to a rollout that has not
// ended; a viewer sees none of them.
function RolloutControls({ rollout: r, onChanged }: { rollout: Rollout; onChanged: (r: Rollout) => void }) {
  const rollouts = useRolloutClient();
  const can = useCan();
  const refreshRollouts = useRefreshRollouts(r.migrationId);
  const refreshSelection = useRefreshSelection(r.migrationId);
  const [cancelling, setCancelling] = useState(false);
  // The reason a pause is asked for; null while its dialog is closed.
  const [pauseReason, setPauseReason] = useState<string | null>(null);
  // The reason a resume (or an approval) is asked for; null while closed.
  const [resumeReason, setResumeReason] = useState<string | null>(null);
  const [maxDraft, setMaxDraft] = useState<string | null>(null);
  const [maxReason, setMaxReason] = useState("");
  const ids = { migrationId: r.migrationId, rolloutId: r.id };
  const done = (what: string) => (res: { rollout?: Rollout }) => {
    if (res.rollout) onChanged(res.rollout);
    refreshRollouts();
    toast.success(`${r.id}: ${what}`);
  };
  const failed = (what: string) => (err: unknown) => toast.error(`${what} failed: ${errorText(err)}`);
  const pause = useMutation({
    mutationFn: (reason: string) => rollouts.pauseRollout({ ...ids, reason: reason.trim() || "paused from the console" }),
    onSuccess: (res) => {
      setPauseReason(null);
      done("paused")(res);
    },
    onError: failed("Pause"),
  });
  const approving = r.state === RolloutState.AWAITING_APPROVAL;
  // Unlike a pause's, an empty reason is sent empty: the resume is
  // recorded with its actor alone, and nothing in the operator's place.
  const resume = useMutation({
    mutationFn: (reason: string) => rollouts.resumeRollout({ ...ids, reason: reason.trim() }),
    onSuccess: (res) => {
      setResumeReason(null);
      done(approving ? "approved" : "resumed")(res);
    },
    onError: failed(approving ? "Approval" : "Resume"),
  });
  const update = useMutation({
    mutationFn: (maxInFlight: number) =>
      rollouts.updateRollout({
        ...ids,
        settings: r.settings ? { ...r.settings, maxInFlight } : { maxInFlight },
        updateMask: ["max_in_flight"],
        reason: maxReason.trim(),
      }),
    onSuccess: (res) => {
      setMaxDraft(null);
      setMaxReason("");
      done("max in flight changed")(res);
    },
    onError: failed("Changing max in flight"),
  });
  if (rolloutEnded(r)) return null;
  const busy = pause.isPending || resume.isPending || update.isPending;
  const maxValue = Number(maxDraft);
  const maxValid = maxDraft !== null && Number.isInteger(maxValue) && maxValue >= 1 && maxValue <= 10_000;
  return (
    <div className="actions" role="group" aria-label="Rollout actions">
      {r.state === RolloutState.RUNNING && can(RolloutService.method.pauseRollout) && (
        <button type="button" disabled={busy} onClick={() => setPauseReason("")}>
          Pause…
        </button>
      )}
      {(r.state === RolloutState.PAUSED || r.state === RolloutState.AWAITING_APPROVAL) && can(RolloutService.method.resumeRollout) && (
        <button type="button" className="primary" disabled={busy} onClick={() => setResumeReason("")}>
          {approving ? "Approve and continue…" : "Resume…"}
        </button>
      )}
      {can(RolloutService.method.updateRollout) &&
        (maxDraft === null ? (
          <button type="button" disabled={busy} onClick={() => setMaxDraft(String(r.settings?.maxInFlight ?? 10))}>
            Change max in flight…
          </button>
        ) : (
          <form
            className="row"
            aria-label="Change max in flight"
            onSubmit={(e) => {
              e.preventDefault();
              if (maxValid) update.mutate(maxValue);
            }}
          >
            <label className="inline">
              Max in flight
              <input type="number" min={1} max={10000} value={maxDraft} onChange={(e) => setMaxDraft(e.target.value)} />
            </label>
            <WhyField inline name="reason" value={maxReason} onChange={setMaxReason} placeholder="optional, recorded in the history" />
            <button type="submit" className="primary" disabled={!maxValid || busy}>
              Set
            </button>
            <button type="button" onClick={() => setMaxDraft(null)}>
              Discard
            </button>
          </form>
        ))}
      {can(RolloutService.method.cancelRollout) && (
        <button type="button" className="danger" disabled={busy} onClick={() => setCancelling(true)}>
          Cancel…
        </button>
      )}
      {pauseReason !== null && (
        <Dialog title={`Pause rollout ${r.id}?`} onClose={() => setPauseReason(null)}>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              pause.mutate(pauseReason);
            }}
          >
            <p>No Run starts once it answers; the Runs in flight go on. Resume starts them again.</p>
            <label>
              Why (recorded in the rollout; empty: “paused from the console”)
              <input value={pauseReason} maxLength={2000} onChange={(e) => setPauseReason(e.target.value)} />
            </label>
            {pause.isError && <ErrorBox error={pause.error} />}
            <div className="actions">
              <button type="submit" className="primary" disabled={pause.isPending}>
                {pause.isPending ? "Pausing…" : "Pause"}
              </button>
              <button type="button" onClick={() => setPauseReason(null)}>
                Back
              </button>
            </div>
          </form>
        </Dialog>
      )}
      {resumeReason !== null && (
        <Dialog title={approving ? `Approve rollout ${r.id} and continue?` : `Resume rollout ${r.id}?`} onClose={() => setResumeReason(null)}>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              resume.mutate(resumeReason);
            }}
          >
            <p>
              {approving
                ? "The canary wave succeeded: the rollout starts the rest of its Candidates, at its pace."
                : "The rollout starts Runs again, at its pace; failures are counted afresh from here."}
            </p>
            <label>
              Why (optional; recorded in the rollout and its history)
              <input value={resumeReason} maxLength={2000} onChange={(e) => setResumeReason(e.target.value)} />
            </label>
            {resume.isError && <ErrorBox error={resume.error} />}
            <div className="actions">
              <button type="submit" className="primary" disabled={resume.isPending}>
                {resume.isPending ? "Sending…" : approving ? "Approve" : "Resume"}
              </button>
              <button type="button" onClick={() => setResumeReason(null)}>
                Back
              </button>
            </div>
          </form>
        </Dialog>
      )}
      {cancelling && (
        <CancelRolloutDialog
          rollout={r}
          onClose={() => setCancelling(false)}
          onCancelled={(res) => {
            setCancelling(false);
            onChanged(res);
            refreshRollouts();
            refreshSelection();
          }}
        />
      )}
    </div>
  );
}

function CancelRolloutDialog({ rollout: r, onClose, onCancelled }: { rollout: Rollout; onClose: () => void; onCancelled: (r: Rollout) => void }) {
  const rollouts = useRolloutClient();
  const [reason, setReason] = useState("");
  const [cancelRuns, setCancelRuns] = useState(false);
  const inFlight = r.progress?.inFlight ?? 0;
  const cancel = useMutation({
    mutationFn: () => rollouts.cancelRollout({ migrationId: r.migrationId, rolloutId: r.id, reason, cancelRuns }),
    onSuccess: (res) => {
      toast.success(`${r.id}: cancelled${cancelRuns ? `, ${res.cancelledRuns} Runs cancelled` : ""}`);
      if (res.rollout) onCancelled(res.rollout);
      else onClose();
    },
  });
  return (
    <Dialog title={`Cancel rollout ${r.id}?`} onClose={onClose}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          cancel.mutate();
        }}
      >
        <p>It starts no more Runs ({r.progress?.waiting ?? 0} Candidates still wait). This cannot be undone.</p>
        <label>
          Reason
          <textarea value={reason} rows={2} maxLength={2000} onChange={(e) => setReason(e.target.value)} />
        </label>
        <label className="inline">
          <input type="checkbox" checked={cancelRuns} onChange={(e) => setCancelRuns(e.target.checked)} />
          also cancel its {inFlight} Runs in flight (their Candidates go back to not started)
        </label>
        {cancel.isError && <ErrorBox error={cancel.error} />}
        <div className="actions">
          <button type="submit" className="danger" disabled={cancel.isPending}>
            {cancel.isPending ? "Cancelling…" : "Cancel rollout"}
          </button>
          <button type="button" onClick={onClose}>
            Back
          </button>
        </div>
      </form>
    </Dialog>
  );
}
