import { useInfiniteQuery } from "@tanstack/react-query";
import type { EventKind } from "../gen/loom/v1/history_service_pb";
import { queryKeys } from "../queryKeys";
import { useHistoryClient } from "../transport";

// useEventPages reads the history of a Migration or of one of its
// Candidates (candidateId ""), pages of ListEvents, newest first; live
// events come from WatchEvents (EventLog).
export function useEventPages(migrationId: string, candidateId: string, kinds: EventKind[]) {
  const history = useHistoryClient();
  return useInfiniteQuery({
    queryKey: queryKeys.events(migrationId, candidateId, kinds),
    initialPageParam: "",
    queryFn: ({ pageParam, signal }) =>
      history.listEvents({ migrationId, candidateId, kinds, pageSize: 50, pageToken: pageParam }, { signal }),
    getNextPageParam: (last) => last.nextPageToken || undefined,
    staleTime: Infinity,
  });
}
