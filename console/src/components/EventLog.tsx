import { useEffect, useState } from "react";
import { Link } from "react-router";
import { useHistoryClient } from "../transport";
import type { Event, EventKind } from "../gen/loom/v1/history_service_pb";
import { eventKindLabel, time } from "../format";
import { candidatePath, Empty, ErrorBox, Loading } from "./Common";
import { follow } from "../stream";
import { useEventPages, type EventRange } from "../data/history";
import { timestampMs } from "@bufbuild/protobuf/wkt";

// EventLog is the lifecycle history of a Migration or of one Candidate:
// pages of ListEvents, newest first, and new events as WatchEvents delivers
// them (prepended live, no reload). range narrows both (the watch knows no
// prefix or end: its events are kept here when they match). onEvent hears
// every live event kept.
export function EventLog({
  migrationId,
  candidateId = "",
  kinds = [],
  range = {},
  onEvent,
}: {
  migrationId: string;
  candidateId?: string;
  kinds?: EventKind[];
  range?: EventRange;
  onEvent?: (e: Event) => void;
}) {
  const history = useHistoryClient();
  const q = useEventPages(migrationId, candidateId, kinds, range);
  const { candidatePrefix = "", startMs, endMs } = range;
  const [live, setLive] = useState<Event[]>([]);
  // The stream's first message (an event or a heartbeat) says it is up.
  const [link, setLink] = useState<"connecting" | "live" | "reconnecting">("connecting");
  const newest = q.data?.pages[0]?.events[0]?.id ?? "";
  const loaded = q.isSuccess;
  useEffect(() => {
    setLive([]);
    if (!loaded) return;
    const ctl = new AbortController();
    let after = newest;
    follow(
      (signal) => history.watchEvents({ migrationId, candidateId, kinds, afterId: after }, { signal }),
      (res) => {
        setLink("live");
        if (res.update.case === "event") {
          const e = res.update.value;
          after = e.id;
          if (candidatePrefix && !e.candidateId.startsWith(candidatePrefix)) return;
          if (endMs !== undefined && e.time && timestampMs(e.time) >= endMs) return;
          setLive((l) => (l.some((x) => x.id === e.id) ? l : [e, ...l]));
          onEvent?.(e);
        }
      },
      ctl.signal,
      () => {
        setLink("reconnecting");
        return false;
      },
    );
    return () => ctl.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [history, migrationId, candidateId, kinds.join(","), candidatePrefix, startMs, endMs, loaded]);
  if (q.isPending) return <Loading what="history" />;
  if (q.isError) return <ErrorBox error={q.error} />;
  const events = [...live, ...q.data.pages.flatMap((p) => p.events)];
  return (
    <div className="eventlog">
      <div className="muted small" aria-live="polite">
        {link === "live" ? "● live" : `○ ${link}…`}
      </div>
      {events.length === 0 ? (
        <Empty>No event yet.</Empty>
      ) : (
        <table className="grid compact">
          <thead>
            <tr>
              <th>Time</th>
              <th>Event</th>
              {!candidateId && <th>Candidate</th>}
              <th>Step</th>
              <th>Who</th>
              <th>Details</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e) => (
              <tr key={e.id}>
                <td className="nowrap">{time(e.time)}</td>
                <td>{eventKindLabel(e.kind)}</td>
                {!candidateId && (
                  <td>{e.candidateId && <Link to={candidatePath(e.migrationId, e.candidateId)}>{e.candidateId}</Link>}</td>
                )}
                <td>
                  {e.step}
                  {e.attempt > 0 && <span className="muted"> #{e.attempt}</span>}
                  {e.execution > 0n && <span className="muted small"> (execution {String(e.execution)})</span>}
                </td>
                <td>{e.actor}</td>
                <td className="details">
                  {Object.entries(e.details)
                    .sort(([a], [b]) => a.localeCompare(b))
                    .map(([k, v]) => (
                      <div key={k}>
                        <span className="muted">{k}</span> {k.endsWith("url") ? <a href={v}>{v}</a> : v}
                      </div>
                    ))}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {q.hasNextPage && (
        <button type="button" onClick={() => q.fetchNextPage()} disabled={q.isFetchingNextPage}>
          Older events
        </button>
      )}
    </div>
  );
}
