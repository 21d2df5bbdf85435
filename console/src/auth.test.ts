import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { createRouterTransport, createClient } from "@connectrpc/connect";
import {
  csrfToken,
  getToken,
  mustReload,
  noteCaller,
  onAuthChange,
  setToken,
  signIn,
  signOut,
  signedIn,
  takeSignInError,
  takeTokenFromURL,
  usesSession,
} from "./auth";
import { credentials } from "./api";
import { RegistryService } from "./gen/loom/v1/registry_service_pb";

// A fetch that answers the SessionService like Loom: it records each call
// (procedure, headers, body) and answers with status and body.
function loom(answer: (procedure: string) => { status?: number; body: object }) {
  const calls: { procedure: string; headers: Record<string, string>; body: unknown }[] = [];
  const fetchFn = (async (url: string, init: RequestInit) => {
    const procedure = url.split("/").pop() ?? "";
    calls.push({ procedure, headers: init.headers as Record<string, string>, body: JSON.parse(init.body as string) });
    const a = answer(procedure);
    return new Response(JSON.stringify(a.body), { status: a.status ?? 200 });
  }) as unknown as typeof fetch;
  return { fetchFn, calls };
}

// anotherTab listens to the tabs' sign-in channel as another tab would
// (onAuthChange leaves out this tab's own announcements).
function anotherTab() {
  const heard: string[] = [];
  const c = new BroadcastChannel("loom.auth");
  c.onmessage = (e: MessageEvent) => heard.push((e.data as { change: string }).change);
  return { heard, stop: () => c.close() };
}

function clearCookies() {
  for (const c of document.cookie.split(";")) {
    const name = c.split("=")[0].trim();
    if (name) document.cookie = `${name}=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/`;
  }
}

beforeEach(() => {
  sessionStorage.clear();
  clearCookies();
});
afterEach(clearCookies);

