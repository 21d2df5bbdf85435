import { useEffect, useId, useRef, type ReactNode } from "react";

// Dialog is an in-page modal dialog (the console asks nothing through
// window.confirm or window.prompt): labelled by its title, Escape or the
// backdrop closes it, focus moves into it when it opens and back when it
// closes.
export function Dialog({ title, onClose, children, wide }: { title: string; onClose: () => void; children: ReactNode; wide?: boolean }) {
  const id = useId();
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const before = document.activeElement as HTMLElement | null;
    const first = ref.current?.querySelector<HTMLElement>("input, select, textarea, button:not(.dialog-close)");
    (first ?? ref.current)?.focus();
    return () => before?.focus?.();
  }, []);
  return (
    <div
      className="dialog-backdrop"
      onMouseDown={(e) => {
        if (e.target === e.currentTarget) onClose();
      }}
    >
      <div
        ref={ref}
        role="dialog"
        aria-modal="true"
        aria-labelledby={id}
        tabIndex={-1}
        className={`dialog card${wide ? " dialog-wide" : ""}`}
        onKeyDown={(e) => {
          if (e.key === "Escape") {
            e.stopPropagation();
            onClose();
          }
        }}
      >
        <div className="dialog-head">
          <h2 id={id}>{title}</h2>
          <button type="button" className="ghost dialog-close" aria-label="Dismiss" onClick={onClose}>
            ×
          </button>
        </div>
        {children}
      </div>
    </div>
  );
}
