import { Code, ConnectError } from "@connectrpc/connect";

// Signing in. The console is normally served by the Loom it talks to: it
// then signs the browser in once, with a session kept by the server and
// named by an HttpOnly cookie (SessionService), valid in every tab and
// across reloads, and no script of the page ever holds a token after
// sign-in. The token it signs in with (pasted, from `loom dev`'s printed
// URL, or from single sign-on) is sent to CreateSession once and dropped.
// Calls made with the cookie carry the session's CSRF token, read from the
// readable `loom_csrf` cookie, in the Loom-CSRF header.
//
// A console served elsewhere (VITE_LOOM_API names another origin) cannot
// use the cookie, which Loom accepts from its own pages only: it keeps the
// bearer token in the tab's sessionStorage, as before sessions existed.

// apiBase is the Loom the console talks to.
export const apiBase: string = import.meta.env.VITE_LOOM_API ?? window.location.origin;

// usesSession says whether the console signs in with a session cookie
// (served by its Loom) or keeps a bearer token (served elsewhere).
export function usesSession(base: string = apiBase, loc: Location = window.location): boolean {
  try {
    return new URL(base, loc.href).origin === loc.origin;
  } catch {
    return false;
  }
}

const key = "loom.token";
const errorKey = "loom.signin.error";

// The bearer token of a console served elsewhere; "" in session mode.
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

// The CSRF token of this browser's session (the __Host- cookie over https),
// "" when signed out.
export function csrfToken(doc: Document = document): string {
  for (const part of doc.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "__Host-loom_csrf" || name === "loom_csrf") return decodeURIComponent(rest.join("="));
  }
  return "";
}

// signedIn says whether this browser seems signed in: a session's CSRF
// cookie, or a bearer token. The server decides at every call.
export function signedIn(): boolean {
  return getToken() !== "" || csrfToken() !== "";
}

// Every tab learns of a sign-in or sign-out made in another at once (a tab
// left alone would only notice at its next call). A sign-in says who signed
// in, so that a tab already signed in as the same subject with the same
// role carries on as it is: its next calls send the new session's cookie
// and CSRF token by themselves. Reloading it instead cost a dozen open tabs
// a dozen page loads at each tab opened from `loom dev`'s URL (each signs
// in), and so each new tab's first render was slower than the last (see
// docs/console.md, "Live views").
export type AuthChange = "signed-in" | "signed-out";
export interface Caller {
  subject: string;
  role: string;
}
type AuthMessage = { change: AuthChange; who?: Caller; from: string };
const channelName = "loom.auth";

// This tab, to tell its own announcements (which a BroadcastChannel of the
// same page hears too) from the others'.
const tabId = `${Date.now().toString(36)}.${Math.random().toString(36).slice(2)}`;

// Who this tab shows as signed in (GetCaller's answer, or its own
// sign-in's), undefined while unknown or signed out.
let current: Caller | undefined;

// noteCaller records who the server says this tab acts as (null: nobody).
export function noteCaller(who: Caller | null): void {
  current = who ? { subject: who.subject, role: who.role } : undefined;
}

function announce(change: AuthChange, who?: Caller): void {
  if (typeof BroadcastChannel === "undefined") return;
  const c = new BroadcastChannel(channelName);
  c.postMessage({ change, who, from: tabId } satisfies AuthMessage);
  c.close();
}

// onAuthChange calls l when another tab signed in or out (who: whom a
// sign-in was for, when it says).
export function onAuthChange(l: (change: AuthChange, who?: Caller) => void): () => void {
  if (typeof BroadcastChannel === "undefined") return () => {};
  const c = new BroadcastChannel(channelName);
  c.onmessage = (e: MessageEvent) => {
    const m = e.data as Partial<AuthMessage> | AuthChange | null;
    // A bare string: a console of before this message had a sender.
    if (m === "signed-in" || m === "signed-out") return l(m);
    if (!m || typeof m !== "object" || m.from === tabId) return;
    if (m.change === "signed-in" || m.change === "signed-out") l(m.change, m.who);
  };
  return () => c.close();
}

