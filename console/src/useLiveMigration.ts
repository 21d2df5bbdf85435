import { useCallback } from "react";
import { useFleetRefresh } from "./fleetFeed";
import { queryKeys } from "./queryKeys";

// useLiveMigration keeps a Migration's page current without polling: it
// listens to the fleet feed (one stream for the tab) for the Migration's
// events and refreshes the table, counts and metrics when something
// happened — at most twice a second, however busy the Migration. Its
// rollouts list is refreshed too (a rollout's Runs are the Migration's).
export function useLiveMigration(migrationId: string) {
  const pick = useCallback(
    (e: { migrationId: string } | null) =>
      e && e.migrationId !== migrationId
        ? []
        : [queryKeys.candidates(migrationId), queryKeys.metrics(migrationId), queryKeys.migration(migrationId), queryKeys.rollouts(migrationId)],
    [migrationId],
  );
  useFleetRefresh(pick, 500);
}
