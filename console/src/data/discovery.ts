import { useQuery, useQueryClient } from "@tanstack/react-query";
import { queryKeys } from "../queryKeys";
import { useDiscoveryClient } from "../transport";

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
// the Candidate, the fleet's figures and its Migration's table.
export function useRefreshCandidate(migrationId: string, candidateId: string): () => void {
  const qc = useQueryClient();
  return () => {
    qc.invalidateQueries({ queryKey: queryKeys.candidate(migrationId, candidateId) });
    qc.invalidateQueries({ queryKey: queryKeys.fleet() });
    qc.invalidateQueries({ queryKey: queryKeys.candidates(migrationId) });
  };
}
