import { useId, useState, type ReactNode } from "react";
import { useMutation } from "@tanstack/react-query";
import { Dialog } from "../../components/Dialog";
import { ErrorBox } from "../../components/Common";

// NoteDialog asks an operator to confirm a deliberate action on a Run
// (retry a step, finish a review, mark a step merged, cancel the Run) with a
// note for the record: required or optional, it is sent as typed (trimmed)
// and kept by the server in the history, and as the step's message or the
// Run's cancel reason (a retry's note is in the history only: the new
// attempt starts clean). Focus starts in the note; Enter sends when the note will do
// (Shift+Enter starts a new line), Escape or "Back" closes without sending.
// A refusal is shown in the dialog, which stays open.
export function NoteDialog(props: {
  title: string;
  children: ReactNode;
  noteLabel: string;
  required: boolean;
  maxLength: number;
  placeholder?: string;
  submit: string;
  danger?: boolean;
  send: (note: string) => Promise<unknown>;
  onClose: () => void;
  onDone: (note: string) => void;
}) {
  const [note, setNote] = useState("");
  const hintId = useId();
  const trimmed = note.trim();
  const valid = (!props.required || trimmed !== "") && trimmed.length <= props.maxLength;
  const act = useMutation({
    mutationFn: () => props.send(trimmed),
    onSuccess: () => props.onDone(trimmed),
  });
  const submit = () => {
    if (valid && !act.isPending) act.mutate();
  };
  const hint = props.required ? "Required." : "Optional.";
  return (
    <Dialog title={props.title} onClose={props.onClose}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          submit();
        }}
      >
        {props.children}
        <label>
          {props.noteLabel}
          <textarea
            name="note"
            value={note}
            rows={3}
            maxLength={props.maxLength}
            required={props.required}
            aria-required={props.required}
            aria-describedby={hintId}
            placeholder={props.placeholder}
            onChange={(e) => setNote(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
                e.preventDefault();
                submit();
              }
            }}
          />
        </label>
        <p id={hintId} className="muted small">
          {hint} Kept in the Run's history as typed. Enter sends, Shift+Enter starts a new line, Escape goes back.
        </p>
        {act.isError && <ErrorBox error={act.error} />}
        <div className="actions">
          <button type="submit" className={props.danger ? "danger" : "primary"} disabled={!valid || act.isPending}>
            {act.isPending ? "Sending…" : props.submit}
          </button>
          <button type="button" onClick={props.onClose}>
            Back
          </button>
        </div>
      </form>
    </Dialog>
  );
}
