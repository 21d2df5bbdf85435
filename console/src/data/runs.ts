import { useState } from "react";
import { useQueries } from "@tanstack/react-query";
import { Code, ConnectError } from "@connectrpc/connect";
import { RunStatus, type Run } from "../gen/loom/v1/run_pb";
import { queryKeys } from "../queryKeys";
import { useFeedLive } from "../fleetFeed";
import { useFeedReads } from "../live/reads";
import { useRunClient } from "../transport";

export type RunState = { run?: Run; missing: boolean; error?: unknown; live: boolean };

// newer says whether a is a later state of the Run than b (a new execution,
// or a higher version of the same one).
function newer(a: Run, b: Run): boolean {
  return a.execution !== b.execution ? a.execution > b.execution : a.version > b.version;
}

// useRun follows a Run live: GetRun at once, then again whenever the
// browser's feed (fleetFeed) has an event of the Candidate, after a gap in
// the feed, and every 10 s while the Run runs (a few changes of a Run, such
// as dispatch failures cleared, come with no event). An older answer never
// replaces a newer one. No stream of its own: a WatchRun per page held one
// of the browser's six connections each. `generation` reads again at once
// (after a start, say). A Candidate without a Run answers NotFound:
// state.missing; the next event of the Candidate reads again.
export function useRun(runId: string, generation = 0): RunState {
  const runs = useRunClient();
  const feedLive = useFeedLive();
  // Kept with the Run it is of: another Candidate's Run is never shown, nor
  // compared with.
  const [got, setState] = useState<Omit<RunState, "live"> & { of?: string }>({ missing: false });
  const state = got.of === runId ? got : { missing: false };
  const sep = runId.indexOf("__");
  const migrationId = runId.slice(0, sep);
  const candidateId = runId.slice(sep + 2);
  useFeedReads(
    async (signal) => {
      try {
        const { run } = await runs.getRun({ runId }, { signal });
        if (run) setState((s) => (s.of === runId && s.run && newer(s.run, run) ? s : { of: runId, run, missing: false }));
      } catch (err) {
        if (signal.aborted) return;
        if (ConnectError.from(err).code === Code.NotFound) setState({ of: runId, missing: true });
        else setState((s) => (s.of === runId ? { ...s, error: err } : { of: runId, missing: false, error: err }));
      }
    },
    (e) => e.migrationId === migrationId && e.candidateId === candidateId,
    [runs, runId, generation],
    { ms: 10_000, while: () => state.run?.status === RunStatus.RUNNING },
  );
  return { run: state.run, missing: state.missing, error: state.error, live: feedLive && state.run !== undefined && state.error === undefined };
}

// useRunningRuns reads, for each of the Migrations, its first running Runs
// (and how many run).
export function useRunningRuns(migrationIds: string[]) {
  const runs = useRunClient();
  return useQueries({
    queries: migrationIds.map((migrationId) => ({
      queryKey: queryKeys.running(migrationId),
      queryFn: ({ signal }: { signal: AbortSignal }) =>
        runs.listRuns({ migrationId, status: RunStatus.RUNNING, pageSize: 10 }, { signal }),
    })),
  });
}
