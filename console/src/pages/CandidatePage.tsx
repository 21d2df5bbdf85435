import { DispatchTrouble } from "../components/DispatchTrouble";
import { useState } from "react";
import { Link, useParams } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { toast } from "sonner";
import { errorText, runId as makeRunId } from "../api";
import { useDiscoveryClient, useRegistryClient, useRunClient } from "../transport";
import { CandidateStatus } from "../gen/loom/v1/candidate_pb";
import { EventKind } from "../gen/loom/v1/history_service_pb";
import type { Migration } from "../gen/loom/v1/migration_pb";
import type { PreviewRunResponse } from "../gen/loom/v1/run_service_pb";
import { RunStatus, StepStatus, type Run, type StepResult } from "../gen/loom/v1/run_pb";
import { candidateStatusLabel, runStatusLabel, stepStatusLabel, time } from "../format";
import { Badge, Empty, ErrorBox, Loading } from "../components/Common";
import { EventLog } from "../components/EventLog";
import { PreviewView } from "../components/Preview";
import { useRun } from "../useRun";
import { useCan } from "../caller";
import { DiscoveryService } from "../gen/loom/v1/discovery_service_pb";
import { RunService } from "../gen/loom/v1/run_service_pb";
import { queryKeys } from "../queryKeys";

export function CandidatePage() {
  const registry = useRegistryClient();
  const discovery = useDiscoveryClient();
  const { migrationId = "", "*": rest = "" } = useParams();
  const candidateId = decodeURIComponent(rest);
  const qc = useQueryClient();
  const mig = useQuery({
    queryKey: queryKeys.migration(migrationId),
    queryFn: ({ signal }) => registry.getMigration({ migrationId }, { signal }),
  });
  const cand = useQuery({
    queryKey: queryKeys.candidate(migrationId, candidateId),
    queryFn: ({ signal }) => discovery.getCandidate({ migrationId, candidateId }, { signal }),
  });
  const [generation, setGeneration] = useState(0);
  const rid = makeRunId(migrationId, candidateId);
  const run = useRun(rid, generation);
  const [preview, setPreview] = useState<PreviewRunResponse | null>(null);
  const [starting, setStarting] = useState(false);
  const can = useCan();

  if (cand.isPending || mig.isPending) return <Loading what="the Candidate" />;
  if (mig.isError) return <ErrorBox error={mig.error} />;
  if (cand.isError) return <ErrorBox error={cand.error} />;
  const m = mig.data.migration!;
  const c = cand.data.candidate!;
  const r = run.run;
  const active = r?.status === RunStatus.RUNNING;
  const refresh = () => {
    qc.invalidateQueries({ queryKey: queryKeys.candidate(migrationId, candidateId) });
    qc.invalidateQueries({ queryKey: queryKeys.fleet() });
    qc.invalidateQueries({ queryKey: queryKeys.candidates(migrationId) });
  };
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

      <div className="actions">
        {!starting && can(RunService.method.previewRun) && (
          <button type="button" onClick={() => setStarting(true)}>
            {active || c.status === CandidateStatus.COMPLETED ? "Preview…" : "Preview or start…"}
          </button>
        )}
        {active && r && can(RunService.method.cancelRun) && <CancelButton run={r} onDone={refresh} />}
      </div>

      {starting && (
        <RunForm
          m={m}
          candidateId={c.id}
          stored={c.inputs}
          canStart={!active && c.status !== CandidateStatus.COMPLETED && can(RunService.method.startRun)}
          onPreview={setPreview}
          onClose={() => setStarting(false)}
          onStarted={() => {
            setStarting(false);
            setGeneration((g) => g + 1);
            refresh();
          }}
        />
      )}

      <div className="columns">
        <section className="card" aria-labelledby="run-h">
          <h2 id="run-h">
            Run {r && <Badge value={runStatusLabel(r.status)} />}{" "}
            {r && <span className="muted small">execution {String(r.execution)}</span>}{" "}
            <span className="muted small" aria-live="polite">
              {run.live ? "● live" : run.missing ? "" : "○ connecting…"}
            </span>
          </h2>
          {run.error !== undefined && !r && <ErrorBox error={run.error} />}
          {run.missing && <Empty>Not started yet.</Empty>}
          {r && <Timeline run={r} onChanged={refresh} />}
          {r?.cancelReason && <p className="muted">Cancelled: {r.cancelReason}</p>}
        </section>

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
          <InputsEditor m={m} migrationId={migrationId} candidateId={c.id} stored={c.inputs} onSaved={refresh} />
        </section>
      </div>

      {preview && (
        <section aria-labelledby="preview-h">
          <h2 id="preview-h">
            Preview{" "}
            <button type="button" className="ghost" onClick={() => setPreview(null)}>
              Close
            </button>
          </h2>
          <PreviewView steps={preview.steps} />
        </section>
      )}

      <section aria-labelledby="history-h">
        <h2 id="history-h">History</h2>
        <EventLog
          migrationId={migrationId}
          candidateId={c.id}
          onEvent={(e) => {
            // A Run started or ended elsewhere (another operator, the CLI):
            // follow it and refresh the Candidate.
            if (e.kind === EventKind.RUN_STARTED || e.kind === EventKind.RUN_COMPLETED || e.kind === EventKind.RUN_CANCELLED) {
              refresh();
              if (e.kind === EventKind.RUN_STARTED && run.missing) setGeneration((g) => g + 1);
            }
          }}
        />
      </section>
    </>
  );
}

