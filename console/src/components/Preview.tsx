import { useState } from "react";
import { createTwoFilesPatch } from "diff";
import { html as diffHtml } from "diff2html";
import type { StepPreview } from "../gen/loom/v1/preview_pb";
import { FileDiffStatus } from "../gen/loom/v1/preview_pb";
import { Badge, Empty } from "./Common";

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
            Step {s.stepName} {s.skipped && <Badge value="skipped" />}
          </h3>
          {s.skipped && <p className="muted">{s.skipReason || "The Migrator would skip this step."}</p>}
          {s.error && (
            <div role="alert" className="error">
              {s.error}
            </div>
          )}
          {!s.skipped && !s.error && s.diffs.length === 0 && <Empty>No file would change.</Empty>}
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
