import { useEffect, useState } from "react";
import { Link, useNavigate } from "react-router";
import { useMutation } from "@tanstack/react-query";
import { errorInfo, reasonOf } from "../api";
import { ErrorReason } from "../gen/loom/v1/error_reason_pb";
import type { Migration } from "../gen/loom/v1/migration_pb";
import { CanaryContinuation } from "../gen/loom/v1/rollout_pb";
import type { PreviewSelectionResponse } from "../gen/loom/v1/rollout_service_pb";
import { useRefreshSelection } from "../data/discovery";
import { useRefreshRollouts, useSelectionPreview } from "../data/rollouts";
import { candidatesLabel, maxRolloutSelection, selectionCount, selectionMessage, type Selection } from "../selection";
import { useRolloutClient } from "../transport";
import { candidatePath, ErrorBox, rolloutPath, WhyField } from "./Common";
import { Dialog } from "./Dialog";
import { PreviewView } from "./Preview";

// useDebounced is value, once it has not changed for ms.
function useDebounced<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return settled;
}

// The default inputs as sent: the fields given a value.
function given(inputs: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(inputs).filter(([, v]) => v.trim() !== ""));
}

type Form = {
  maxInFlight: number;
  canarySize: number;
  afterCanary: CanaryContinuation;
  pauseOn: boolean;
  failures: number;
  window: number;
  maxStartsPerMinute: number;
  maxOpenPullRequests: number;
};

function check(f: Form): string[] {
  const bad: string[] = [];
  const int = (v: number, lo: number, hi: number) => Number.isInteger(v) && v >= lo && v <= hi;
  if (!int(f.maxInFlight, 1, 10_000)) bad.push("max in flight must be 1 to 10,000");
  if (!int(f.canarySize, 0, 10_000)) bad.push("canary size must be 0 to 10,000");
  if (f.pauseOn) {
    if (!int(f.window, 1, 1000)) bad.push("the failure window must be 1 to 1,000");
    if (!int(f.failures, 1, 1000) || f.failures > f.window) bad.push("failures must be 1 to the window");
  }
  if (!int(f.maxStartsPerMinute, 0, 100_000)) bad.push("max starts per minute must be 0 to 100,000");
  if (!int(f.maxOpenPullRequests, 0, 100_000)) bad.push("max open pull requests must be 0 to 100,000");
  return bad;
}

function NumberField(props: { label: string; value: number; min: number; max?: number; onChange: (v: number) => void; hint?: string }) {
  return (
    <label>
      {props.label}
      <input
        type="number"
        inputMode="numeric"
        min={props.min}
        max={props.max}
        value={Number.isNaN(props.value) ? "" : props.value}
        onChange={(e) => props.onChange(e.target.value === "" ? NaN : Number(e.target.value))}
      />
      {props.hint && <span className="muted small">{props.hint}</span>}
    </label>
  );
}