function requiredMissing(m: Migration, inputs: Record<string, string>): string[] {
  return m.requiredInputs.filter((i) => !(inputs[i.name] ?? "").trim()).map((i) => i.label || i.name);
}

// RunForm asks for the Migration's required inputs, prefilled from the
// Candidate's stored ones and checked before anything is sent, then
// previews the Run or starts it.
function RunForm(props: {
  m: Migration;
  candidateId: string;
  stored: Record<string, string>;
  canStart: boolean;
  onPreview: (p: PreviewRunResponse) => void;
  onClose: () => void;
  onStarted: () => void;
}) {
  const runs = useRunClient();
  const [inputs, setInputs] = useState<Record<string, string>>(() => ({ ...props.stored }));
  const [tried, setTried] = useState(false);
  const missing = requiredMissing(props.m, inputs);
  const start = useMutation({
    mutationFn: () => runs.startRun({ migrationId: props.m.id, candidateId: props.candidateId, inputs }),
    onSuccess: () => {
      toast.success(`Started ${props.candidateId}`);
      props.onStarted();
    },
    onError: (err) => toast.error(`Start failed: ${errorText(err)}`),
  });
  const preview = useMutation({
    mutationFn: () => runs.previewRun({ migrationId: props.m.id, candidateId: props.candidateId, inputs }),
    onSuccess: (res) => props.onPreview(res),
    onError: (err) => toast.error(`Preview failed: ${errorText(err)}`),
  });
  const check = () => {
    setTried(true);
    return missing.length === 0;
  };
  return (
    <form
      className="card startform"
      aria-label="Preview or start a Run"
      onSubmit={(e) => {
        e.preventDefault();
        if (check() && props.canStart) start.mutate();
      }}
    >
      <h2>Run {props.candidateId}</h2>
      {props.m.requiredInputs.length === 0 && <p className="muted">This Migration needs no inputs.</p>}
      {props.m.requiredInputs.map((i) => (
        <label key={i.name}>
          {i.label || i.name} <code>{i.name}</code>
          <input
            name={i.name}
            value={inputs[i.name] ?? ""}
            onChange={(e) => setInputs({ ...inputs, [i.name]: e.target.value })}
            aria-invalid={tried && !(inputs[i.name] ?? "").trim()}
          />
          {i.description && <span className="muted small">{i.description}</span>}
        </label>
      ))}
      {tried && missing.length > 0 && (
        <div role="alert" className="error">
          Required: {missing.join(", ")}
        </div>
      )}
      <div className="actions">
        <button type="button" disabled={preview.isPending} onClick={() => check() && preview.mutate()}>
          {preview.isPending ? "Previewing…" : "Preview"}
        </button>
        {props.canStart && (
          <button type="submit" className="primary" disabled={start.isPending}>
            {start.isPending ? "Starting…" : "Start Run"}
          </button>
        )}
        <button type="button" onClick={props.onClose}>
          Close
        </button>
      </div>
    </form>
  );
}

function CancelButton({ run, onDone }: { run: Run; onDone: () => void }) {
  const runs = useRunClient();
  const cancel = useMutation({
    mutationFn: (reason: string) => runs.cancelRun({ runId: run.id, reason }),
    onSuccess: () => {
      toast.success(`Cancelled ${run.candidateId}`);
      onDone();
    },
    onError: (err) => toast.error(`Cancel failed: ${errorText(err)}`),
  });
  return (
    <button
      type="button"
      className="danger"
      disabled={cancel.isPending}
      onClick={() => {
        const reason = window.prompt(`Cancel the Run of ${run.candidateId}? Open pull requests stay open. Reason:`, "");
        if (reason !== null) cancel.mutate(reason);
      }}
    >
      Cancel Run…
    </button>
  );
}