describe("one sign-in per browser", () => {
  it("uses the session cookie when served by its Loom, a bearer token when served elsewhere", () => {
    expect(usesSession(window.location.origin)).toBe(true);
    expect(usesSession("https://loom.example.com")).toBe(false);
  });

  it("signs in by starting a session: no token is kept by the page", async () => {
    const { fetchFn, calls } = loom(() => ({ body: { subject: "alice", role: "operator", csrfToken: "csrf-1" } }));
    expect(await signIn(" loom_tok ", fetchFn)).toEqual({ subject: "alice", role: "operator" });
    expect(calls).toEqual([expect.objectContaining({ procedure: "CreateSession", body: { token: "loom_tok" } })]);
    expect(getToken()).toBe("");
    expect(sessionStorage.length).toBe(0);
  });

  it("says why a sign-in failed with the server's code: a refused token, Redis away", async () => {
    const refused = loom(() => ({ status: 401, body: { code: "unauthenticated", message: "invalid or unknown token" } }));
    await expect(signIn("loom_bad", refused.fetchFn)).rejects.toMatchObject({ code: Code.Unauthenticated });
    const away = loom(() => ({ status: 503, body: { code: "unavailable", message: "redis is unreachable" } }));
    const err = await signIn("loom_tok", away.fetchFn).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unavailable);
    expect(signedIn()).toBe(false);
  });

  it("keeps loom dev's token out of the address bar even when the sign-in fails, and says why", async () => {
    window.history.replaceState(null, "", "/m/x#token=loom_gone");
    const refused = loom(() => ({ status: 401, body: { code: "unauthenticated", message: "invalid or unknown token" } }));
    await takeTokenFromURL(window.location, window.history, refused.fetchFn);
    expect(window.location.hash).toBe("");
    expect(takeSignInError()).toMatch(/invalid or unknown token/);
  });

  it("sends the session's CSRF token on every call, and no Authorization", async () => {
    document.cookie = "loom_csrf=csrf-1; path=/";
    expect(csrfToken()).toBe("csrf-1");
    expect(signedIn()).toBe(true);
    let seen: Headers | undefined;
    const transport = createRouterTransport(
      ({ service }) => {
        service(RegistryService, {
          getCaller: (_req, ctx) => {
            seen = ctx.requestHeader;
            return {};
          },
        });
      },
      { transport: { interceptors: [credentials] } },
    );
    await createClient(RegistryService, transport).getCaller({});
    expect(seen?.get("Loom-CSRF")).toBe("csrf-1");
    expect(seen?.get("Authorization")).toBeNull();
  });

  it("reads the __Host- cookie of https", () => {
    // jsdom's page is plain http, where a browser refuses __Host- cookies.
    expect(csrfToken({ cookie: "other=1; __Host-loom_csrf=csrf-2" } as Document)).toBe("csrf-2");
  });

  it("a bearer token, when the page has one, is sent instead", async () => {
    setToken("loom_bearer");
    document.cookie = "loom_csrf=csrf-1; path=/";
    let seen: Headers | undefined;
    const transport = createRouterTransport(
      ({ service }) => {
        service(RegistryService, {
          getCaller: (_req, ctx) => {
            seen = ctx.requestHeader;
            return {};
          },
        });
      },
      { transport: { interceptors: [credentials] } },
    );
    await createClient(RegistryService, transport).getCaller({});
    expect(seen?.get("Authorization")).toBe("Bearer loom_bearer");
    expect(seen?.get("Loom-CSRF")).toBeNull();
  });

  it("signs out on the server with the CSRF token, and tells the other tabs", async () => {
    document.cookie = "loom_csrf=csrf-1; path=/";
    const { heard: otherTab, stop } = anotherTab();
    const { fetchFn, calls } = loom(() => ({ body: {} }));
    await signOut(fetchFn);
    expect(calls).toEqual([expect.objectContaining({ procedure: "DeleteSession", headers: expect.objectContaining({ "Loom-CSRF": "csrf-1" }) })]);
    await vi.waitFor(() => expect(otherTab).toEqual(["signed-out"]));
    stop();
  });

  it("a failed sign-out says so and tells no tab", async () => {
    const { heard: otherTab, stop } = anotherTab();
    const away = loom(() => ({ status: 503, body: { code: "unavailable", message: "redis is unreachable" } }));
    await expect(signOut(away.fetchFn)).rejects.toMatchObject({ code: Code.Unavailable });
    // A sign-in next tells the other tabs: a message of the failed sign-out
    // would have come before it, on the same channel.
    await signIn("loom_tok", loom(() => ({ body: { subject: "alice", role: "operator" } })).fetchFn);
    await vi.waitFor(() => expect(otherTab).toEqual(["signed-in"]));
    stop();
  });

  it("another tab's sign-in as the same caller reloads nothing here; another caller's, or a sign-out, does", async () => {
    const changes: [string, unknown][] = [];
    const stop = onAuthChange((c, who) => changes.push([c, who]));
    const other = new BroadcastChannel("loom.auth");
    try {
      // This tab's own sign-in is not news to it.
      await signIn("loom_tok", loom(() => ({ body: { subject: "alice", role: "operator" } })).fetchFn);
      const alice = { subject: "alice", role: "operator" };
      other.postMessage({ change: "signed-in", who: alice, from: "another tab" });
      await vi.waitFor(() => expect(changes).toEqual([["signed-in", alice]]));
      expect(mustReload("signed-in", alice)).toBe(false);
      expect(mustReload("signed-in", { subject: "alice", role: "viewer" })).toBe(true);
      expect(mustReload("signed-in", { subject: "bob", role: "operator" })).toBe(true);
      expect(mustReload("signed-in")).toBe(true);
      expect(mustReload("signed-out")).toBe(true);
      // A tab that does not know whom it shows (signed out, or not told
      // yet) reloads.
      noteCaller(null);
      expect(mustReload("signed-in", alice)).toBe(true);
      // A console of before senders were named posted bare strings.
      other.postMessage("signed-out");
      await vi.waitFor(() => expect(changes.map((c) => c[0])).toEqual(["signed-in", "signed-out"]));
    } finally {
      other.close();
      stop();
    }
  });

  it("a tab whose call was refused as unauthenticated is signed in as nobody: any sign-in reloads it", async () => {
    noteCaller({ subject: "alice", role: "operator" });
    expect(mustReload("signed-in", { subject: "alice", role: "operator" })).toBe(false);
    const transport = createRouterTransport(
      ({ service }) => {
        service(RegistryService, {
          getCaller: () => {
            throw new ConnectError("session ended", Code.Unauthenticated);
          },
        });
      },
      { transport: { interceptors: [credentials] } },
    );
    await expect(createClient(RegistryService, transport).getCaller({})).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(mustReload("signed-in", { subject: "alice", role: "operator" })).toBe(true);
  });
});