// mustReload says whether another tab's sign-in or sign-out changes what
// this tab may show: any sign-out, and a sign-in unless this tab is signed
// in already as the same subject with the same role.
export function mustReload(change: AuthChange, who?: Caller): boolean {
  if (change === "signed-out" || !who || !current) return true;
  return who.subject !== current.subject || who.role !== current.role;
}

// callSession calls a SessionService procedure with Connect's JSON
// protocol (the cookies ride along: same origin).
async function callSession(procedure: string, body: object, fetchFn: typeof fetch): Promise<Record<string, unknown>> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  const csrf = csrfToken();
  if (csrf) headers["Loom-CSRF"] = csrf;
  let res: Response;
  try {
    res = await fetchFn(`${apiBase}/loom.v1.SessionService/${procedure}`, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (e) {
    throw new ConnectError(`Loom cannot be reached: ${e instanceof Error ? e.message : String(e)}`, Code.Unavailable);
  }
  const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok) {
    const name = String(json.code ?? "unknown").replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    const code = (Code as unknown as Record<string, Code>)[name.charAt(0).toUpperCase() + name.slice(1)] ?? Code.Unknown;
    throw new ConnectError(String(json.message ?? res.statusText), code);
  }
  return json;
}

export interface SignedIn {
  subject: string;
  role: string;
}

// signIn signs this browser in with token: a session for every tab, or, for
// a console served elsewhere, the token kept in this tab. A refused token
// throws the server's error (unauthenticated; unavailable when Loom cannot
// reach Redis: nothing changed, try again).
export async function signIn(token: string, fetchFn: typeof fetch = fetch): Promise<SignedIn | null> {
  token = token.trim();
  if (!usesSession()) {
    setToken(token);
    return null;
  }
  const res = await callSession("CreateSession", { token }, fetchFn);
  // A token kept by an older console in this tab would take precedence.
  sessionStorage.removeItem(key);
  const who = { subject: String(res.subject ?? ""), role: String(res.role ?? "") };
  noteCaller(who);
  announce("signed-in", who);
  return who;
}

// signOut ends the session on the server, so every tab of this browser is
// signed out (the others are told at once), and forgets any bearer token.
export async function signOut(fetchFn: typeof fetch = fetch): Promise<void> {
  setToken("");
  if (!usesSession()) return;
  await callSession("DeleteSession", {}, fetchFn);
  noteCaller(null);
  announce("signed-out");
}

