import { useEffect, useRef } from "react";
import { failedSteps, PreviewView } from "../../components/Preview";
import type { PreviewRunResponse } from "../../gen/loom/v1/run_service_pb";

// PreviewSection shows the last preview asked for, until closed or until a
// Run starts. The page renders it under the form that asked for it; each
// new preview is scrolled into view and its heading takes the focus, so
// the diffs are where the eye (and a screen reader) is, not below the fold.
export function PreviewSection({ preview, onClose }: { preview: PreviewRunResponse; onClose: () => void }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    const h = heading.current;
    if (!h) return;
    h.focus({ preventScroll: true });
    // jsdom has no scrollIntoView.
    h.scrollIntoView?.({ block: "start", behavior: "smooth" });
  }, [preview]);
  const failed = failedSteps(preview.steps);
  const changing = preview.steps.filter((s) => !s.error && s.diffs.length > 0).length;
  return (
    <section aria-labelledby="preview-h" className="preview-section">
      <h2 id="preview-h" ref={heading} tabIndex={-1}>
        Preview{" "}
        <button type="button" className="ghost" onClick={onClose}>
          Close
        </button>
      </h2>
      <p className="muted">
        {changing} of {preview.steps.length} steps change files
        {failed.length > 0 && `; the preview of ${failed.join(", ")} failed`}.
      </p>
      <PreviewView steps={preview.steps} />
    </section>
  );
}
