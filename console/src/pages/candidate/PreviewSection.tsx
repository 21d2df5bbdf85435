import { PreviewView } from "../../components/Preview";
import type { PreviewRunResponse } from "../../gen/loom/v1/run_service_pb";

// PreviewSection shows the last preview asked for, until closed.
export function PreviewSection({ preview, onClose }: { preview: PreviewRunResponse; onClose: () => void }) {
  return (
    <section aria-labelledby="preview-h">
      <h2 id="preview-h">
        Preview{" "}
        <button type="button" className="ghost" onClick={onClose}>
          Close
        </button>
      </h2>
      <PreviewView steps={preview.steps} />
    </section>
  );
}