// takeTokenFromURL signs in with the token `loom dev`'s printed URL carries
// in its fragment (which browsers never send to a server), and removes it
// from the address bar first, whatever happens. A failure is kept for the
// sign-in form (takeSignInError).
export async function takeTokenFromURL(loc: Location = window.location, hist: History = window.history, fetchFn: typeof fetch = fetch): Promise<void> {
  const params = new URLSearchParams(loc.hash.replace(/^#/, ""));
  const token = params.get("token");
  if (!token) return;
  params.delete("token");
  const rest = params.toString();
  hist.replaceState(hist.state, "", loc.pathname + loc.search + (rest ? "#" + rest : ""));
  try {
    await signIn(token, fetchFn);
  } catch (e) {
    sessionStorage.setItem(errorKey, e instanceof Error ? e.message : String(e));
  }
}

// Single sign-on at an OpenID Provider: the authorization-code flow with
// PKCE (S256) of a public client, the browser exchanging the code at the
// provider's token endpoint itself. The server publishes the provider's
// endpoints in a meta tag of index.html (it has read them from the
// provider's discovery document) and lets the page reach the token endpoint
// in its Content-Security-Policy.
export interface OIDCConfig {
  issuer: string;
  clientId: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  endSessionEndpoint?: string;
  scopes: string[];
  useIdToken?: boolean;
}

export const callbackPath = "/signin/callback";
const pendingKey = "loom.oidc.pending";

interface Pending {
  state: string;
  nonce: string;
  verifier: string;
  returnTo: string;
}

export function oidcConfig(doc: Document = document): OIDCConfig | null {
  const content = doc.querySelector('meta[name="loom-oidc"]')?.getAttribute("content");
  if (!content) return null;
  try {
    return JSON.parse(content) as OIDCConfig;
  } catch {
    return null;
  }
}

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function random(): string {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

// The S256 code challenge of a verifier (RFC 7636, section 4.2).
export async function codeChallenge(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

// beginSignIn sends the browser to the provider; it comes back to
// callbackPath, where completeSignIn takes over.
export async function beginSignIn(cfg: OIDCConfig, loc: Location = window.location): Promise<void> {
  if (!crypto.subtle) {
    throw new Error("single sign-on needs a secure context: open the console over https (or on localhost)");
  }
  const pending: Pending = { state: random(), nonce: random(), verifier: random(), returnTo: loc.pathname + loc.search };
  sessionStorage.setItem(pendingKey, JSON.stringify(pending));
  const u = new URL(cfg.authorizationEndpoint);
  u.searchParams.set("response_type", "code");
  u.searchParams.set("client_id", cfg.clientId);
  u.searchParams.set("redirect_uri", loc.origin + callbackPath);
  u.searchParams.set("scope", cfg.scopes.join(" "));
  u.searchParams.set("state", pending.state);
  u.searchParams.set("nonce", pending.nonce);
  u.searchParams.set("code_challenge", await codeChallenge(pending.verifier));
  u.searchParams.set("code_challenge_method", "S256");
  loc.assign(u.toString());
}

// The claims of a JWT, unverified: the server verifies the token it is
// given; the browser only checks the nonce it asked for.
function claims(jwt: string): Record<string, unknown> | null {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

// completeSignIn finishes a sign-in when the provider has sent the browser
// back to callbackPath: it checks the state, exchanges the code with the
// PKCE verifier, keeps the token and returns to the page the sign-in started
// from. What went wrong is kept for the sign-in form (takeSignInError).
// It reports whether the page was the callback.
export async function completeSignIn(
  cfg: OIDCConfig | null,
  loc: Location = window.location,
  hist: History = window.history,
  fetchFn: typeof fetch = fetch,
): Promise<boolean> {
  if (loc.pathname !== callbackPath) return false;
  const params = new URLSearchParams(loc.search);
  const raw = sessionStorage.getItem(pendingKey);
  sessionStorage.removeItem(pendingKey);
  const pending = raw ? (JSON.parse(raw) as Pending) : null;
  try {
    if (!cfg) throw new Error("this server does not offer single sign-on");
    const refused = params.get("error");
    if (refused) throw new Error(`the provider refused: ${refused} ${params.get("error_description") ?? ""}`.trim());
    if (!pending || params.get("state") !== pending.state) {
      throw new Error("this answer of the provider is not for a sign-in started in this tab (state mismatch): sign in again");
    }
    const code = params.get("code");
    if (!code) throw new Error("the provider sent no authorization code");
    const res = await fetchFn(cfg.tokenEndpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code,
        redirect_uri: loc.origin + callbackPath,
        client_id: cfg.clientId,
        code_verifier: pending.verifier,
      }),
    });
    const body = (await res.json().catch(() => ({}))) as Record<string, string | undefined>;
    if (!res.ok) {
      throw new Error(`the token endpoint answered ${res.status}: ${body.error ?? ""} ${body.error_description ?? ""}`.trim());
    }
    if (body.id_token && claims(body.id_token)?.nonce !== pending.nonce) {
      throw new Error("the ID token is not for this sign-in (nonce mismatch): sign in again");
    }
    const token = cfg.useIdToken ? body.id_token : body.access_token;
    if (!token) throw new Error(`the token endpoint sent no ${cfg.useIdToken ? "ID" : "access"} token`);
    await signIn(token, fetchFn);
  } catch (e) {
    sessionStorage.setItem(errorKey, e instanceof Error ? e.message : String(e));
  }
  hist.replaceState(null, "", pending?.returnTo ?? "/");
  return true;
}

// takeSignInError returns (once) why the last sign-in failed.
export function takeSignInError(): string {
  const e = sessionStorage.getItem(errorKey) ?? "";
  sessionStorage.removeItem(errorKey);
  return e;
}
