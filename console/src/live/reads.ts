import { useContext, useEffect, useRef, type DependencyList } from "react";
import { FleetFeedContext } from "../fleetFeed";
import type { Event } from "../gen/loom/v1/history_service_pb";
import { tabHidden } from "./visible";

// useFeedReads keeps a view current from the browser's one feed instead of
// a stream of its own: read runs at once, again whenever the feed carries
// an event that concerns the view (matches), after a gap in the feed, and
// every pollMs while poll() says the view can change without an event (a
// Run's dispatch failures cleared, a rollout's counts). Reads never
// overlap: events heard during one make one more after it, so a burst of
// events costs two reads, not one each. A hidden tab reads neither on
// events nor on the timer: it reads once when shown again, if it heard of
// a change meanwhile or polls. deps restart it all.
export function useFeedReads(
  read: (signal: AbortSignal) => Promise<void>,
  matches: (e: Event) => boolean,
  deps: DependencyList,
  poll?: { ms: number; while: () => boolean },
) {
  const feed = useContext(FleetFeedContext);
  const latest = useRef({ read, matches, poll });
  latest.current = { read, matches, poll };
  const pollMs = poll?.ms;
  useEffect(() => {
    const ctl = new AbortController();
    let reading = false;
    let again = false;
    const go = async () => {
      if (reading) {
        again = true;
        return;
      }
      reading = true;
      do {
        again = false;
        try {
          await latest.current.read(ctl.signal);
        } catch {
          // read reports its own errors.
        }
      } while (again && !ctl.signal.aborted);
      reading = false;
    };
    void go();
    // Heard of a change while hidden: read when shown.
    let missed = false;
    const unsubscribe = feed?.subscribe((e) => {
      if (e !== null && !latest.current.matches(e)) return;
      if (tabHidden()) missed = true;
      else void go();
    });
    const due = () => !tabHidden() && latest.current.poll?.while() === true;
    const timer = pollMs === undefined ? undefined : setInterval(() => due() && void go(), pollMs);
    const shown = () => {
      if (tabHidden()) return;
      if (missed || (pollMs !== undefined && due())) void go();
      missed = false;
    };
    document.addEventListener("visibilitychange", shown);
    return () => {
      ctl.abort();
      unsubscribe?.();
      clearInterval(timer);
      document.removeEventListener("visibilitychange", shown);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [feed, pollMs, ...deps]);
}
