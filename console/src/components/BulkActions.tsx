import { lazy, Suspense, useState } from "react";
import { Link } from "react-router";
import { useMutation } from "@tanstack/react-query";
import { BulkOutcome, type BulkResult } from "../gen/loom/v1/bulk_pb";
import { DiscoveryService } from "../gen/loom/v1/discovery_service_pb";
import type { Migration } from "../gen/loom/v1/migration_pb";
import { RolloutService } from "../gen/loom/v1/rollout_service_pb";
import { StepStatus } from "../gen/loom/v1/run_pb";
import { RunService } from "../gen/loom/v1/run_service_pb";
import { useRefreshSelection } from "../data/discovery";
import { useCan } from "../data/registry";
import { candidatesLabel, maxBulkSelection, selectionCount, selectionMessage, type Selection } from "../selection";
import { useDiscoveryClient, useRunClient } from "../transport";
import { candidatePath, ErrorBox, WhyField } from "./Common";
import { Dialog } from "./Dialog";

// The dialog shows the Migrator's diffs: the diff renderer loads when it
// first opens, not with the Migration's page.
const StartRolloutDialog = lazy(() => import("./StartRolloutDialog").then((m) => ({ default: m.StartRolloutDialog })));

type Action = "rollout" | "retry" | "cancel" | "review" | "merged" | "inputs";

// BulkBar is shown while Candidates of the table are selected: what may be
// done to all of them at once. Each action asks in a dialog, naming how
// many Candidates it touches, then shows what was done to each.
export function BulkBar({ migration, selection, onClear }: { migration: Migration; selection: Selection; onClear: () => void }) {
  const can = useCan();
  const [open, setOpen] = useState<Action | null>(null);
  const count = selectionCount(selection);
  const tooMany = count > maxBulkSelection;
  const bulk = (action: Action, label: string, allowed: boolean, cls = "") =>
    allowed && (
      <button type="button" className={cls} disabled={tooMany} onClick={() => setOpen(action)}>
        {label}
      </button>
    );
  return (
    <div className="bulkbar" role="toolbar" aria-label="Bulk actions">
      <strong>
        {candidatesLabel(count)} selected{selection.kind === "filter" && " (all matching the filter)"}
      </strong>
      {can(RolloutService.method.startRollout) && (
        <button type="button" className="primary" onClick={() => setOpen("rollout")}>
          Start rollout…
        </button>
      )}
      {bulk("retry", "Retry failed steps…", can(RunService.method.bulkRetrySteps))}
      {bulk("cancel", "Cancel Runs…", can(RunService.method.bulkCancelRuns), "danger")}
      {bulk("review", "Finish reviews…", can(RunService.method.bulkFinishReviews))}
      {bulk("merged", "Mark merged…", can(RunService.method.bulkMarkStepsMerged))}
      {bulk("inputs", "Update inputs…", can(DiscoveryService.method.bulkUpdateCandidateInputs))}
      <button type="button" className="ghost" onClick={onClear}>
        Clear selection
      </button>
      {tooMany && (
        <span className="muted small">
          A bulk action takes at most {maxBulkSelection.toLocaleString()} Candidates: narrow the filter.
        </span>
      )}
      {open === "rollout" && (
        <Suspense fallback={<span className="muted">Opening…</span>}>
          <StartRolloutDialog migration={migration} selection={selection} onClose={() => setOpen(null)} />
        </Suspense>
      )}
      {open && open !== "rollout" && (
        <BulkActionDialog action={open} migration={migration} selection={selection} onClose={() => setOpen(null)} />
      )}
    </div>
  );
}

const questions: Record<Exclude<Action, "rollout">, (what: string) => string> = {
  retry: (w) => `Retry the failed steps of ${w}?`,
  cancel: (w) => `Cancel the Runs of ${w}?`,
  review: (w) => `Finish the reviews of ${w}?`,
  merged: (w) => `Mark the pull requests of ${w} merged?`,
  inputs: (w) => `Update the inputs of ${w}?`,
};

const confirmLabels: Record<Exclude<Action, "rollout">, string> = {
  retry: "Retry failed steps",
  cancel: "Cancel Runs",
  review: "Finish reviews",
  merged: "Mark merged",
  inputs: "Update inputs",
};

function stepLike(m: Migration, word: string): string {
  return (m.steps.find((s) => s.type.includes(word)) ?? m.steps[0])?.name ?? "";
}

