import { beforeEach, describe, expect, it } from "vitest";
import { beginSignIn, callbackPath, codeChallenge, completeSignIn, getToken, oidcConfig, takeSignInError, type OIDCConfig } from "./auth";

const cfg: OIDCConfig = {
  issuer: "https://idp.example.com",
  clientId: "loom-console",
  authorizationEndpoint: "https://idp.example.com/authorize?tenant=a",
  tokenEndpoint: "https://idp.example.com/token",
  scopes: ["openid", "email"],
};

// A Location that records where the page was sent.
function at(url: string) {
  const u = new URL(url);
  const sent: string[] = [];
  const loc = { origin: u.origin, pathname: u.pathname, search: u.search, assign: (to: string) => sent.push(to) };
  return { loc: loc as unknown as Location, sent };
}

function history() {
  const urls: string[] = [];
  return { hist: { replaceState: (_: unknown, __: string, url: string) => urls.push(url) } as unknown as History, urls };
}

function jwt(claims: object): string {
  const b = (o: object) => btoa(JSON.stringify(o)).replace(/=+$/, "");
  return `${b({ alg: "RS256" })}.${b(claims)}.sig`;
}

beforeEach(() => sessionStorage.clear());

describe("single sign-on", () => {
  it("computes the S256 challenge of RFC 7636's example", async () => {
    expect(await codeChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")).toBe("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
  });

  it("reads the provider the server publishes", () => {
    const doc = new DOMParser().parseFromString(
      `<html><head><meta name="loom-oidc" content="${JSON.stringify(cfg).replace(/"/g, "&#34;")}"></head></html>`,
      "text/html",
    );
    expect(oidcConfig(doc)).toEqual(cfg);
    expect(oidcConfig(new DOMParser().parseFromString("<html></html>", "text/html"))).toBeNull();
  });

  it("sends the browser to the provider with PKCE, and exchanges the code it brings back", async () => {
    const start = at("https://loom.example.com/m/go-upgrade?status=failed");
    await beginSignIn(cfg, start.loc);
    const to = new URL(start.sent[0]);
    expect(to.origin + to.pathname).toBe("https://idp.example.com/authorize");
    const q = to.searchParams;
    expect(q.get("tenant")).toBe("a");
    expect(q.get("response_type")).toBe("code");
    expect(q.get("client_id")).toBe("loom-console");
    expect(q.get("redirect_uri")).toBe("https://loom.example.com" + callbackPath);
    expect(q.get("scope")).toBe("openid email");
    expect(q.get("code_challenge_method")).toBe("S256");

    let sent: URLSearchParams | undefined;
    let session: unknown;
    const fetchFn = (async (url: string, init: RequestInit) => {
      if (url.endsWith("/loom.v1.SessionService/CreateSession")) {
        session = JSON.parse(init.body as string);
        return new Response(JSON.stringify({ subject: "ada", role: "operator", csrfToken: "c" }));
      }
      sent = init.body as URLSearchParams;
      return new Response(JSON.stringify({ access_token: "the-access-token", id_token: jwt({ nonce: q.get("nonce") }) }));
    }) as unknown as typeof fetch;
    const back = at(`https://loom.example.com${callbackPath}?code=c0de&state=${q.get("state")}`);
    const { hist, urls } = history();
    expect(await completeSignIn(cfg, back.loc, hist, fetchFn)).toBe(true);
    expect(takeSignInError()).toBe("");
    // The token starts the browser's session and is not kept by the page.
    expect(session).toEqual({ token: "the-access-token" });
    expect(getToken()).toBe("");
    expect(urls).toEqual(["/m/go-upgrade?status=failed"]);
    // The verifier sent is the one whose challenge the provider was given.
    expect(sent?.get("grant_type")).toBe("authorization_code");
    expect(sent?.get("code")).toBe("c0de");
    expect(await codeChallenge(sent?.get("code_verifier") ?? "")).toBe(q.get("code_challenge"));
  });

  it("refuses an answer for another sign-in, and says why", async () => {
    const start = at("https://loom.example.com/");
    await beginSignIn(cfg, start.loc);
    const fetchFn = (async () => new Response("{}")) as unknown as typeof fetch;
    const back = at(`https://loom.example.com${callbackPath}?code=c0de&state=forged`);
    await completeSignIn(cfg, back.loc, history().hist, fetchFn);
    expect(getToken()).toBe("");
    expect(takeSignInError()).toMatch(/state mismatch/);
  });

  it("keeps the provider's refusal and the token endpoint's error", async () => {
    await completeSignIn(cfg, at(`https://loom.example.com${callbackPath}?error=access_denied&error_description=no`).loc, history().hist);
    expect(takeSignInError()).toBe("the provider refused: access_denied no");

    const start = at("https://loom.example.com/");
    await beginSignIn(cfg, start.loc);
    const state = new URL(start.sent[0]).searchParams.get("state");
    const fetchFn = (async () =>
      new Response(JSON.stringify({ error: "invalid_grant", error_description: "code expired" }), { status: 400 })) as unknown as typeof fetch;
    await completeSignIn(cfg, at(`https://loom.example.com${callbackPath}?code=x&state=${state}`).loc, history().hist, fetchFn);
    expect(getToken()).toBe("");
    expect(takeSignInError()).toBe("the token endpoint answered 400: invalid_grant code expired");
  });

  it("leaves every other page alone", async () => {
    expect(await completeSignIn(cfg, at("https://loom.example.com/m/x").loc, history().hist)).toBe(false);
  });
});
