import { useInfiniteQuery } from "@tanstack/react-query";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { EventKind } from "../gen/loom/v1/history_service_pb";
import { queryKeys } from "../queryKeys";
import { useHistoryClient } from "../transport";

// More filters of the history: the Candidates whose id starts with
// candidatePrefix, the events at or after startMs and before endMs (unix
// ms); unset means any.
export type EventRange = { candidatePrefix?: string; startMs?: number; endMs?: number };

// useEventPages reads the history of a Migration or of one of its
// Candidates (candidateId ""), pages of ListEvents, newest first; live
// events come from the browser's fleet feed (EventLog).
export function useEventPages(migrationId: string, candidateId: string, kinds: EventKind[], more: EventRange = {}) {
  const history = useHistoryClient();
  const { candidatePrefix = "", startMs, endMs } = more;
  return useInfiniteQuery({
    queryKey: queryKeys.events(migrationId, candidateId, kinds, `${candidatePrefix}|${startMs ?? ""}|${endMs ?? ""}`),
    initialPageParam: "",
    queryFn: ({ pageParam, signal }) =>
      history.listEvents(
        {
          migrationId,
          candidateId,
          candidateIdPrefix: candidatePrefix,
          kinds,
          startTime: startMs === undefined ? undefined : timestampFromMs(startMs),
          endTime: endMs === undefined ? undefined : timestampFromMs(endMs),
          pageSize: 50,
          pageToken: pageParam,
        },
        { signal },
      ),
    getNextPageParam: (last) => last.nextPageToken || undefined,
    staleTime: Infinity,
  });
}