// BulkActionDialog asks what the action needs (a reason, a step, ...),
// sends it once confirmed and shows the BulkResult.
function BulkActionDialog({
  action,
  migration,
  selection,
  onClose,
}: {
  action: Exclude<Action, "rollout">;
  migration: Migration;
  selection: Selection;
  onClose: () => void;
}) {
  const runs = useRunClient();
  const discovery = useDiscoveryClient();
  const refresh = useRefreshSelection(migration.id);
  const [reason, setReason] = useState("");
  const [note, setNote] = useState("");
  const [onlyStep, setOnlyStep] = useState("");
  const [step, setStep] = useState(() => stepLike(migration, action === "review" ? "review" : "pr"));
  const [outcome, setOutcome] = useState<"done" | "failed">("done");
  const [inputs, setInputs] = useState<Record<string, string>>({});
  const [remove, setRemove] = useState<string[]>([]);
  const [invalid, setInvalid] = useState("");
  const base = { migrationId: migration.id, selection: selectionMessage(selection) };
  const act = useMutation({
    mutationFn: async (): Promise<BulkResult | undefined> => {
      switch (action) {
        case "retry":
          return (await runs.bulkRetrySteps({ ...base, stepName: onlyStep, note })).result;
        case "cancel":
          return (await runs.bulkCancelRuns({ ...base, reason })).result;
        case "review":
          return (
            await runs.bulkFinishReviews({
              ...base,
              stepName: step,
              outcome: outcome === "done" ? StepStatus.COMPLETED : StepStatus.FAILED,
              note,
            })
          ).result;
        case "merged":
          return (await runs.bulkMarkStepsMerged({ ...base, stepName: step, note })).result;
        case "inputs": {
          const set = Object.fromEntries(Object.entries(inputs).filter(([k, v]) => v.trim() && !remove.includes(k)));
          return (await discovery.bulkUpdateCandidateInputs({ ...base, inputs: set, removeInputs: remove, note })).result;
        }
      }
    },
    onSettled: refresh,
  });
  const count = selectionCount(selection);
  const stepChoice = (
    <label>
      Step
      <select value={step} onChange={(e) => setStep(e.target.value)}>
        {migration.steps.map((s) => (
          <option key={s.name} value={s.name}>
            {s.name} ({s.type})
          </option>
        ))}
      </select>
    </label>
  );
  return (
    <Dialog
      title={act.isSuccess ? `${confirmLabels[action]}: what was done` : questions[action](candidatesLabel(count))}
      onClose={onClose}
      wide={act.isSuccess}
    >
      {act.isSuccess ? (
        <>
          <BulkResultView migrationId={migration.id} result={act.data} />
          <div className="actions">
            <button type="button" className="primary" onClick={onClose}>
              Close
            </button>
          </div>
        </>
      ) : (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            if (action === "inputs" && remove.length === 0 && !Object.values(inputs).some((v) => v.trim())) {
              setInvalid("Give a value to set, or an input to remove.");
              return;
            }
            // As for one Run: a failed review and a cancel say why, and
            // that is what each Run's history records.
            if (action === "review" && outcome === "failed" && !note.trim()) {
              setInvalid("Say why the reviews failed: the note is recorded on each Run.");
              return;
            }
            if (action === "cancel" && !reason.trim()) {
              setInvalid("Give a reason: it is recorded on each Run.");
              return;
            }
            setInvalid("");
            act.mutate();
          }}
        >
          {selection.kind === "filter" && (
            <p className="muted small">Every Candidate matching the table's filter when the server receives the request.</p>
          )}
          {action === "retry" && (
            <>
              <p>Each Run whose current step failed is dispatched again, as its next attempt. The others are refused alone.</p>
              <label>
                Only step
                <select value={onlyStep} onChange={(e) => setOnlyStep(e.target.value)}>
                  <option value="">any failed step</option>
                  {migration.steps.map((s) => (
                    <option key={s.name} value={s.name}>
                      {s.name}
                    </option>
                  ))}
                </select>
              </label>
              <label>
                Note
                <input value={note} maxLength={4000} onChange={(e) => setNote(e.target.value)} placeholder="why: the flaky CI is fixed" />
              </label>
            </>
          )}
          {action === "cancel" && (
            <>
              <p>Their running Runs stop and the Candidates go back to not started. Open pull requests stay open.</p>
              <label>
                Reason
                <textarea value={reason} rows={2} maxLength={2000} onChange={(e) => setReason(e.target.value)} />
              </label>
            </>
          )}
          {action === "review" && (
            <>
              {stepChoice}
              <fieldset>
                <legend>Outcome</legend>
                <label className="inline">
                  <input type="radio" name="outcome" checked={outcome === "done"} onChange={() => setOutcome("done")} /> done
                </label>
                <label className="inline">
                  <input type="radio" name="outcome" checked={outcome === "failed"} onChange={() => setOutcome("failed")} /> failed
                </label>
              </fieldset>
              <label>
                Note
                <textarea value={note} rows={2} maxLength={4000} onChange={(e) => setNote(e.target.value)} />
              </label>
            </>
          )}
          {action === "merged" && (
            <>
              <p>Records that each Run's pull request of this step was merged outside Loom; the Runs move on.</p>
              {stepChoice}
              <label>
                Note
                <input value={note} maxLength={4000} onChange={(e) => setNote(e.target.value)} placeholder="merged by hand after CI flake" />
              </label>
            </>
          )}
          {action === "inputs" && (
            <>
              <p className="muted small">Set on every selected Candidate, over its stored inputs; an empty field leaves the input as it is.</p>
              {migration.requiredInputs.length === 0 && <p className="muted">This Migration needs no inputs.</p>}
              {migration.requiredInputs.map((i) => (
                <div key={i.name} className="row">
                  <label>
                    {i.label || i.name} <code>{i.name}</code>
                    <input
                      value={inputs[i.name] ?? ""}
                      disabled={remove.includes(i.name)}
                      onChange={(e) => setInputs({ ...inputs, [i.name]: e.target.value })}
                    />
                  </label>
                  <label className="inline">
                    <input
                      type="checkbox"
                      checked={remove.includes(i.name)}
                      onChange={(e) => setRemove(e.target.checked ? [...remove, i.name] : remove.filter((x) => x !== i.name))}
                    />
                    remove
                  </label>
                </div>
              ))}
              <WhyField value={note} onChange={setNote} placeholder="e.g. the registry moved, see INFRA-102" />
            </>
          )}
          {invalid && (
            <div role="alert" className="error">
              {invalid}
            </div>
          )}
          {act.isError && <ErrorBox error={act.error} />}
          <div className="actions">
            <button type="submit" className={action === "cancel" ? "danger" : "primary"} disabled={act.isPending}>
              {act.isPending ? "Working…" : `${confirmLabels[action]} (${count})`}
            </button>
            <button type="button" onClick={onClose}>
              Back
            </button>
          </div>
        </form>
      )}
    </Dialog>
  );
}

