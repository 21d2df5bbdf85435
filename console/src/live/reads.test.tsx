import { afterEach, describe, expect, it, vi } from "vitest";
import { act, renderHook, waitFor } from "@testing-library/react";
import type { ReactNode } from "react";
import { QueryClient, QueryClientProvider, useQuery } from "@tanstack/react-query";
import { create } from "@bufbuild/protobuf";
import { FleetFeedContext, type FleetFeed, type FleetListener } from "../fleetFeed";
import { EventSchema } from "../gen/loom/v1/history_service_pb";
import { useFeedReads } from "./reads";
import { invalidateSeen } from "./visible";
import { createRouterTransport } from "@connectrpc/connect";
import { render } from "@testing-library/react";
import { MemoryRouter } from "react-router";
import { TransportProvider } from "../transport";
import { HistoryService } from "../gen/loom/v1/history_service_pb";
import { EventLog } from "../components/EventLog";

// A feed the test speaks for, and a tab the test shows and hides (Playwright
// keeps every tab visible: the browser tests cannot tell this).
function fakeFeed() {
  const listeners = new Set<FleetListener>();
  const feed: FleetFeed = {
    subscribe: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    onStatus: () => () => {},
    isLive: () => true,
  };
  return {
    feed,
    emit: (candidateId: string) => act(() => listeners.forEach((l) => l(create(EventSchema, { migrationId: "m", candidateId })))),
    // A gap in the feed (another tab took it over): read everything again.
    gap: () => act(() => listeners.forEach((l) => l(null))),
  };
}

let visibility: DocumentVisibilityState = "visible";
Object.defineProperty(document, "visibilityState", { configurable: true, get: () => visibility });
function show(v: DocumentVisibilityState) {
  visibility = v;
  act(() => {
    // It bubbles to the window in browsers (where TanStack Query hears it).
    document.dispatchEvent(new Event("visibilitychange", { bubbles: true }));
  });
}
afterEach(() => {
  visibility = "visible";
  vi.useRealTimers();
});

describe("a view kept current by the feed", () => {
  it("reads on its events while seen; hidden, reads nothing until shown, then once", async () => {
    const { feed, emit } = fakeFeed();
    const read = vi.fn(async () => {});
    const wrapper = ({ children }: { children: ReactNode }) => <FleetFeedContext.Provider value={feed}>{children}</FleetFeedContext.Provider>;
    renderHook(() => useFeedReads(read, (e) => e.candidateId === "a", []), { wrapper });
    await waitFor(() => expect(read).toHaveBeenCalledTimes(1));
    emit("a");
    await waitFor(() => expect(read).toHaveBeenCalledTimes(2));
    emit("b"); // not the view's
    show("hidden");
    emit("a");
    emit("a");
    await new Promise((r) => setTimeout(r, 20));
    expect(read).toHaveBeenCalledTimes(2);
    show("visible");
    await waitFor(() => expect(read).toHaveBeenCalledTimes(3));
    // Shown again with nothing heard meanwhile: nothing to read.
    show("hidden");
    show("visible");
    await new Promise((r) => setTimeout(r, 20));
    expect(read).toHaveBeenCalledTimes(3);
  });

  it("polls while seen, not while hidden", async () => {
    vi.useFakeTimers();
    const { feed } = fakeFeed();
    const read = vi.fn(async () => {});
    const wrapper = ({ children }: { children: ReactNode }) => <FleetFeedContext.Provider value={feed}>{children}</FleetFeedContext.Provider>;
    renderHook(() => useFeedReads(read, () => false, [], { ms: 1_000, while: () => true }), { wrapper });
    await act(() => vi.advanceTimersByTimeAsync(10));
    expect(read).toHaveBeenCalledTimes(1);
    await act(() => vi.advanceTimersByTimeAsync(1_000));
    expect(read).toHaveBeenCalledTimes(2);
    show("hidden");
    await act(() => vi.advanceTimersByTimeAsync(5_000));
    expect(read).toHaveBeenCalledTimes(2);
    show("visible");
    await act(() => vi.advanceTimersByTimeAsync(10));
    expect(read).toHaveBeenCalledTimes(3);
  });

  it("a query invalidated in a hidden tab is read when the tab is shown, not before", async () => {
    const qc = new QueryClient({ defaultOptions: { queries: { retry: false, refetchOnWindowFocus: true } } });
    const read = vi.fn(async () => "x");
    const wrapper = ({ children }: { children: ReactNode }) => <QueryClientProvider client={qc}>{children}</QueryClientProvider>;
    renderHook(() => useQuery({ queryKey: ["q"], queryFn: read, staleTime: 60_000 }), { wrapper });
    await waitFor(() => expect(read).toHaveBeenCalledTimes(1));
    invalidateSeen(qc, ["q"]);
    await waitFor(() => expect(read).toHaveBeenCalledTimes(2));
    show("hidden");
    invalidateSeen(qc, ["q"]);
    await new Promise((r) => setTimeout(r, 20));
    expect(read).toHaveBeenCalledTimes(2);
    expect(qc.getQueryState(["q"])?.isInvalidated).toBe(true);
    show("visible");
    await waitFor(() => expect(read).toHaveBeenCalledTimes(3));
  });

  it("a history reads its pages again after a gap in the feed: at once while seen, when shown if hidden", async () => {
    const { feed, gap } = fakeFeed();
    let lists = 0;
    const transport = createRouterTransport((r) => {
      r.service(HistoryService, {
        listEvents: () => {
          lists++;
          return { events: [] };
        },
      });
    });
    const qc = new QueryClient({ defaultOptions: { queries: { retry: false } } });
    render(
      <TransportProvider transport={transport}>
        <QueryClientProvider client={qc}>
          <FleetFeedContext.Provider value={feed}>
            <MemoryRouter>
              <EventLog migrationId="m" candidateId="a" />
            </MemoryRouter>
          </FleetFeedContext.Provider>
        </QueryClientProvider>
      </TransportProvider>,
    );
    await waitFor(() => expect(lists).toBe(1));
    gap();
    await waitFor(() => expect(lists).toBe(2));
    show("hidden");
    gap();
    gap();
    await new Promise((r) => setTimeout(r, 20));
    expect(lists).toBe(2);
    show("visible");
    await waitFor(() => expect(lists).toBe(3));
    await new Promise((r) => setTimeout(r, 20));
    expect(lists).toBe(3);
  });
});
