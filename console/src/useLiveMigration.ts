import { useEffect } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { history } from "./api";
import { follow } from "./stream";

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
    let after = "";
    follow(
      (signal) => history.watchEvents({ migrationId, afterId: after }, { signal }),
      (res) => {
        if (res.update.case === "event") {
          after = res.update.value.id;
          refresh();
        }
      },
      ctl.signal,
    );
    return () => {
      ctl.abort();
      clearTimeout(timer);
    };
  }, [migrationId, qc]);
}