function Timeline({ run, onChanged }: { run: Run; onChanged: () => void }) {
  const results = new Map(run.stepResults.map((s) => [s.stepName, s]));
  return (
    <ol className="timeline">
      {run.steps.map((def) => {
        const s = results.get(def.name);
        const status = s ? stepStatusLabel(s.status) : "pending";
        return (
          <li key={def.name} className={`step step-${status}`} data-step={def.name} data-status={status}>
            <div className="step-head">
              <strong>{def.name}</strong> <code className="muted">{def.type}</code> <Badge value={status} />
              {s && s.attempt > 1 && <span className="muted small"> attempt {s.attempt}</span>}
            </div>
            {s && (
              <div className="step-body">
                {s.prUrl && (
                  <div>
                    PR: <a href={s.prUrl}>{s.prUrl}</a>
                  </div>
                )}
                {s.message && <div className="message">{s.message}</div>}
                <DispatchTrouble step={s} />
                <div className="muted small">
                  started {time(s.startTime)}
                  {s.openTime && <> · opened {time(s.openTime)}</>}
                  {s.endTime && <> · ended {time(s.endTime)}</>}
                  {s.actor && <> · by {s.actor}</>}
                </div>
                {run.status === RunStatus.RUNNING && <StepActions run={run} step={s} onChanged={onChanged} />}
              </div>
            )}
          </li>
        );
      })}
    </ol>
  );
}

function StepActions({ run, step, onChanged }: { run: Run; step: StepResult; onChanged: () => void }) {
  const runs = useRunClient();
  const can = useCan();
  const act = useMutation({
    mutationFn: async (what: "retry" | "done" | "failed" | "merged") => {
      const base = { runId: run.id, stepName: step.stepName, attempt: step.attempt };
      switch (what) {
        case "retry":
          return runs.retryStep(base);
        case "merged":
          return runs.markStepMerged({ ...base, note: "marked merged in the console" });
        default:
          return runs.finishReview({
            ...base,
            outcome: what === "done" ? StepStatus.COMPLETED : StepStatus.FAILED,
            note: `finished in the console as ${what}`,
          });
      }
    },
    onSuccess: (_, what) => {
      toast.success(`${step.stepName}: ${what === "retry" ? "retrying" : what}`);
      onChanged();
    },
    onError: (err) => toast.error(`${step.stepName}: ${errorText(err)}`),
  });
  const b = (what: "retry" | "done" | "failed" | "merged", label: string, cls = "") => (
    <button type="button" className={cls} disabled={act.isPending} onClick={() => act.mutate(what)}>
      {label}
    </button>
  );
  switch (step.status) {
    case StepStatus.FAILED:
      return can(RunService.method.retryStep) && <div className="actions">{b("retry", "Retry step", "primary")}</div>;
    case StepStatus.AWAITING_REVIEW:
      return (
        can(RunService.method.finishReview) && (
        <div className="actions">
          {b("done", "Review done", "primary")}
          {b("failed", "Review failed", "danger")}
        </div>
        )
      );
    case StepStatus.OPEN:
      return (
        can(RunService.method.markStepMerged) && <div className="actions">{b("merged", "Mark merged (merged outside Loom)")}</div>
      );
    default:
      return null;
  }
}

function InputsEditor(props: {
  m: Migration;
  migrationId: string;
  candidateId: string;
  stored: Record<string, string>;
  onSaved: () => void;
}) {
  const discovery = useDiscoveryClient();
  const [draft, setDraft] = useState<Record<string, string> | null>(null);
  const can = useCan();
  const save = useMutation({
    mutationFn: (inputs: Record<string, string>) => {
      const set: Record<string, string> = {};
      const remove: string[] = [];
      for (const [k, v] of Object.entries(inputs)) {
        if (v.trim()) set[k] = v;
        else if (k in props.stored) remove.push(k);
      }
      return discovery.updateCandidateInputs({
        migrationId: props.migrationId,
        candidateId: props.candidateId,
        inputs: set,
        removeInputs: remove,
      });
    },
    onSuccess: () => {
      toast.success("Inputs saved");
      setDraft(null);
      props.onSaved();
    },
    onError: (err) => toast.error(`Saving inputs failed: ${errorText(err)}`),
  });
  const names = [...new Set([...props.m.requiredInputs.map((i) => i.name), ...Object.keys(props.stored)])];
  if (!draft) {
    return (
      <div>
        <h3>Inputs</h3>
        {names.length === 0 ? (
          <p className="muted">None.</p>
        ) : (
          <dl className="kv">
            {names.map((k) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>{props.stored[k] ?? <span className="muted">not set</span>}</dd>
              </div>
            ))}
          </dl>
        )}
        {names.length > 0 && can(DiscoveryService.method.updateCandidateInputs) && (
          <button type="button" onClick={() => setDraft({ ...props.stored })}>
            Edit inputs
          </button>
        )}
      </div>
    );
  }
  return (
    <form
      aria-label="Edit inputs"
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate(draft);
      }}
    >
      <h3>Inputs</h3>
      {names.map((k) => (
        <label key={k}>
          {k}
          <input value={draft[k] ?? ""} onChange={(e) => setDraft({ ...draft, [k]: e.target.value })} />
        </label>
      ))}
      <div className="actions">
        <button type="submit" className="primary" disabled={save.isPending}>
          Save
        </button>
        <button type="button" onClick={() => setDraft(null)}>
          Discard
        </button>
      </div>
    </form>
  );
}
