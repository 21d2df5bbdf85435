import { createContext, useCallback, useContext, useEffect, useRef, useState } from "react";
import { useQueryClient, type QueryKey } from "@tanstack/react-query";
import { isUnauthenticated } from "./api";
import { useHistoryClient } from "./transport";
import { follow } from "./stream";
import type { Event } from "./gen/loom/v1/history_service_pb";
import { queryKeys } from "./queryKeys";

// The fleet feed: one WatchEvents stream without a Migration per tab, which
// keeps the fleet's figures and the running-now panel current, and which
// pages listen to for their own Migration (browsers allow six HTTP/1.1
// connections per server: one stream per Migration on view would not do).
// It cannot resume, so after a break everything it keeps current is read
// again.
export type FleetListener = (e: Event | null) => void; // null: read everything again

export interface FleetFeed {
  subscribe(l: FleetListener): () => void;
}

export const FleetFeedContext = createContext<FleetFeed | null>(null);

export function useFleetFeedSource(): FleetFeed {
  const history = useHistoryClient();
  const qc = useQueryClient();
  const [feed] = useState(() => {
    const listeners = new Set<FleetListener>();
    return {
      listeners,
      subscribe(l: FleetListener) {
        listeners.add(l);
        return () => listeners.delete(l);
      },
    };
  });
  useEffect(() => {
    const ctl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    // At most twice a second, however busy the fleet.
    const refresh = () => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = undefined;
        qc.invalidateQueries({ queryKey: queryKeys.fleet() });
        qc.invalidateQueries({ queryKey: queryKeys.allRunning() });
      }, 500);
    };
    follow(
      (signal) => history.watchEvents({}, { signal }),
      (res) => {
        if (res.update.case === "event") {
          refresh();
          for (const l of feed.listeners) l(res.update.value);
        }
      },
      ctl.signal,
      (err) => {
        // Signed out: the sign-in form reloads the page when signed in.
        if (isUnauthenticated(err)) return true;
        // Whatever happened while the stream was down is read again.
        refresh();
        for (const l of feed.listeners) l(null);
        return false;
      },
    );
    return () => {
      ctl.abort();
      clearTimeout(timer);
    };
  }, [feed, qc, history]);
  return feed;
}

// useFleetEvents calls l for every new event of the fleet (and with null
// when it should read everything again).
export function useFleetEvents(l: FleetListener) {
  const feed = useContext(FleetFeedContext);
  useEffect(() => feed?.subscribe(l), [feed, l]);
}

// useFleetRefresh invalidates, at most once every ms, the queries that pick
// names for the fleet's events (pick(null): after a break in the feed).
export function useFleetRefresh(pick: (e: Event | null) => QueryKey[], ms: number) {
  const qc = useQueryClient();
  const pending = useRef(new Map<string, QueryKey>());
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(timer.current), []);
  const listener = useCallback(
    (e: Event | null) => {
      for (const key of pick(e)) pending.current.set(JSON.stringify(key), key);
      if (timer.current || pending.current.size === 0) return;
      timer.current = setTimeout(() => {
        timer.current = undefined;
        const keys = [...pending.current.values()];
        pending.current.clear();
        for (const queryKey of keys) qc.invalidateQueries({ queryKey });
      }, ms);
    },
    [pick, ms, qc],
  );
  useFleetEvents(listener);
}
