import { useState } from "react";
import { useMutation } from "@tanstack/react-query";
import { toast } from "sonner";
import { errorText } from "../../api";
import type { Run, StepResult } from "../../gen/loom/v1/run_pb";
import { useRunClient } from "../../transport";
import { WhyField } from "../../components/Common";

// What an operator may tell Loom about a step the Migrator will not finish:
// skip it (with a reason), or adopt the pull request that already exists.
export type Override = "skip" | "adopt";

const texts: Record<Override, { title: string; field: string; placeholder: string; submit: string }> = {
  skip: {
    title: "Skip step",
    field: "Reason",
    placeholder: "e.g. bumped by hand in #412",
    submit: "Skip step",
  },
  adopt: {
    title: "Adopt existing PR",
    field: "Pull request URL",
    placeholder: "https://github.com/acme/orders/pull/97",
    submit: "Adopt PR",
  },
};

// check says what is wrong with the value given, or "" when it will do
// (the server checks again: a reason of 1 to 1,024 characters, an http(s)
// URL).
export function check(what: Override, value: string): string {
  const v = value.trim();
  if (what === "skip") {
    if (!v) return "Say why the step is skipped.";
    if (v.length > 1024) return "At most 1,024 characters.";
    return "";
  }
  try {
    const u = new URL(v);
    if (u.protocol === "http:" || u.protocol === "https:") return "";
  } catch {
    // not a URL
  }
  return "An http:// or https:// URL.";
}

// StepOverride is the in-page dialog of a skip or an adoption: it asks for
// the reason or the URL, then sends the request naming the step and its
// attempt.
export function StepOverride(props: { what: Override; run: Run; step: StepResult; onClose: () => void; onChanged: () => void }) {
  const { what, run, step } = props;
  const runs = useRunClient();
  const [value, setValue] = useState("");
  const [note, setNote] = useState("");
  const [tried, setTried] = useState(false);
  const t = texts[what];
  const problem = check(what, value);
  const send = useMutation({
    mutationFn: async () => {
      const base = { runId: run.id, stepName: step.stepName, attempt: step.attempt };
      if (what === "skip") await runs.skipStep({ ...base, reason: value.trim() });
      else await runs.adoptPullRequest({ ...base, prUrl: value.trim(), note: note.trim() });
    },
    onSuccess: () => {
      toast.success(`${step.stepName}: ${what === "skip" ? "skipped" : "pull request adopted"}`);
      props.onClose();
      props.onChanged();
    },
    onError: (err) => toast.error(`${step.stepName}: ${errorText(err)}`),
  });
  const label = `${t.title}: ${step.stepName}`;
  return (
    <form
      role="dialog"
      aria-label={label}
      className="card override"
      onSubmit={(e) => {
        e.preventDefault();
        setTried(true);
        if (!problem) send.mutate();
      }}
      onKeyDown={(e) => e.key === "Escape" && props.onClose()}
    >
      <h3>{label}</h3>
      <p className="muted small">
        {what === "skip"
          ? "The step counts as done and the Run moves on to the next step (or completes). Its Migrator is not asked again."
          : "The step becomes open with this pull request, and the Run waits for its merge."}
      </p>
      <label>
        {t.field}
        <input
          name={what === "skip" ? "reason" : "pr_url"}
          value={value}
          autoFocus
          placeholder={t.placeholder}
          onChange={(e) => setValue(e.target.value)}
          aria-invalid={tried && !!problem}
        />
      </label>
      {what === "adopt" && (
        <WhyField value={note} onChange={setNote} placeholder="e.g. opened by hand after the Migrator's push was refused" />
      )}
      {tried && problem && (
        <div role="alert" className="error">
          {problem}
        </div>
      )}
      <div className="actions">
        <button type="submit" className={what === "skip" ? "danger" : "primary"} disabled={send.isPending}>
          {send.isPending ? "Sending…" : t.submit}
        </button>
        <button type="button" onClick={props.onClose}>
          Cancel
        </button>
      </div>
    </form>
  );
}
