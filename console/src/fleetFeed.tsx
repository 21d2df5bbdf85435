import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useSyncExternalStore, type ReactNode } from "react";
import { useQueryClient, type QueryKey } from "@tanstack/react-query";
import { isUnauthenticated } from "./api";
import { getToken } from "./auth";
import { useHistoryClient } from "./transport";
import type { Event } from "./gen/loom/v1/history_service_pb";
import { queryKeys } from "./queryKeys";
import { browserEnv, channelName, followPageLifecycle, LiveHub, type HubEnv } from "./live/hub";
import { invalidateSeen } from "./live/visible";

// The fleet feed: the one WatchEvents stream without a Migration of the
// browser (live/hub.ts: one tab holds it for every tab), which keeps the
// fleet's figures and the running-now panel current, and from which every
// page derives its live view (its Run, its history, its rollout, its
// table). It cannot resume, so after a gap everything it keeps current is
// read again.
export type FleetListener = (e: Event | null) => void; // null: read everything again

export interface FleetFeed {
  subscribe(l: FleetListener): () => void;
  onStatus(l: (live: boolean) => void): () => void;
  isLive(): boolean;
}

export const FleetFeedContext = createContext<FleetFeed | null>(null);

// useFleetFeedSource joins the browser's feed for as long as the calling
// component (the layout) is mounted, and stays out of it while the page is
// in the back/forward cache or frozen.
export function useFleetFeedSource(env: HubEnv = browserEnv()): FleetFeed {
  const history = useHistoryClient();
  const qc = useQueryClient();
  const { locks, channel } = env;
  const hub = useMemo(
    () =>
      new LiveHub((signal) => history.watchEvents({}, { signal }), { locks, channel }, channelName(getToken()), (err) =>
        // Signed out: the sign-in form reloads the page when signed in.
        isUnauthenticated(err),
      ),
    [history, locks, channel],
  );
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    // At most twice a second, however busy the fleet.
    const refresh = () => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = undefined;
        invalidateSeen(qc, queryKeys.fleet());
        invalidateSeen(qc, queryKeys.allRunning());
      }, 500);
    };
    const unsubscribe = hub.subscribe(refresh);
    hub.start();
    const detach = followPageLifecycle(hub);
    return () => {
      detach();
      unsubscribe();
      hub.stop();
      clearTimeout(timer);
    };
  }, [hub, qc]);
  return hub;
}

// FleetFeedProvider gives its children a feed of their own (the component
// tests, which mount a page without the layout).
export function FleetFeedProvider({ children, env }: { children: ReactNode; env?: HubEnv }) {
  const feed = useFleetFeedSource(env ?? {});
  return <FleetFeedContext.Provider value={feed}>{children}</FleetFeedContext.Provider>;
}

// useFeedLive says whether the feed is up (false without one).
export function useFeedLive(): boolean {
  const feed = useContext(FleetFeedContext);
  const subscribe = useCallback((cb: () => void) => (feed ? feed.onStatus(cb) : () => {}), [feed]);
  return useSyncExternalStore(subscribe, () => feed?.isLive() ?? false);
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
        for (const queryKey of keys) invalidateSeen(qc, queryKey);
      }, ms);
    },
    [pick, ms, qc],
  );
  useFleetEvents(listener);
}
