import { useQuery } from "@tanstack/react-query";
import { useMetricsClient } from "./transport";
import { queryKeys } from "./queryKeys";

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
