import { useEffect } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { history } from "./api";

// useLiveMigration keeps a Migration's page current without polling: it
// follows the Migration's history (WatchEvents, one stream) and refreshes
// the table, counts and metrics when something happened — at most twice a
// second, however busy the Migration.
export function useLiveMigration(migrationId: string) {
  const qc = useQueryClient();
  useEffect(() => {
    const ctl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const refresh = () => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = undefined;
        for (const key of [["candidates", migrationId], ["metrics", migrationId], ["migration", migrationId], ["fleet"], ["running", migrationId]]) {
          qc.invalidateQueries({ queryKey: key });
        }
      }, 500);
    };
    (async () => {
      let delay = 500;
      let after = "";
      while (!ctl.signal.aborted) {
        try {
          for await (const res of history.watchEvents({ migrationId, afterId: after }, { signal: ctl.signal })) {
            delay = 500;
            if (res.update.case === "event") {
              after = res.update.value.id;
              refresh();
            }
          }
        } catch {
          if (ctl.signal.aborted) return;
        }
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 10_000);
      }
    })();
    return () => {
      ctl.abort();
      clearTimeout(timer);
    };
  }, [migrationId, qc]);
}
