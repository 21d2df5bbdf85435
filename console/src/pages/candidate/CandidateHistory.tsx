import { EventLog } from "../../components/EventLog";
import { EventKind } from "../../gen/loom/v1/history_service_pb";

// CandidateHistory is the Candidate's event log. A Run started or ended
// elsewhere (another operator, the CLI) calls onRunChanged, with started
// true when a Run started.
export function CandidateHistory({
  migrationId,
  candidateId,
  onRunChanged,
}: {
  migrationId: string;
  candidateId: string;
  onRunChanged: (started: boolean) => void;
}) {
  return (
    <section aria-labelledby="history-h">
      <h2 id="history-h">History</h2>
      <EventLog
        migrationId={migrationId}
        candidateId={candidateId}
        onEvent={(e) => {
          if (e.kind === EventKind.RUN_STARTED || e.kind === EventKind.RUN_COMPLETED || e.kind === EventKind.RUN_CANCELLED) {
            onRunChanged(e.kind === EventKind.RUN_STARTED);
          }
        }}
      />
    </section>
  );
}
