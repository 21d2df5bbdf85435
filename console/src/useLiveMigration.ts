import { useCallback, useEffect, useRef } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { useFleetEvents } from "./fleetFeed";

// useLiveMigration keeps a Migration's page current without polling: it
// listens to the fleet feed (one stream for the tab) for the Migration's
// events and refreshes the table, counts and metrics when something
// happened — at most twice a second, however busy the Migration.
export function useLiveMigration(migrationId: string) {
  const qc = useQueryClient();
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(timer.current), []);
  const listener = useCallback(
    (e: { migrationId: string } | null) => {
      if (e && e.migrationId !== migrationId) return;
      if (timer.current) return;
      timer.current = setTimeout(() => {
        timer.current = undefined;
        for (const key of [["candidates", migrationId], ["metrics", migrationId], ["migration", migrationId]]) {
          qc.invalidateQueries({ queryKey: key });
        }
      }, 500);
    },
    [migrationId, qc],
  );
  useFleetEvents(listener);
}
