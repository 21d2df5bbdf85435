// The caller's bearer token, kept for this browser session only
// (sessionStorage: gone when the tab closes, never sent to another origin).
// `loom dev` prints a console URL carrying the operator's token in the
// fragment, which browsers never send to a server; it is taken from there
// once and removed from the address bar.
const key = "loom.token";

export function takeTokenFromURL(loc: Location = window.location, hist: History = window.history): void {
  const params = new URLSearchParams(loc.hash.replace(/^#/, ""));
  const token = params.get("token");
  if (!token) return;
  setToken(token);
  params.delete("token");
  const rest = params.toString();
  hist.replaceState(hist.state, "", loc.pathname + loc.search + (rest ? "#" + rest : ""));
}

export function getToken(): string {
  return sessionStorage.getItem(key) ?? "";
}

export function setToken(token: string): void {
  if (token) sessionStorage.setItem(key, token.trim());
  else sessionStorage.removeItem(key);
  for (const l of listeners) l();
}

const listeners = new Set<() => void>();

export function onTokenChange(l: () => void): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}
