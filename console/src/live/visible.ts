import type { QueryClient, QueryKey } from "@tanstack/react-query";

// A tab nobody sees (another tab in front, the window minimised) reads
// nothing on the feed's events: with a dozen tabs open all day every event
// would otherwise be read again a dozen times, by tabs that show it to no
// one. What it shows is marked stale instead and read when the tab is seen
// again.

export function tabHidden(doc: Document = document): boolean {
  return doc.visibilityState === "hidden";
}

// invalidateSeen invalidates a query and reads it again at once if the tab
// is seen; if hidden, it is only marked stale, and TanStack Query reads it
// when the tab is shown (refetchOnWindowFocus hears visibilitychange).
export function invalidateSeen(qc: QueryClient, queryKey: QueryKey, doc: Document = document): void {
  void qc.invalidateQueries({ queryKey, refetchType: tabHidden(doc) ? "none" : "active" });
}
