import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { BrowserRouter } from "react-router";
import { App } from "./App";
import { completeSignIn, mustReload, oidcConfig, onAuthChange, takeTokenFromURL } from "./auth";
import { isUnauthenticated, transport } from "./api";
import { TransportProvider } from "./transport";
import "./styles.css";
import "diff2html/bundles/css/diff2html.min.css";
import "uplot/dist/uPlot.min.css";

// A sign-in or sign-out in another tab applies here at once, unless it
// changes nothing here (the same caller signed in again: see mustReload).
onAuthChange((change, who) => {
  if (mustReload(change, who)) window.location.reload();
});

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      // A refused token is not retried: the sign-in form shows instead.
      retry: (count, err) => !isUnauthenticated(err) && count < 2,
      staleTime: 5_000,
      refetchOnWindowFocus: true,
    },
  },
});

// A sign-in by `loom dev`'s URL, or coming back from the provider, is
// finished before the first render, so that no page asks the server
// anything signed out.
void takeTokenFromURL()
  .then(() => completeSignIn(oidcConfig()))
  .finally(() =>
    createRoot(document.getElementById("root")!).render(
      <StrictMode>
        <TransportProvider transport={transport}>
          <QueryClientProvider client={queryClient}>
            <BrowserRouter>
              <App />
            </BrowserRouter>
          </QueryClientProvider>
        </TransportProvider>
      </StrictMode>,
    ),
  );
