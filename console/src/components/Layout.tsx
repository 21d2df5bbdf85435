import { Suspense, useEffect, useState } from "react";
import { Link, NavLink, Outlet } from "react-router";
import { Toaster } from "sonner";
import { toast } from "sonner";
import { signedIn as isSignedIn, signOut } from "../auth";
import { errorText } from "../api";
import { CommandPalette } from "./CommandPalette";
import { RunningPanel } from "./RunningPanel";
import { FleetFeedContext, useFleetFeedSource } from "../fleetFeed";
import { Loading } from "./Common";
import { useCaller } from "../data/registry";

type Theme = "light" | "dark";

function initialTheme(): Theme {
  const saved = localStorage.getItem("loom.theme");
  if (saved === "light" || saved === "dark") return saved;
  return window.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function Layout() {
  const [theme, setTheme] = useState<Theme>(initialTheme);
  const [palette, setPalette] = useState(false);
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("loom.theme", theme);
  }, [theme]);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "k") {
        e.preventDefault();
        setPalette((p) => !p);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
  const signedIn = isSignedIn();
  const caller = useCaller();
  const feed = useFleetFeedSource();
  return (
    <FleetFeedContext.Provider value={feed}>
      <div className="app">
        <a className="skip" href="#main">
          Skip to content
        </a>
        <header className="top">
          <Link to="/" className="brand">
            Loom
          </Link>
          <nav aria-label="Main">
            <NavLink to="/" end>
              Fleet
            </NavLink>
            <NavLink to="/metrics">Metrics</NavLink>
            <NavLink to="/history">History</NavLink>
          </nav>
          <div className="spacer" />
          <button type="button" className="ghost" onClick={() => setPalette(true)} aria-keyshortcuts="Control+K Meta+K">
            Jump to… <kbd>Ctrl K</kbd>
          </button>
          <button
            type="button"
            className="ghost"
            aria-label={`Switch to ${theme === "dark" ? "light" : "dark"} theme`}
            onClick={() => setTheme(theme === "dark" ? "light" : "dark")}
          >
            {theme === "dark" ? "☀" : "☾"}
          </button>
          {caller.data?.authenticated && (
            <span className="muted small" title="who this console acts as">
              {caller.data.subject} ({caller.data.role})
            </span>
          )}
          {signedIn && (
            <button
              type="button"
              className="ghost"
              onClick={() => {
                // Ended on the server: every tab of this browser is signed
                // out. Should Loom not answer, the session stays, and so
                // does this page.
                signOut().then(
                  () => window.location.reload(),
                  (e: unknown) => toast.error(`Sign-out failed: ${errorText(e)}`),
                );
              }}
            >
              Sign out
            </button>
          )}
        </header>
        <div className="body">
          <main id="main" tabIndex={-1}>
            <Suspense fallback={<Loading what="the page" />}>
              <Outlet />
            </Suspense>
          </main>
          <RunningPanel />
        </div>
        <CommandPalette open={palette} onClose={() => setPalette(false)} />
        <Toaster theme={theme} position="bottom-right" richColors closeButton />
      </div>
    </FleetFeedContext.Provider>
  );
}
