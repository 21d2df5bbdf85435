import { keepPreviousData, useQuery, useQueryClient } from "@tanstack/react-query";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListCandidatesRequestSchema } from "../gen/loom/v1/discovery_service_pb";
import type { Migration } from "../gen/loom/v1/migration_pb";
import { queryKeys } from "../queryKeys";
import { useDiscoveryClient } from "../transport";
import { invalidateSeen } from "../live/visible";

// useCandidate reads a Candidate (DiscoveryService.GetCandidate).
export function useCandidate(migrationId: string, candidateId: string) {
  const discovery = useDiscoveryClient();
  return useQuery({
    queryKey: queryKeys.candidate(migrationId, candidateId),
    queryFn: ({ signal }) => discovery.getCandidate({ migrationId, candidateId }, { signal }),
  });
}

// useRefreshCandidate returns what reads a Candidate again after it changed
// (a Run started, ended or was cancelled, a step acted on, inputs saved):
// the Candidate, the fleet's figures and its Migration's table; in a hidden
// tab (told by the feed), once it is shown.
export function useRefreshCandidate(migrationId: string, candidateId: string): () => void {
  const qc = useQueryClient();
  return () => {
    invalidateSeen(qc, queryKeys.candidate(migrationId, candidateId));
    invalidateSeen(qc, queryKeys.fleet());
    invalidateSeen(qc, queryKeys.candidates(migrationId));
  };
}

// useCandidatesPage reads a page of a Migration's Candidates; params (the
// table's URL query) names the page, request asks for it. The last page
// stays shown while the next loads.
export function useCandidatesPage(
  migrationId: string,
  params: string,
  request: MessageInitShape<typeof ListCandidatesRequestSchema>,
) {
  const discovery = useDiscoveryClient();
  return useQuery({
    queryKey: queryKeys.candidatesPage(migrationId, params),
    queryFn: ({ signal }) => discovery.listCandidates(request, { signal }),
    placeholderData: keepPreviousData,
  });
}

// usePaletteCandidates reads the first Candidates whose id starts with
// prefix and whose metadata has every pair of metadata (ListCandidates'
// own filters), in each of the Migrations, in their order (one that cannot
// answer, or refuses the filter, gives none).
export function usePaletteCandidates(prefix: string, metadata: Record<string, string>, migrations: Migration[], enabled: boolean) {
  const discovery = useDiscoveryClient();
  return useQuery({
    queryKey: queryKeys.palette(prefix, metadata, migrations.map((m) => m.id)),
    enabled,
    queryFn: async ({ signal }) => {
      const pages = await Promise.all(
        migrations.map((m) =>
          discovery
            .listCandidates({ migrationId: m.id, idPrefix: prefix, metadata, pageSize: 8 }, { signal })
            .then((r) => r.candidates.map((c) => ({ migration: m, id: c.id, metadata: c.metadata })))
            .catch(() => []),
        ),
      );
      return pages.flat();
    },
    placeholderData: keepPreviousData,
  });
}

// useRefreshSelection returns what reads a Migration's Candidates again
// after a bulk action or a rollout changed many of them: the table, every
// Candidate page of the Migration, its counts and figures, the fleet's.
export function useRefreshSelection(migrationId: string): () => void {
  const qc = useQueryClient();
  return () => {
    qc.invalidateQueries({ queryKey: queryKeys.candidates(migrationId) });
    qc.invalidateQueries({ queryKey: queryKeys.migrationCandidates(migrationId) });
    qc.invalidateQueries({ queryKey: queryKeys.migration(migrationId) });
    qc.invalidateQueries({ queryKey: queryKeys.metrics(migrationId) });
    qc.invalidateQueries({ queryKey: queryKeys.fleet() });
    qc.invalidateQueries({ queryKey: queryKeys.running(migrationId) });
  };
}
