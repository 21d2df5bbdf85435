import { useCallback, useState } from "react";
import { keepPreviousData, useInfiniteQuery, useQuery, useQueryClient } from "@tanstack/react-query";
import { RolloutState, type Rollout } from "../gen/loom/v1/rollout_pb";
import { queryKeys } from "../queryKeys";
import { selectionMessage, type Selection } from "../selection";
import { EventKind } from "../gen/loom/v1/history_service_pb";
import { useFeedLive } from "../fleetFeed";
import { useFeedReads } from "../live/reads";
import { useRolloutClient } from "../transport";

// rolloutEnded says whether a rollout will change no more.
export function rolloutEnded(r: Rollout): boolean {
  return r.state === RolloutState.COMPLETED || r.state === RolloutState.CANCELLED;
}

export type RolloutWatch = {
  rollout?: Rollout;
  error?: unknown;
  live: boolean;
  // apply shows a rollout an action answered with (PauseRollout, ...) at
  // once, unless the watch already delivered a newer version.
  apply: (r: Rollout) => void;
};

// The events after which a rollout may have changed: its own, and those of
// its Migration's Runs (its counts follow them).
const rolloutKinds = new Set([
  EventKind.RUN_STARTED,
  EventKind.RUN_COMPLETED,
  EventKind.RUN_CANCELLED,
  EventKind.STEP_REPORTED,
  EventKind.STEP_FAILED,
]);

// useRollout follows a rollout live: GetRollout at once, then again
// whenever the browser's feed (fleetFeed) has an event of the rollout or of
// its Migration's Runs, after a gap in the feed, and every 5 s until it
// ended (its counts are written after its Runs' events, with none of their
// own). An older answer never replaces a newer one. No stream of its own:
// a WatchRollout per page held one of the browser's six connections.
export function useRollout(migrationId: string, rolloutId: string): RolloutWatch {
  const rollouts = useRolloutClient();
  const feedLive = useFeedLive();
  const key = `${migrationId}/${rolloutId}`;
  const [got, setState] = useState<{ of?: string; rollout?: Rollout; error?: unknown }>({});
  const state = got.of === key ? got : {};
  useFeedReads(
    async (signal) => {
      try {
        const { rollout: r } = await rollouts.getRollout({ migrationId, rolloutId }, { signal });
        if (r) setState((s) => (s.of === key && s.rollout && s.rollout.version > r.version ? s : { of: key, rollout: r }));
      } catch (err) {
        if (signal.aborted) return;
        setState((s) => (s.of === key ? { ...s, error: err } : { of: key, error: err }));
      }
    },
    (e) =>
      e.migrationId === migrationId &&
      (e.details["rollout_id"] === rolloutId || rolloutKinds.has(e.kind)),
    [rollouts, key],
    { ms: 5_000, while: () => state.rollout !== undefined && !rolloutEnded(state.rollout) },
  );
  const apply = useCallback(
    (r: Rollout) =>
      setState((s) => (s.of === key && s.rollout && s.rollout.version > r.version ? s : { of: key, rollout: r, error: undefined })),
    [key],
  );
  return {
    rollout: state.rollout,
    error: state.error,
    live: feedLive && state.rollout !== undefined && state.error === undefined && !rolloutEnded(state.rollout),
    apply,
  };
}

// useRollouts reads a Migration's rollouts, newest first, a page at a time.
export function useRollouts(migrationId: string) {
  const rollouts = useRolloutClient();
  return useInfiniteQuery({
    queryKey: queryKeys.rollouts(migrationId),
    initialPageParam: "",
    queryFn: ({ pageParam, signal }) => rollouts.listRollouts({ migrationId, pageSize: 20, pageToken: pageParam }, { signal }),
    getNextPageParam: (last) => last.nextPageToken || undefined,
  });
}

// useRefreshRollouts returns what reads a Migration's rollouts again (after
// one started).
export function useRefreshRollouts(migrationId: string): () => void {
  const qc = useQueryClient();
  return () => qc.invalidateQueries({ queryKey: queryKeys.rollouts(migrationId) });
}

// useSelectionPreview asks what a rollout of the selection with these
// default inputs would start (RolloutService.PreviewSelection, with the
// Migrator's diffs of sampleSize Candidates). The last answer stays shown
// while the next loads.
export function useSelectionPreview(
  migrationId: string,
  selection: Selection,
  defaultInputs: Record<string, string>,
  sampleSize: number,
) {
  const rollouts = useRolloutClient();
  const request = { migrationId, selection: selectionMessage(selection), defaultInputs, sampleSize };
  return useQuery({
    queryKey: queryKeys.selectionPreview(migrationId, JSON.stringify(request)),
    queryFn: ({ signal }) => rollouts.previewSelection(request, { signal }),
    placeholderData: keepPreviousData,
    staleTime: 30_000,
    retry: false,
  });
}
