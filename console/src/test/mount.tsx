import { useEffect, type ReactNode } from "react";
import { render } from "@testing-library/react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { MemoryRouter, Route, Routes, useLocation } from "react-router";
import { createRouterTransport, type ConnectRouter } from "@connectrpc/connect";
import { TransportProvider } from "../transport";
import { FleetFeedProvider } from "../fleetFeed";

// mount renders a page at a path, as the console's router would, with the
// fleet feed (HistoryService.WatchEvents without a Migration) the layout
// gives every page, talking to an in-memory server: routes implements the services the page calls
// (any other method answers Unimplemented). also adds routes the page may
// navigate to. It returns what render does, and location(): the path and
// query the page is at now (a page that keeps its filters in the URL
// changes it).
export function mount(opts: {
  path: string;
  route: string;
  element: ReactNode;
  routes: (r: ConnectRouter) => void;
  also?: { route: string; element: ReactNode }[];
}) {
  const transport = createRouterTransport(opts.routes);
  const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  const at = { current: opts.path };
  const rendered = render(
    <TransportProvider transport={transport}>
      <QueryClientProvider client={queryClient}>
        {/* The browser's feed, as the layout provides it: this tab's own (no Web Locks in jsdom). */}
        <FleetFeedProvider>
          <MemoryRouter initialEntries={[opts.path]}>
            <Routes>
              <Route path={opts.route} element={opts.element} />
              {opts.also?.map((a) => <Route key={a.route} path={a.route} element={a.element} />)}
            </Routes>
            <LocationProbe at={at} />
          </MemoryRouter>
        </FleetFeedProvider>
      </QueryClientProvider>
    </TransportProvider>,
  );
  return { ...rendered, location: () => at.current };
}

// LocationProbe keeps the router's current location where mount reads it.
function LocationProbe({ at }: { at: { current: string } }) {
  const { pathname, search } = useLocation();
  useEffect(() => {
    at.current = pathname + search;
  }, [at, pathname, search]);
  return null;
}

// untilAborted keeps a server stream open until the client goes away, as
// the server's watches do.
export function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve());
  });
}
