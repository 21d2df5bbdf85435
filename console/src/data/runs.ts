import { useEffect, useState } from "react";
import { useQueries } from "@tanstack/react-query";
import { Code, ConnectError } from "@connectrpc/connect";
import { RunStatus, type Run } from "../gen/loom/v1/run_pb";
import { queryKeys } from "../queryKeys";
import { follow } from "../stream";
import { useRunClient } from "../transport";

export type RunState = { run?: Run; missing: boolean; error?: unknown; live: boolean };

// useRun follows a Run live through RunService.WatchRun: the current Run at
// once, then every change as the server stores it. A dropped stream is
// resumed after the last version seen, so no change is missed and none is
// shown twice. `generation` restarts the watch (after a start, say).
// A Candidate without a Run answers NotFound: state.missing.
export function useRun(runId: string, generation = 0): RunState {
  const runs = useRunClient();
  const [state, setState] = useState<RunState>({ missing: false, live: false });
  useEffect(() => {
    const ctl = new AbortController();
    let version = 0n;
    follow(
      (signal) => runs.watchRun({ runId, afterVersion: version }, { signal }),
      (res) => {
        if (res.update.case === "run") {
          const run = res.update.value;
          version = run.version;
          setState({ run, missing: false, live: true });
        } else {
          setState((s) => (s.live ? s : { ...s, live: true }));
        }
      },
      ctl.signal,
      (err) => {
        if (err === undefined) return false;
        const code = ConnectError.from(err).code;
        if (code === Code.NotFound) {
          // No Run yet: the page restarts the watch (generation) when the
          // Candidate's history says one started.
          setState({ missing: true, live: false });
          return true;
        }
        setState((s) => ({ ...s, error: err, live: false }));
        return code === Code.Unauthenticated || code === Code.PermissionDenied || code === Code.InvalidArgument;
      },
    );
    return () => ctl.abort();
  }, [runs, runId, generation]);
  return state;
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