// StartRolloutDialog starts a rollout of the selection: default inputs
// (one field per required input of the Migration; a Candidate's stored
// inputs win), how many Runs at once, a canary wave, when to pause by
// itself and how fast to start. As the inputs change it previews the
// selection (how many it covers, which miss inputs, the diffs of a sample)
// and Start waits until no Candidate misses an input.
export function StartRolloutDialog({ migration, selection, onClose }: { migration: Migration; selection: Selection; onClose: () => void }) {
  const rollouts = useRolloutClient();
  const navigate = useNavigate();
  const refreshRollouts = useRefreshRollouts(migration.id);
  const refreshSelection = useRefreshSelection(migration.id);
  const [inputs, setInputs] = useState<Record<string, string>>({});
  const [form, setForm] = useState<Form>({
    maxInFlight: 10,
    canarySize: 0,
    afterCanary: CanaryContinuation.APPROVAL,
    pauseOn: true,
    failures: 3,
    window: 20,
    maxStartsPerMinute: 0,
    maxOpenPullRequests: 0,
  });
  const [tried, setTried] = useState(false);
  const [reason, setReason] = useState("");
  const set = (changes: Partial<Form>) => setForm({ ...form, ...changes });
  const defaults = given(inputs);
  const settled = useDebounced(defaults, 400);
  const current = JSON.stringify(settled) === JSON.stringify(defaults);
  const preview = useSelectionPreview(migration.id, selection, settled, 3);
  const p = current && !preview.isPlaceholderData ? preview.data : undefined;
  const missing = p ? p.missingInputsCount : undefined;
  const bad = check(form);
  const start = useMutation({
    mutationFn: () =>
      rollouts.startRollout({
        migrationId: migration.id,
        selection: selectionMessage(selection),
        defaultInputs: defaults,
        settings: {
          maxInFlight: form.maxInFlight,
          canarySize: form.canarySize,
          afterCanary: form.canarySize > 0 ? form.afterCanary : CanaryContinuation.UNSPECIFIED,
          pauseOnFailures: form.pauseOn ? { failures: form.failures, window: form.window } : undefined,
          maxStartsPerMinute: form.maxStartsPerMinute,
          maxOpenPullRequests: form.maxOpenPullRequests,
        },
        reason: reason.trim(),
      }),
    onSuccess: (res) => {
      refreshRollouts();
      refreshSelection();
      onClose();
      if (res.rollout) navigate(rolloutPath(migration.id, res.rollout.id));
    },
  });
  // Start waits for a preview of these very inputs that finds no Candidate
  // missing one; a preview that failed leaves the check to the server.
  const previewFailed = current && preview.isError;
  const startable = bad.length === 0 && !start.isPending && (previewFailed || missing === 0);
  const count = selectionCount(selection);
  const startError = start.isError ? errorInfo(start.error) : undefined;
  return (
    <Dialog title={`Start a rollout of ${candidatesLabel(count)}`} onClose={onClose} wide>
      <form
        aria-label="Start rollout"
        onSubmit={(e) => {
          e.preventDefault();
          setTried(true);
          if (startable) start.mutate();
        }}
      >
        <p>
          <strong>Selection:</strong>{" "}
          {selection.kind === "ids"
            ? `${candidatesLabel(count)} chosen by id`
            : `every Candidate matching the table's filter (${count} now), resolved when the rollout starts`}
          {count > maxRolloutSelection && <span className="bad"> — a rollout takes at most {maxRolloutSelection.toLocaleString()}</span>}
        </p>
        <div className="columns">
          <div>
            <fieldset>
              <legend>Default inputs</legend>
              {migration.requiredInputs.length === 0 && <p className="muted">This Migration needs no inputs.</p>}
              {migration.requiredInputs.map((i) => (
                <label key={i.name}>
                  {i.label || i.name} <code>{i.name}</code>
                  <input name={i.name} value={inputs[i.name] ?? ""} onChange={(e) => setInputs({ ...inputs, [i.name]: e.target.value })} />
                  {i.description && <span className="muted small">{i.description}</span>}
                </label>
              ))}
              {migration.requiredInputs.length > 0 && (
                <p className="muted small">A Candidate's own stored inputs win over these.</p>
              )}
            </fieldset>
            <fieldset>
              <legend>Pace</legend>
              <NumberField label="Max in flight" min={1} max={10000} value={form.maxInFlight} onChange={(v) => set({ maxInFlight: v })} hint="Runs of the rollout at once; changeable while it runs." />
              <NumberField label="Max starts per minute" min={0} value={form.maxStartsPerMinute} onChange={(v) => set({ maxStartsPerMinute: v })} hint="0: no limit." />
              <NumberField label="Max open pull requests" min={0} value={form.maxOpenPullRequests} onChange={(v) => set({ maxOpenPullRequests: v })} hint="Across the Migration's Runs; 0: no limit." />
            </fieldset>
            <fieldset>
              <legend>Canary</legend>
              <NumberField label="Canary size" min={0} max={10000} value={form.canarySize} onChange={(v) => set({ canarySize: v })} hint="Candidates started first; 0: no canary. A canary Run that fails pauses the rollout." />
              <div role="radiogroup" aria-label="After the canary">
                <label className="inline">
                  <input
                    type="radio"
                    name="after-canary"
                    disabled={!(form.canarySize > 0)}
                    checked={form.afterCanary === CanaryContinuation.APPROVAL}
                    onChange={() => set({ afterCanary: CanaryContinuation.APPROVAL })}
                  />
                  after the canary: wait for my approval
                </label>
                <label className="inline">
                  <input
                    type="radio"
                    name="after-canary"
                    disabled={!(form.canarySize > 0)}
                    checked={form.afterCanary === CanaryContinuation.AUTOMATIC}
                    onChange={() => set({ afterCanary: CanaryContinuation.AUTOMATIC })}
                  />
                  after the canary: continue by itself
                </label>
              </div>
            </fieldset>
            <fieldset>
              <legend>Pause on failures</legend>
              <label className="inline">
                <input type="checkbox" checked={form.pauseOn} onChange={(e) => set({ pauseOn: e.target.checked })} />
                Pause by itself when too many steps fail
              </label>
              {form.pauseOn && (
                <div className="row">
                  <NumberField label="Failures" min={1} max={1000} value={form.failures} onChange={(v) => set({ failures: v })} />
                  <NumberField label="Of the last (outcomes)" min={1} max={1000} value={form.window} onChange={(v) => set({ window: v })} />
                </div>
              )}
            </fieldset>
            <WhyField name="reason" value={reason} onChange={setReason} placeholder="optional, e.g. wave 2: the payments team signed off">
              <span className="muted small">Shown on the rollout until it is paused or resumed, and kept in the history.</span>
            </WhyField>
          </div>
          <SelectionPreviewView
            migrationId={migration.id}
            preview={p}
            loading={!p && !previewFailed}
            error={previewFailed ? preview.error : undefined}
          />
        </div>
        {tried && bad.length > 0 && (
          <div role="alert" className="error">
            {bad.join("; ")}
          </div>
        )}
        {start.isError && (
          <>
            <ErrorBox error={start.error} />
            {startError && reasonOf(start.error) === ErrorReason.MISSING_INPUTS && (
              <p className="muted">
                {startError.metadata.count} Candidates miss inputs, e.g. {startError.metadata.candidates} (missing{" "}
                {startError.metadata.missing}).
              </p>
            )}
          </>
        )}
        <div className="actions">
          <button type="submit" className="primary" disabled={!startable}>
            {start.isPending ? "Starting…" : `Start rollout of ${candidatesLabel(count)}`}
          </button>
          <button type="button" onClick={onClose}>
            Back
          </button>
          {missing !== undefined && missing > 0 && (
            <span className="muted">Start waits until no Candidate misses an input: give a default, or set them on the Candidates.</span>
          )}
        </div>
      </form>
    </Dialog>
  );
}

