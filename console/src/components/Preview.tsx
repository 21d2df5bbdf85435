import { useState } from "react";
import { createTwoFilesPatch } from "diff";
import { html as diffHtml } from "diff2html";
import type { StepPreview } from "../gen/loom/v1/preview_pb";
import { FileDiffStatus } from "../gen/loom/v1/preview_pb";
import { Badge } from "./Common";

// stepLabel says what a step's preview holds. A step the Migrator marks
// skipped changes no files (a review, or files already so), but the Run
// still walks it: a review still waits for its reviewer. So it reads "no
// file changes", never "skipped", which in a Run means an operator skipped
// the step.
export function stepLabel(s: StepPreview): "preview_failed" | "no_file_changes" | "file_changes" {
  if (s.error) return "preview_failed";
  if (s.skipped || s.diffs.length === 0) return "no_file_changes";
  return "file_changes";
}

// failedSteps names the steps whose preview the Migrator could not compute.
export const failedSteps = (steps: StepPreview[]) => steps.filter((s) => s.error).map((s) => s.stepName);

// PreviewView shows what a Run would change, per step and file: the
// Migrator sends each file before and after; jsdiff makes the unified diff
// and diff2html renders it line by line or side by side (it escapes the
// files' text).
export function PreviewView({ steps }: { steps: StepPreview[] }) {
  const [layout, setLayout] = useState<"line-by-line" | "side-by-side">("line-by-line");
  return (
    <div className="preview">
      <div className="seg" role="group" aria-label="Diff layout">
        <button type="button" aria-pressed={layout === "line-by-line"} onClick={() => setLayout("line-by-line")}>
          Unified
        </button>
        <button type="button" aria-pressed={layout === "side-by-side"} onClick={() => setLayout("side-by-side")}>
          Side by side
        </button>
      </div>
      {steps.map((s) => (
        <section key={s.stepName} className="card">
          <h3>
            Step {s.stepName} <Badge value={stepLabel(s)} />
          </h3>
          {s.error && (
            <div role="alert" className="error">
              {s.error}
            </div>
          )}
          {!s.error && s.diffs.length === 0 && (
            <p className="muted">{(s.skipped && s.skipReason) || "No file would change in this step."}</p>
          )}
          {s.diffs.map((d) => {
            const name = (d.repo ? d.repo + ": " : "") + d.path;
            const patch = createTwoFilesPatch(
              d.status === FileDiffStatus.ADDED ? "/dev/null" : "a/" + d.path,
              d.status === FileDiffStatus.DELETED ? "/dev/null" : "b/" + d.path,
              d.before,
              d.after,
            );
            return (
              <div key={name} className="filediff" aria-label={`Diff of ${name}`}>
                <div
                  // diff2html escapes the content of the files.
                  dangerouslySetInnerHTML={{
                    __html: diffHtml(patch, { outputFormat: layout, drawFileList: false, matching: "lines" }),
                  }}
                />
              </div>
            );
          })}
        </section>
      ))}
    </div>
  );
}
