import { useCallback, useEffect, useRef, useState } from "react";
import { Link } from "react-router";
import type { Event, EventKind } from "../gen/loom/v1/history_service_pb";
import { eventKindLabel, time } from "../format";
import { candidatePath, Empty, ErrorBox, Loading } from "./Common";
import { useFeedLive, useFleetEvents } from "../fleetFeed";
import { useEventPages, type EventRange } from "../data/history";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { tabHidden } from "../live/visible";

// EventLog is the lifecycle history of a Migration or of one Candidate:
// pages of ListEvents, newest first, and new events as the browser's feed
// (fleetFeed) delivers them, prepended live, no reload. No stream of its
// own: the feed carries every event of the fleet, kept here when they
// match the log's Migration, Candidate, kinds and range. Events are heard
// from the moment the log mounts, before the first page is read, so none
// written in between is missed; those the page has already are not shown
// twice (ids are time-ordered: only ids after the page's newest are kept).
// After a gap in the feed the pages are read again. onEvent hears every
// live event kept.
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
  const q = useEventPages(migrationId, candidateId, kinds, range);
  const { candidatePrefix = "", startMs, endMs } = range;
  const [heard, setHeard] = useState<Event[]>([]);
  const live = useFeedLive();
  // Connecting until the feed first is up, reconnecting after.
  const [wasLive, setWasLive] = useState(false);
  if (live && !wasLive) setWasLive(true);
  const onEventRef = useRef(onEvent);
  onEventRef.current = onEvent;
  const refetch = q.refetch;
  const kindsKey = kinds.join(",");
  // After a gap in the feed a hidden tab reads its pages again only when
  // shown (a handover of the feed, a tab closed or reloaded, made every
  // open tab read its history again at once).
  const missedGap = useRef(false);
  const listener = useCallback(
    (e: Event | null) => {
      if (e === null) {
        if (tabHidden()) {
          missedGap.current = true;
          return;
        }
        setHeard([]);
        void refetch();
        return;
      }
      if (e.migrationId !== migrationId) return;
      if (candidateId && e.candidateId !== candidateId) return;
      if (kindsKey && !kindsKey.split(",").includes(String(e.kind))) return;
      if (candidatePrefix && !e.candidateId.startsWith(candidatePrefix)) return;
      if (startMs !== undefined && e.time && timestampMs(e.time) < startMs) return;
      if (endMs !== undefined && e.time && timestampMs(e.time) >= endMs) return;
      setHeard((l) => (l.some((x) => x.id === e.id) ? l : [e, ...l]));
      onEventRef.current?.(e);
    },
    [migrationId, candidateId, kindsKey, candidatePrefix, startMs, endMs, refetch],
  );
  useEffect(() => setHeard([]), [migrationId, candidateId, kindsKey, candidatePrefix, startMs, endMs]);
  useFleetEvents(listener);
  useEffect(() => {
    const shown = () => {
      if (tabHidden() || !missedGap.current) return;
      missedGap.current = false;
      setHeard([]);
      void refetch();
    };
    document.addEventListener("visibilitychange", shown);
    return () => document.removeEventListener("visibilitychange", shown);
  }, [refetch]);
  const newest = q.data?.pages[0]?.events[0]?.id ?? "";
  const link = live ? "live" : wasLive ? "reconnecting" : "connecting";
  if (q.isPending) return <Loading what="history" />;
  if (q.isError) return <ErrorBox error={q.error} />;
  const events = [...heard.filter((e) => eventIdAfter(e.id, newest)), ...q.data.pages.flatMap((p) => p.events)];
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

// eventIdAfter says whether event id a ("<unix ms>-<sequence>") comes after
// b; any id comes after "".
export function eventIdAfter(a: string, b: string): boolean {
  if (!b) return true;
  if (!/^\d+(-\d+)?$/.test(a) || !/^\d+(-\d+)?$/.test(b)) return a > b;
  const [am, as = "0"] = a.split("-");
  const [bm, bs = "0"] = b.split("-");
  const d = BigInt(am) - BigInt(bm);
  return d !== 0n ? d > 0n : BigInt(as) > BigInt(bs);
}