// SelectionPreviewView is PreviewSelection's answer: how many Candidates
// the selection covers, how many would be skipped, which miss inputs, and
// the Migrator's diffs of the sampled ones.
function SelectionPreviewView({
  migrationId,
  preview,
  loading,
  error,
}: {
  migrationId: string;
  preview?: PreviewSelectionResponse;
  loading: boolean;
  error?: unknown;
}) {
  return (
    <section aria-label="Selection preview" aria-busy={loading}>
      <h3>Preview</h3>
      {error !== undefined && <ErrorBox error={error} />}
      {loading && <p className="muted">Previewing the selection…</p>}
      {preview && (
        <>
          <dl className="kv">
            <div>
              <dt>Candidates</dt>
              <dd data-testid="preview-count">{preview.count}</dd>
            </div>
            <div>
              <dt>Would be skipped</dt>
              <dd>{preview.notStartableCount} (running or completed)</dd>
            </div>
            <div>
              <dt>Missing inputs</dt>
              <dd className={preview.missingInputsCount > 0 ? "bad" : ""}>{preview.missingInputsCount}</dd>
            </div>
          </dl>
          {preview.missingInputs.length > 0 && (
            <div role="alert" className="error">
              {preview.missingInputsCount} Candidates miss inputs:
              <ul aria-label="Candidates missing inputs">
                {preview.missingInputs.map((c) => (
                  <li key={c.candidateId}>
                    <Link to={candidatePath(migrationId, c.candidateId)} target="_blank">
                      {c.candidateId}
                    </Link>
                    : {c.missing.join(", ")}
                  </li>
                ))}
              </ul>
              {preview.missingInputsCount > preview.missingInputs.length && (
                <span className="small">and {preview.missingInputsCount - preview.missingInputs.length} more</span>
              )}
            </div>
          )}
          {preview.samples.map((s, i) => (
            <details key={s.candidateId} className="sample" open={i === 0}>
              <summary>Diff of {s.candidateId}</summary>
              {s.error ? (
                <div role="alert" className="error">
                  {s.error}
                </div>
              ) : (
                <PreviewView steps={s.steps} />
              )}
            </details>
          ))}
        </>
      )}
    </section>
  );
}