const outcomeLabel: Record<number, string> = {
  [BulkOutcome.DONE]: "done",
  [BulkOutcome.REFUSED]: "refused",
  [BulkOutcome.NOT_ATTEMPTED]: "not attempted",
};

// BulkResultView shows what a bulk action did: how many Candidates were
// done, refused and not attempted, and each one not done with why.
export function BulkResultView({ migrationId, result }: { migrationId: string; result?: BulkResult }) {
  if (!result) return <p className="muted">The server sent no result.</p>;
  const notDone = result.outcomes.filter((o) => o.outcome !== BulkOutcome.DONE);
  const shown = notDone.slice(0, 200);
  return (
    <section aria-label="Bulk result">
      <div className="outcomes">
        <span>
          <strong>{result.doneCount}</strong> done
        </span>
        <span className={result.refusedCount > 0 ? "bad" : ""}>
          <strong>{result.refusedCount}</strong> refused
        </span>
        <span>
          <strong>{result.notAttemptedCount}</strong> not attempted
        </span>
        <span className="muted">of {result.selectedCount} selected</span>
      </div>
      {result.notAttemptedCount > 0 && (
        <p className="muted small">Nothing changed for the Candidates not attempted: send the action again for them.</p>
      )}
      {shown.length > 0 && (
        <table className="grid">
          <thead>
            <tr>
              <th>Candidate</th>
              <th>Outcome</th>
              <th>Reason</th>
              <th>Message</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((o) => (
              <tr key={o.candidateId}>
                <td>
                  <Link to={candidatePath(migrationId, o.candidateId)}>{o.candidateId}</Link>
                </td>
                <td>{outcomeLabel[o.outcome] ?? String(o.outcome)}</td>
                <td>
                  <code>{o.reason || o.code}</code>
                </td>
                <td>{o.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {notDone.length > shown.length && <p className="muted small">and {notDone.length - shown.length} more not done.</p>}
    </section>
  );
}
