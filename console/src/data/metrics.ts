import { useQueries, useQuery } from "@tanstack/react-query";
import { useMetricsClient } from "../transport";
import { queryKeys } from "../queryKeys";
import { BurndownUnit } from "../gen/loom/v1/metrics_service_pb";

// useFleet reads every Migration's summary (all pages of
// GetFleetOverview: a fleet has tens or hundreds of Migrations, not
// thousands), shared by the home page, the palette and the panels.
export function useFleet() {
  const metrics = useMetricsClient();
  return useQuery({
    queryKey: queryKeys.fleet(),
    queryFn: async ({ signal }) => {
      const first = await metrics.getFleetOverview({ pageSize: 500 }, { signal });
      for (let token = first.nextPageToken; token; ) {
        const next = await metrics.getFleetOverview({ pageSize: 500, pageToken: token }, { signal });
        first.migrations.push(...next.migrations);
        token = next.nextPageToken;
      }
      first.nextPageToken = "";
      return first;
    },
  });
}

// useMigrationMetrics reads a Migration's figures, its burndown by the hour.
export function useMigrationMetrics(migrationId: string) {
  const metrics = useMetricsClient();
  return useQuery({
    queryKey: queryKeys.metrics(migrationId),
    queryFn: ({ signal }) => metrics.getMigrationMetrics({ migrationId, burndownUnit: BurndownUnit.HOUR }, { signal }),
  });
}

// useDailyMetrics reads the figures of each of the Migrations, by the day.
export function useDailyMetrics(migrationIds: string[]) {
  const metrics = useMetricsClient();
  return useQueries({
    queries: migrationIds.map((migrationId) => ({
      queryKey: queryKeys.metricsDaily(migrationId),
      queryFn: ({ signal }: { signal: AbortSignal }) =>
        metrics.getMigrationMetrics({ migrationId, burndownUnit: BurndownUnit.DAY }, { signal }),
    })),
  });
}
