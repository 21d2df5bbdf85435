import { useCallback, useEffect, useState } from "react";
import { keepPreviousData, useInfiniteQuery, useQuery, useQueryClient } from "@tanstack/react-query";
import { Code, ConnectError } from "@connectrpc/connect";
import { RolloutState, type Rollout } from "../gen/loom/v1/rollout_pb";
import { queryKeys } from "../queryKeys";
import { selectionMessage, type Selection } from "../selection";
import { follow } from "../stream";
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

// useRollout follows a rollout live through RolloutService.WatchRollout:
// the rollout at once, then every change as the server stores it. A
// dropped stream is resumed after the last version seen; the stream ends
// (and is not opened again) once the rollout is sent completed or
// cancelled.
export function useRollout(migrationId: string, rolloutId: string): RolloutWatch {
  const rollouts = useRolloutClient();
  const [state, setState] = useState<{ rollout?: Rollout; error?: unknown; live: boolean }>({ live: false });
  useEffect(() => {
    setState({ live: false });
    const ctl = new AbortController();
    let version = 0n;
    let ended = false;
    follow(
      (signal) => rollouts.watchRollout({ migrationId, rolloutId, afterVersion: version }, { signal }),
      (res) => {
        const r = res.rollout;
        if (r) {
          if (r.version < version) return;
          version = r.version;
          ended = rolloutEnded(r);
          setState({ rollout: r, live: true });
        } else {
          setState((s) => (s.live ? s : { ...s, live: true }));
        }
      },
      ctl.signal,
      (err) => {
        if (err === undefined) {
          // The server ends the stream after the rollout ended; otherwise
          // (a proxy's timeout, a restart) it is opened again.
          if (ended) {
            setState((s) => ({ ...s, live: false }));
            return true;
          }
          return false;
        }
        const code = ConnectError.from(err).code;
        setState((s) => ({ ...s, error: err, live: false }));
        return (
          code === Code.NotFound || code === Code.Unauthenticated || code === Code.PermissionDenied || code === Code.InvalidArgument
        );
      },
    );
    return () => ctl.abort();
  }, [rollouts, migrationId, rolloutId]);
  const apply = useCallback(
    (r: Rollout) => setState((s) => (s.rollout && s.rollout.version > r.version ? s : { ...s, rollout: r, error: undefined })),
    [],
  );
  return { ...state, apply };
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
