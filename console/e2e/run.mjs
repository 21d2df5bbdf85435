// End-to-end tests of the console in a real browser: Debian's Chromium
// driven by playwright-core, against a real `loom-dev` (Redis, embedded
// Temporal, the example Migrator and its sample fleet of git repositories).
// They walk a newcomer's path: find a Candidate, preview its diff, start it,
// follow it live to `completed` while the test merges its branches, fail
// (with a note, in a dialog) and retry a step, read its history; and on
// another Run, mark a step merged and cancel the Run, each in a dialog. Each page is
// saved as a screenshot under e2e/screenshots/. Then they measure (and
// print, without asserting) the first render of a Migration of 10,000
// Candidates and the latency of a filter change, and on that Migration
// select every Candidate matching a filter, start a rollout of them from
// the dialog, watch its progress live, pause it (no Run starts while it is
// paused, even with its pacing lifted; resumed, it starts them again) and
// cancel it.
//
// One sign-in serves every tab of a browser (a session cookie): a second
// tab opened with no token is signed in, and signing out in one tab signs
// both out.
//
// Single sign-on is tried against a real OpenID Provider (../tools/testidp:
// zitadel/oidc's provider library): `loom-dev` is pointed at it, and a new
// browser signs in through its login form with the authorization-code flow
// and PKCE.
//
//   npm run e2e            (builds ../cmd/loom-dev; needs /usr/bin/chromium)
//   CHROMIUM=/path npm run e2e
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const root = resolve(import.meta.dirname, "../..");
const shots = resolve(import.meta.dirname, "screenshots");
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const work = mkdtempSync(join(tmpdir(), "loom-console-e2e-"));
mkdirSync(shots, { recursive: true });

// freePort finds a port and keeps the kernel from handing it to anyone else
// for a while: the listening side closes an accepted connection first, so
// its TIME_WAIT holds the port, while an explicit bind (ours) still works.
// Temporal, given a taken port, ends the whole process.
function freePort() {
  return new Promise((res, rej) => {
    const s = createServer((conn) => {
      const { port } = s.address();
      conn.destroy();
      s.close(() => res(port));
    });
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const c = connect(s.address().port, "127.0.0.1");
      c.on("error", () => {});
      c.on("close", () => c.destroy());
    });
  });
}

// Children die with the test, however it ends.
const children = [];
process.on("exit", () => children.forEach((c) => c.exitCode === null && c.kill("SIGKILL")));

// waitFor reads a child's output until re matches, and returns the match.
function waitFor(proc, re, what) {
  let out = "";
  const logs = () => out;
  const found = new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${what} did not start:\n${out}`)), 120_000);
    const onData = (b) => {
      out += b;
      const m = out.match(re);
      if (m) {
        clearTimeout(timer);
        res(m);
      }
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", onData);
    proc.on("exit", (code) => rej(new Error(`${what} exited (${code}):\n${out}`)));
  });
  return { found, logs };
}

async function startIdP(api) {
  const bin = join(work, "testidp");
  execFileSync("go", ["build", "-o", bin, "./testidp"], { cwd: join(root, "tools"), stdio: "inherit" });
  const port = await freePort();
  const proc = spawn(
    bin,
    ["-addr", `127.0.0.1:${port}`, "-client-id", "loom-console", "-redirect-uri", `http://127.0.0.1:${api}/signin/callback`],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  children.push(proc);
  const { found } = waitFor(proc, /issuer (\S+)/, "the test OpenID Provider");
  return { proc, issuer: (await found)[1] };
}

async function startLoom(api, idp) {
  const bin = join(work, "loom-dev");
  execFileSync("go", ["build", "-o", bin, "./cmd/loom-dev"], { cwd: root, stdio: "inherit" });
  const [temporal, redis, example] = [await freePort(), await freePort(), await freePort()];
  const data = join(work, "data");
  const proc = spawn(
    bin,
    [
      "-data-dir", data,
      "-addr", `127.0.0.1:${api}`,
      "-admin-addr", "",
      "-temporal-port", String(temporal),
      "-redis-port", String(redis),
      "-example-addr", `127.0.0.1:${example}`,
      "-fleet-size", "4",
      "-jwt-issuer", idp.issuer,
      "-jwt-audience", "loom-console",
      "-oidc-client-id", "loom-console",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  children.push(proc);
  const { found, logs } = waitFor(proc, /Console\s+(\S+)/, "loom-dev");
  const consoleURL = (await found)[1];
  return {
    proc,
    consoleURL,
    apiURL: `http://127.0.0.1:${api}`,
    fleet: join(data, "fleet"),
    migratorToken: readFileSync(join(data, "migrator.token"), "utf8").trim(),
    exampleURL: `http://127.0.0.1:${example}`,
    logs,
  };
}

const results = [];
async function step(name, fn) {
  const began = Date.now();
  try {
    await fn();
    results.push({ name, ok: true, ms: Date.now() - began });
    console.log(`ok   ${name} (${Date.now() - began} ms)`);
  } catch (err) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}\n${err.stack ?? err}`);
    throw err;
  }
}

function git(repo, ...args) {
  execFileSync("git", ["-C", repo, ...args], { stdio: "pipe" });
}

async function call(loom, path, body, token = loom.migratorToken) {
  const res = await fetch(loom.apiURL + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

const apiPort = await freePort();
const idp = await startIdP(apiPort);
const loom = await startLoom(apiPort, idp);
let browser;
let failed = false;
try {
  browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e));
  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  const step1 = (name) => page.locator(`li.step[data-step="${name}"]`);
  const origin = new URL(loom.consoleURL).origin;
  // The operator's token, from the URL `loom-dev` printed.
  const operator = decodeURIComponent(new URL(loom.consoleURL).hash.replace("#token=", ""));

  await step("home lists the Migration, signed in by the printed URL", async () => {
    await page.goto(loom.consoleURL);
    await page.getByRole("link", { name: "Raise the go directive" }).waitFor();
    if (page.url().includes("token=")) throw new Error("the token stayed in the address bar");
    await shot("01-home");
  });

  await step("filter Candidates; the URL keeps the filter", async () => {
    await page.getByRole("link", { name: "Raise the go directive" }).click();
    await page.getByText(/4 Candidates match/).waitFor();
    await page.getByLabel("Id starts with").fill("svc-0");
    await page.getByLabel("Status", { exact: true }).selectOption("not_started");
    await page.waitForURL(/status=not_started/);
    await page.getByText(/4 Candidates match/).waitFor();
    // The kinds present are offered, with their counts, from the server.
    const kinds = await page.getByLabel("Kind", { exact: true }).locator("option").allTextContents();
    if (kinds[0] !== "any" || !kinds.slice(1).some((k) => /\(\d+\)$/.test(k))) throw new Error(`the Kind choices are ${kinds}`);
    // The keyboard walks the rows, with no row focused first, and opens one.
    await page.evaluate(() => document.activeElement?.blur());
    await page.keyboard.press("j");
    await page.keyboard.press("j");
    await page.keyboard.press("j");
    await page.keyboard.press("k");
    const focused = await page.evaluate(() => document.activeElement?.textContent);
    if (focused !== "svc-02") throw new Error(`after j j j k the focus is on ${focused}`);
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/c\/svc-02$/);
    await page.goBack();
    await page.getByText(/4 Candidates match/).waitFor();
    await page.getByLabel("Id starts with").fill("svc-01");
    await page.getByText(/^1 Candidates match/).waitFor();
    await shot("02-candidates-filtered");
    // A link reproduces the view.
    await page.goto(page.url());
    await page.getByText(/^1 Candidates match/).waitFor();
  });

  await step("preview shows the real diff", async () => {
    await page.getByRole("link", { name: "svc-01", exact: true }).click();
    await page.getByRole("heading", { name: "svc-01" }).waitFor();
    await page.getByText(/\(operator\)/).waitFor();
    await page.getByRole("button", { name: /Preview or start/ }).click();
    // Checked before sending: the required inputs are empty.
    await page.getByRole("button", { name: "Preview", exact: true }).click();
    await page.getByText(/Required: Target go version, Toolchain/).waitFor();
    await page.getByLabel(/Target go version/).fill("1.23");
    await page.getByLabel(/^Toolchain/).fill("1.23.4");
    await page.getByRole("button", { name: "Preview", exact: true }).click();
    const diff = page.getByLabel(/Diff of .*go\.mod/).first();
    await diff.waitFor();
    const text = await diff.innerText();
    if (!text.includes("go 1.19") || !text.includes("go 1.23")) throw new Error(`diff: ${text}`);
    await page.getByRole("button", { name: "Side by side" }).click();
    await shot("03-preview");
  });

  await step("start; the first step becomes open without a reload", async () => {
    await page.getByLabel("Why", { exact: true }).fill("e2e: first of the wave");
    await page.getByRole("button", { name: "Start Run" }).click();
    await page.getByText("Started svc-01").waitFor();
    await step1("bump-go").and(page.locator('[data-status="open"]')).waitFor({ timeout: 30_000 });
    await shot("04-started");
  });

  await step("merging the branch outside shows merged, live", async () => {
    const nav = await page.evaluate(() => performance.getEntriesByType("navigation").length);
    const repo = join(loom.fleet, "svc-01");
    git(repo, "merge", "-q", "loom/bump-go");
    await step1("bump-go").and(page.locator('[data-status="merged"]')).waitFor({ timeout: 30_000 });
    await step1("pin-toolchain").and(page.locator('[data-status="open"]')).waitFor({ timeout: 30_000 });
    git(repo, "merge", "-q", "loom/pin-toolchain");
    await step1("review").and(page.locator('[data-status="awaiting_review"]')).waitFor({ timeout: 30_000 });
    const after = await page.evaluate(() => performance.getEntriesByType("navigation").length);
    if (after !== nav) throw new Error("the page reloaded");
    await shot("05-awaiting-review");
  });

  await step("fail the review step with a note (asked in a dialog), retry it saying why, finish it: completed", async () => {
    await page.getByRole("button", { name: "Review failed…" }).click();
    let dialog = page.getByRole("dialog", { name: "Finish the review of review as failed?" });
    await dialog.waitFor();
    // The note is required: nothing can be sent without one.
    if (!(await dialog.getByRole("button", { name: "Fail the review" }).isDisabled())) throw new Error("a failed review was sendable without a note");
    await shot("06-review-failed-dialog");
    // Focus is in the note; Enter sends it.
    await page.keyboard.type("e2e: canary too slow");
    await page.keyboard.press("Enter");
    await dialog.waitFor({ state: "detached" });
    await step1("review").and(page.locator('[data-status="failed"]')).waitFor({ timeout: 30_000 });
    await step1("review").getByText("e2e: canary too slow").waitFor();
    await shot("06-failed");
    // Retry asks why too (optional); the note goes to the history.
    await page.getByRole("button", { name: "Retry step…" }).click();
    const retryDialog = page.getByRole("dialog", { name: "Retry review?" });
    await retryDialog.getByLabel("Why", { exact: true }).fill("e2e: canary fixed");
    await retryDialog.getByRole("button", { name: "Retry the step" }).click();
    await retryDialog.waitFor({ state: "detached" });
    await step1("review").and(page.locator('[data-status="awaiting_review"]')).waitFor({ timeout: 30_000 });
    await page.getByRole("button", { name: "Review done…" }).click();
    dialog = page.getByRole("dialog", { name: "Finish the review of review as done?" });
    // Escape goes back without sending.
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" });
    await step1("review").and(page.locator('[data-status="awaiting_review"]')).waitFor();
    await page.getByRole("button", { name: "Review done…" }).click();
    await dialog.getByLabel("Note", { exact: true }).fill("e2e: looks good");
    await dialog.getByRole("button", { name: "Finish the review" }).click();
    await page.locator("#run-h").getByText("completed").waitFor({ timeout: 30_000 });
  });

  await step("the history tells who did what", async () => {
    const history = page.locator("section", { has: page.locator("#history-h") });
    await history.getByText("run completed").waitFor({ timeout: 15_000 });
    await history.getByText("step retried").waitFor();
    await history.getByText("review finished").first().waitFor();
    // The notes typed in the dialogs are what was recorded.
    await history.getByText("e2e: canary too slow").waitFor();
    await history.getByText("e2e: canary fixed").waitFor();
    await history.getByText("e2e: looks good").waitFor();
    await history.getByText("e2e: first of the wave").waitFor();
    await history.getByText("run started").waitFor();
    await shot("07-completed-history");
  });

  await step("mark a step merged, then cancel the Run, each confirmed in a dialog with a note", async () => {
    await page.goto(`${origin}/m/go-directive/c/svc-02`);
    await page.getByRole("button", { name: /Preview or start/ }).click();
    await page.getByLabel(/Target go version/).fill("1.23");
    await page.getByLabel(/^Toolchain/).fill("1.23.4");
    await page.getByRole("button", { name: "Start Run" }).click();
    await step1("bump-go").and(page.locator('[data-status="open"]')).waitFor({ timeout: 30_000 });
    await page.getByRole("button", { name: "Mark merged…" }).click();
    let dialog = page.getByRole("dialog", { name: "Mark bump-go merged?" });
    await dialog.getByLabel("Note", { exact: true }).fill("e2e: merged by hand");
    await dialog.getByRole("button", { name: "Mark merged" }).click();
    await step1("bump-go").and(page.locator('[data-status="merged"]')).waitFor({ timeout: 30_000 });
    await step1("bump-go").getByText("e2e: merged by hand").waitFor();
    await step1("pin-toolchain").and(page.locator('[data-status="open"]')).waitFor({ timeout: 30_000 });
    await page.getByRole("button", { name: "Cancel Run…" }).click();
    dialog = page.getByRole("dialog", { name: "Cancel the Run of svc-02?" });
    // The reason is required.
    if (!(await dialog.getByRole("button", { name: "Cancel the Run" }).isDisabled())) throw new Error("a cancel was sendable without a reason");
    await dialog.getByLabel("Reason").fill("not now");
    await shot("08-cancel-dialog");
    await dialog.getByRole("button", { name: "Cancel the Run" }).click();
    await page.locator("#run-h").getByText("cancelled").waitFor({ timeout: 30_000 });
    await page.getByText("Cancelled: not now").waitFor();
    // The steps as they ended: none waits any more.
    await step1("bump-go").and(page.locator('[data-status="merged"]')).waitFor();
    await step1("pin-toolchain").and(page.locator('[data-status="cancelled"]')).waitFor();
    await step1("review").and(page.locator('[data-status="not_reached"]')).waitFor();
    const history = page.locator("section", { has: page.locator("#history-h") });
    await history.getByText("e2e: merged by hand").waitFor({ timeout: 15_000 });
    await history.getByText("not now").waitFor({ timeout: 15_000 });
    await shot("08-cancelled");
  });

  await step("the Candidate table follows a Run started elsewhere, live", async () => {
    await page.goto(`${origin}/m/go-directive?status=running`);
    await page.getByText(/^0 Candidates match/).waitFor();
    await call(
      loom,
      "/loom.v1.RunService/StartRun",
      { migrationId: "go-directive", candidateId: "svc-04", inputs: { go_version: "1.23", toolchain: "1.23.4" } },
      operator,
    );
    await page.getByRole("region", { name: "Candidates" }).getByRole("link", { name: "svc-04", exact: true }).waitFor({ timeout: 15_000 });
    await page.getByText(/^1 Candidates match/).waitFor();
    // The running-now panel follows the fleet feed too: no polling.
    await page.getByRole("complementary", { name: "Running now" }).getByRole("link", { name: "svc-04", exact: true }).waitFor({ timeout: 5_000 });
  });

  await step("metrics, history and the command palette", async () => {
    await page.goto(`${origin}/m/go-directive?tab=metrics`);
    await page.getByRole("heading", { name: "Step durations" }).waitFor();
    await shot("09-metrics");
    // The review step failed once and succeeded once (svc-01).
    await page.goto(`${origin}/metrics`);
    const review = page.locator("section", { hasText: "go-directive" }).locator("tr", { hasText: /^review/ });
    await review.getByText("50%").waitFor();
    await page.locator("section", { hasText: "go-directive" }).getByText(/[1-9]\d* events in 30 days/).waitFor();
    await shot("09b-fleet-metrics");
    await page.goto(`${origin}/history`);
    await page.locator(".eventlog table").getByText("run cancelled").first().waitFor();
    await shot("10-history");
    // Several kinds by name, a Candidate id prefix and a time range, from the URL.
    await page.goto(`${origin}/history?kind=run_cancelled&kind=run_started&prefix=svc-&from=1d`);
    await page.locator(".eventlog table").getByText("run cancelled").first().waitFor();
    await page.locator(".eventlog table").getByText("run started").first().waitFor();
    if ((await page.locator(".eventlog table").getByText("step dispatched").count()) > 0) {
      throw new Error("history: the kinds of the URL were not applied");
    }
    await page.keyboard.press("Control+k");
    await page.getByPlaceholder(/Migration name or Candidate id/).fill("svc-03");
    await page.getByRole("option", { name: /svc-03/ }).click();
    await page.getByRole("heading", { name: "svc-03" }).waitFor();
    // An action typed first: "start" opens the Candidate's preview and start form.
    await page.keyboard.press("Control+k");
    await page.getByPlaceholder(/Migration name or Candidate id/).fill("start svc-02");
    await page.getByRole("option", { name: /Start or preview svc-02/ }).first().click();
    await page.getByRole("heading", { name: "svc-02", exact: true }).waitFor();
    await page.getByRole("form", { name: /^Preview/ }).waitFor();
    await page.getByRole("button", { name: "Switch to dark theme" }).click();
    if ((await page.evaluate(() => document.documentElement.dataset.theme)) !== "dark") throw new Error("no dark theme");
    await shot("10b-dark");
    await page.getByRole("button", { name: "Switch to light theme" }).click();
  });

  await step("a migrator sees no operator controls", async () => {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const p = await ctx.newPage();
    await p.goto(`${origin}/m/go-directive/c/svc-03#token=${encodeURIComponent(loom.migratorToken)}`);
    await p.getByRole("heading", { name: "svc-03" }).waitFor();
    await p.getByText(/\(migrator\)/).waitFor();
    await p.getByRole("heading", { name: "History" }).waitFor();
    for (const name of [/Preview/, /Start/, /Edit inputs/]) {
      if ((await p.getByRole("button", { name }).count()) > 0) throw new Error(`a migrator is offered ${name}`);
    }
    await p.screenshot({ path: join(shots, "12-as-migrator.png"), fullPage: true });
    await ctx.close();
  });

  await step("one sign-in per browser: a second tab is signed in by the first; sign-out ends both", async () => {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const first = await ctx.newPage();
    first.on("pageerror", (e) => pageErrors.push(e));
    await first.goto(loom.consoleURL);
    await first.getByRole("link", { name: "Raise the go directive" }).first().waitFor();
    // The session's cookie is out of the page's reach, and the token is
    // nowhere the page's scripts can read.
    const session = (await ctx.cookies()).find((c) => c.name === "loom_session");
    if (!session?.httpOnly || session.sameSite !== "Strict") throw new Error(`session cookie ${JSON.stringify(session)}`);
    const readable = await first.evaluate(() => document.cookie + JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage }));
    if (readable.includes(operator) || readable.includes(session.value)) throw new Error(`the page can read a credential: ${readable}`);
    // A second tab, opened on a Candidate with no token, is signed in, and
    // stays so across a reload.
    const second = await ctx.newPage();
    second.on("pageerror", (e) => pageErrors.push(e));
    await second.goto(`${origin}/m/go-directive/c/svc-01`);
    await second.getByRole("heading", { name: "svc-01" }).waitFor();
    await second.getByText("dev-operator (operator)").waitFor();
    await second.reload();
    await second.getByRole("heading", { name: "svc-01" }).waitFor();
    const csrf = (await ctx.cookies()).find((c) => c.name === "loom_csrf")?.value;
    // Signing out in the first tab ends the session on the server: both
    // tabs show the sign-in form (the second hears of it at once).
    await first.getByRole("button", { name: "Sign out" }).click();
    await first.getByRole("heading", { name: "Sign in" }).first().waitFor();
    await second.getByRole("heading", { name: "Sign in" }).first().waitFor();
    // The old cookie, replayed, is refused: the server forgot the session.
    const res = await fetch(`${origin}/loom.v1.RegistryService/GetCaller`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Origin: origin, Cookie: `loom_session=${session.value}`, "Loom-CSRF": csrf ?? "" },
      body: "{}",
    });
    const body = await res.json();
    if (body.code !== "unauthenticated") throw new Error(`the ended session still answers: ${res.status} ${JSON.stringify(body)}`);
    await second.screenshot({ path: join(shots, "13a-signed-out-everywhere.png"), fullPage: true });
    await ctx.close();
  });

  await step("single sign-on at the OpenID Provider, with PKCE", async () => {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const p = await ctx.newPage();
    p.on("pageerror", (e) => pageErrors.push(e));
    await p.goto(`${origin}/m/go-directive`);
    // Not signed in: the form offers the provider.
    const sso = p.getByRole("button", { name: `Sign in with ${new URL(idp.issuer).host}` });
    await sso.waitFor();
    await p.screenshot({ path: join(shots, "13-sign-in.png"), fullPage: true });
    await sso.click();
    // The provider's own login form.
    await p.waitForURL((u) => u.origin === new URL(idp.issuer).origin);
    await p.locator('input[name="username"]').fill("ada");
    await p.locator('input[name="password"]').fill("loom");
    await p.locator('button[type="submit"], input[type="submit"]').first().click();
    // Back on the page the sign-in started from, signed in as the
    // provider's user with the role its token carries.
    await p.waitForURL(`${origin}/m/go-directive`);
    await p.getByText("u-ada (operator)").waitFor();
    await p.getByText(/Candidates match/).waitFor();
    // The provider's token started a session: the page keeps no token.
    if (await p.evaluate(() => sessionStorage.getItem("loom.token"))) throw new Error("the page kept the provider's token");
    if (!(await ctx.cookies()).some((c) => c.name === "loom_session" && c.httpOnly)) throw new Error("no session cookie");
    await p.screenshot({ path: join(shots, "14-signed-in-by-oidc.png"), fullPage: true });
    await ctx.close();
  });

  // Many tabs and the back/forward cache, as any desktop Chrome has them:
  // Playwright turns the cache off (--disable-back-forward-cache), so a
  // browser of its own runs without that switch. Over plain HTTP/1.1 a
  // browser opens at most six connections to the server; with a stream
  // per page, three Candidate tabs (or pages kept in the cache with theirs)
  // took them all and the next page never loaded. The browser's one live
  // stream is counted here at every request: WatchEvents of the whole
  // fleet, never more than 2 open at once (1, and briefly 2 while a tab
  // hands it over), and no WatchRun, WatchRollout or per-Migration watch.
  {
    const cached = await chromium.launch({
      executablePath,
      headless: true,
      args: ["--no-sandbox", "--enable-features=BackForwardCache"],
      ignoreDefaultArgs: ["--disable-back-forward-cache"],
    });
    try {
      const ctx = await cached.newContext({ viewport: { width: 1400, height: 900 } });
      // A restore from the cache fires pageshow with persisted on the page
      // kept; each page counts its own.
      await ctx.addInitScript(() => {
        window.__restored = 0;
        addEventListener("pageshow", (e) => {
          if (e.persisted) window.__restored++;
        });
      });
      const open = new Set();
      let most = 0;
      const others = [];
      ctx.on("request", (r) => {
        const u = r.url();
        if (!/\/Watch[A-Za-z]+$/.test(u)) return;
        if (!u.endsWith("/loom.v1.HistoryService/WatchEvents")) others.push(u);
        open.add(r);
        most = Math.max(most, open.size);
      });
      ctx.on("requestfinished", (r) => open.delete(r));
      ctx.on("requestfailed", (r) => open.delete(r));
      const budget = (when) => {
        if (others.length) throw new Error(`${when}: streams other than the fleet feed were opened: ${others.join(", ")}`);
        if (most > 2) throw new Error(`${when}: ${most} streams were open at once`);
      };
      const candidate = (id) => `${origin}/m/go-directive/c/${id}`;
      const rendered = (p, id) => p.getByRole("heading", { level: 1, name: id }).waitFor({ timeout: 30_000 });
      // A page over 2 s fails its step, once every page of the step was
      // measured and the times printed: one slow page on a loaded machine
      // reads differently from pages slower with each tab.
      let slow = [];
      const timed = async (what, fn) => {
        const began = Date.now();
        await fn();
        const ms = Date.now() - began;
        if (ms > 2_000) slow.push(`${what}: ${ms} ms`);
        return ms;
      };
      const noneSlow = () => {
        const over = slow;
        slow = [];
        if (over.length) throw new Error(`over 2 s: ${over.join("; ")}`);
      };
      // A dozen tabs, as an operator keeps all day (issue 18): the fleet's
      // 4 Candidates three times over (so one Candidate's change must reach
      // three tabs); E2E_TABS=5 for fewer. Each tab is opened from the URL
      // `loom dev` prints, so each signs in. Every tab once reloaded at any
      // sign-in in another (and the one signing in reloaded itself): tab
      // k's first render raced k page loads, each new tab's 0.17 s slower
      // than the last (2.6 s for the twelfth on 2 idle cores); see
      // docs/console.md. So no tab may load its page twice here, however
      // fast the machine.
      const fleet = ["svc-01", "svc-02", "svc-03", "svc-04"];
      const tabCount = Number(process.env.E2E_TABS || 12);
      const ids = Array.from({ length: tabCount }, (_, i) => fleet[i % fleet.length]);

      await step(`${ids.length} Candidate tabs and their reloads, each first render under 2 s, on one live stream`, async () => {
        const tabs = [];
        const firsts = [];
        // Documents each tab loaded: its page, and any reload.
        const loads = new Map();
        const reloaded = () => tabs.map((p, i) => `tab ${i + 1}: ${loads.get(p)}`).filter((_, i) => loads.get(tabs[i]) !== 1);
        for (const id of ids) {
          const p = await ctx.newPage();
          p.on("pageerror", (e) => pageErrors.push(e));
          loads.set(p, 0);
          p.on("domcontentloaded", () => loads.set(p, loads.get(p) + 1));
          tabs.push(p);
          // Each tab signs in from the URL, as when the operator opens
          // `loom dev`'s URL again; the tabs signed in already carry on.
          firsts.push(await timed(`tab ${tabs.length} (${id})`, async () => {
            await p.goto(`${candidate(id)}#token=${encodeURIComponent(operator)}`, { waitUntil: "commit" });
            await rendered(p, id);
          }));
        }
        // Every tab follows the feed, live (its history says so: svc-03 has
        // no Run), though one tab holds it.
        for (const p of tabs) await p.locator(".eventlog").getByText("● live").waitFor({ timeout: 10_000 });
        if (reloaded().length) throw new Error(`tabs loaded their page more than once, reloaded by a sign-in (documents loaded): ${reloaded().join(", ")}`);
        const reloads = [];
        for (const [i, p] of tabs.entries()) {
          reloads.push(await timed(`reload of tab ${i + 1}`, async () => {
            await p.reload({ waitUntil: "commit" });
            await rendered(p, ids[i]);
          }));
        }
        for (const p of tabs) await p.locator(".eventlog").getByText("● live").waitFor({ timeout: 10_000 });
        // A change made elsewhere reaches every tab through the one stream:
        // each tab of svc-01 shows it in its history, live.
        await call(
          loom,
          "/loom.v1.DiscoveryService/UpdateCandidateInputs",
          { migrationId: "go-directive", candidateId: "svc-01", inputs: { e2e_tabs: String(ids.length) } },
          operator,
        );
        for (const [i, p] of tabs.entries()) {
          if (ids[i] !== "svc-01") continue;
          const history = p.locator("section", { has: p.locator("#history-h") });
          await history.getByText("candidate inputs updated").waitFor({ timeout: 10_000 });
        }
        budget(`${ids.length} tabs`);
        console.log(
          `MEASURE ${ids.length} Candidate tabs, first render: ${firsts.join(", ")} ms; after a reload: ${reloads.join(", ")} ms; streams open at most: ${most}`,
        );
        noneSlow();
      });

      await step("10 back/forward navigations with the cache on, each under 2 s, restored and live again", async () => {
        const p = await ctx.newPage();
        p.on("pageerror", (e) => pageErrors.push(e));
        await p.goto(`${candidate("svc-01")}#token=${encodeURIComponent(operator)}`);
        await rendered(p, "svc-01");
        // Documents of their own (not links inside the app): each page left
        // is kept in the cache.
        const path = ["svc-01", "svc-02", "svc-03", "svc-04", "svc-02", "svc-03"];
        for (const id of path.slice(1)) {
          await p.goto(candidate(id));
          await rendered(p, id);
        }
        const times = [];
        const moves = [...Array(5).fill(-1), ...Array(5).fill(1)];
        let at = path.length - 1;
        for (const move of moves) {
          at += move;
          const id = path[at];
          times.push(await timed(`${move < 0 ? "back" : "forward"} to ${id}`, async () => {
            await (move < 0 ? p.goBack({ waitUntil: "commit" }) : p.goForward({ waitUntil: "commit" }));
            await rendered(p, id);
          }));
          const restored = await p.evaluate(() => window.__restored);
          if (!restored) {
            const why = await p.evaluate(() => JSON.stringify(performance.getEntriesByType("navigation")[0]?.notRestoredReasons));
            throw new Error(`${id} was not restored from the back/forward cache: ${why}`);
          }
          // Back from the cache, the page follows the feed again.
          await p.locator(".eventlog").getByText("● live").waitFor({ timeout: 5_000 });
        }
        budget("back and forward");
        console.log(`MEASURE 10 back/forward navigations (from the cache): ${times.join(", ")} ms; streams open at most: ${most}`);
        noneSlow();
      });
      await ctx.close();
    } finally {
      await cached.close();
    }
  }

  // Measured, not asserted: a Migration of 10,000 Candidates.
  await step("measure a Migration of 10,000 Candidates", async () => {
    await call(loom, "/loom.v1.RegistryService/Announce", {
      migration: {
        id: "big-fleet",
        name: "Big fleet",
        steps: [{ name: "touch", type: "noop" }],
        migratorUrl: loom.exampleURL,
      },
    });
    for (let b = 0; b < 10; b++) {
      const candidates = Array.from({ length: 1000 }, (_, i) => ({
        id: `team-${String(b).padStart(2, "0")}/svc-${String(i).padStart(4, "0")}`,
        kind: i % 3 ? "service" : "library",
        metadata: { team: `team-${b}` },
      }));
      await call(loom, "/loom.v1.DiscoveryService/SubmitCandidates", { migrationId: "big-fleet", candidates, round: "r1" });
    }
    const began = Date.now();
    await page.goto(`${origin}/m/big-fleet`);
    await page.getByText("10000 Candidates match").waitFor({ timeout: 30_000 });
    await page.getByRole("link", { name: "team-00/svc-0000" }).waitFor();
    const firstRender = Date.now() - began;
    const t0 = Date.now();
    await page.getByLabel("Id starts with").fill("team-07/svc-09");
    await page.getByText(/^100 Candidates match/).waitFor();
    const filterChange = Date.now() - t0;
    const t1 = Date.now();
    await page.getByRole("button", { name: /Last change/ }).click();
    await page.waitForURL(/order=last_change/);
    await page.locator("table.grid[aria-busy=false]").waitFor();
    const sortChange = Date.now() - t1;
    await shot("11-big-fleet");
    console.log(`MEASURE first render of a Migration of 10,000 Candidates: ${firstRender} ms`);
    console.log(`MEASURE filter change (id prefix, 100 of 10,000): ${filterChange} ms; sort change: ${sortChange} ms`);
  });

  // A rollout of the 100 Candidates of big-fleet whose id starts with
  // team-03/svc-00, paced at 6 starts a minute so that it is still starting
  // when paused. (big-fleet's `noop` step has no handler in the example
  // Migrator: its Runs stay in flight, failed or retrying, which is all the
  // rollout needs here; pausing on failures is off.)
  let rolloutURL = "";
  await step("select all matching a filter, start a rollout from the dialog", async () => {
    await page.goto(`${origin}/m/big-fleet?q=team-03/svc-00`);
    await page.getByText(/^100 Candidates match/).waitFor({ timeout: 15_000 });
    await page.getByRole("checkbox", { name: "Select every Candidate on this page" }).check();
    await page.getByText("All 50 Candidates on this page are selected.").waitFor();
    await page.getByRole("button", { name: "Select all 100 matching this filter" }).click();
    await page.getByText("All 100 Candidates matching this filter are selected.").waitFor();
    await page.getByRole("toolbar", { name: "Bulk actions" }).getByRole("button", { name: "Start rollout…" }).click();
    const dialog = page.getByRole("dialog", { name: "Start a rollout of 100 Candidates" });
    await dialog.waitFor();
    // PreviewSelection: the filter covers 100 Candidates, none misses an
    // input (big-fleet needs none).
    await dialog.getByTestId("preview-count").filter({ hasText: /^100$/ }).waitFor({ timeout: 15_000 });
    await dialog.getByLabel(/^Max in flight/).fill("2");
    await dialog.getByLabel(/^Max starts per minute/).fill("6");
    await dialog.getByLabel(/Pause by itself/).uncheck();
    await shot("15-start-rollout");
    await dialog.getByRole("button", { name: "Start rollout of 100 Candidates" }).click();
    await page.waitForURL(/\/m\/big-fleet\/r\/ro-[0-9a-f]{12}$/, { timeout: 15_000 });
    rolloutURL = page.url();
    await page.getByRole("heading", { name: /^Rollout ro-[0-9a-f]{12}$/ }).waitFor();
  });

  const tile = (label) => page.getByLabel(label, { exact: true }).locator(".value");
  await step("the rollout's progress, live; paused, no Run starts even with its pacing lifted", async () => {
    await page.getByText("● live").waitFor({ timeout: 15_000 });
    await page.locator(".page-head .badge-running").first().waitFor();
    if ((await tile("planned").innerText()) !== "100") throw new Error(`planned: ${await tile("planned").innerText()}`);
    // Runs start without a reload.
    await page.waitForFunction(() => Number(document.querySelector('[aria-label="started"] .value')?.textContent) >= 1, null, {
      timeout: 30_000,
    });
    await shot("16-rollout-running");
    // PauseRollout answers once the rollout has stopped starting: no Run
    // may start after its answer, which counts the Runs started before.
    const paused = page.waitForResponse((r) => r.url().endsWith("/loom.v1.RolloutService/PauseRollout"));
    await page.getByRole("group", { name: "Rollout actions" }).getByRole("button", { name: "Pause…" }).click();
    const pauseDialog = page.getByRole("dialog", { name: /^Pause rollout/ });
    await pauseDialog.getByRole("textbox").fill("e2e: hold the rest");
    await pauseDialog.getByRole("button", { name: "Pause", exact: true }).click();
    const { rollout: atPause } = await (await paused).json();
    if (atPause.state !== "ROLLOUT_STATE_PAUSED") throw new Error(`the pause answered ${atPause.state}`);
    const started = atPause.progress?.started ?? 0;
    await page.getByRole("button", { name: "Resume…" }).waitFor({ timeout: 5_000 });
    await page.locator(".page-head .badge-paused").first().waitFor();
    await page.getByText("e2e: hold the rest").waitFor();
    // Lift what else holds starts back (pacing, max in flight): were it
    // running, the rollout would start Runs at once, without waiting for a
    // pacing interval. UpdateRollout answers once the rollout acted on it
    // with no batch of starts in flight, so its answer counts any Run
    // started despite the pause.
    const rolloutId = new URL(rolloutURL).pathname.split("/").pop();
    const { rollout: lifted } = await call(
      loom,
      "/loom.v1.RolloutService/UpdateRollout",
      { migrationId: "big-fleet", rolloutId, settings: { maxInFlight: 10, maxStartsPerMinute: 0 }, updateMask: ["max_in_flight", "max_starts_per_minute"] },
      operator,
    );
    if (lifted.state !== "ROLLOUT_STATE_PAUSED" || (lifted.progress?.started ?? 0) !== started) {
      throw new Error(`paused with ${started} started; with its pacing lifted: ${lifted.state}, ${lifted.progress?.started} started`);
    }
    // The page follows, live: the new settings, the same count.
    const setting = (name) =>
      page.getByRole("region", { name: "Settings" }).locator("div", { has: page.locator("dt", { hasText: new RegExp(`^${name}$`) }) }).locator("dd");
    await setting("max starts per minute").filter({ hasText: /^no limit$/ }).waitFor({ timeout: 10_000 });
    await setting("max in flight").filter({ hasText: /^10$/ }).waitFor();
    if ((await tile("started").innerText()) !== String(started)) throw new Error(`started ${started} at the pause, ${await tile("started").innerText()} shown after`);
    await shot("17-rollout-paused");
    // Resumed (saying why, in its dialog), it starts Runs at once: what the
    // pause held back.
    await page.getByRole("button", { name: "Resume…" }).click();
    const resumeDialog = page.getByRole("dialog", { name: /^Resume rollout/ });
    await resumeDialog.getByRole("textbox").fill("e2e: carry on");
    await resumeDialog.getByRole("button", { name: "Resume", exact: true }).click();
    await page.locator(".page-head .badge-running").first().waitFor({ timeout: 5_000 });
    await page.getByText("e2e: carry on").waitFor();
    await page.waitForFunction((n) => Number(document.querySelector('[aria-label="started"] .value')?.textContent) > n, started, {
      timeout: 30_000,
    });
    // The history, in time order: exactly the Runs counted at the pause
    // started before the resume, and more after it.
    const { events = [] } = await call(
      loom,
      "/loom.v1.HistoryService/ListEvents",
      { migrationId: "big-fleet", kinds: ["EVENT_KIND_RUN_STARTED", "EVENT_KIND_ROLLOUT_PAUSED", "EVENT_KIND_ROLLOUT_RESUMED"], pageSize: 1000 },
      operator,
    );
    const kinds = events.map((e) => e.kind).reverse(); // newest first in the listing
    const resumedEvent = events.find((e) => e.kind === "EVENT_KIND_ROLLOUT_RESUMED");
    if (resumedEvent?.details?.reason !== "e2e: carry on") throw new Error(`the resume's event: ${JSON.stringify(resumedEvent)}`);
    const pausedAt = kinds.indexOf("EVENT_KIND_ROLLOUT_PAUSED");
    const resumedAt = kinds.indexOf("EVENT_KIND_ROLLOUT_RESUMED");
    if (pausedAt < 0 || resumedAt < pausedAt) throw new Error(`history: ${kinds.join(" ")}`);
    const runsStarted = (ks) => ks.filter((k) => k === "EVENT_KIND_RUN_STARTED").length;
    if (runsStarted(kinds.slice(0, resumedAt)) !== started || runsStarted(kinds.slice(resumedAt)) === 0) {
      throw new Error(`${started} Runs started when the pause answered; the history: ${kinds.join(" ")}`);
    }
  });

  await step("cancel the rollout with its Runs; the Migration lists it", async () => {
    await page.getByRole("button", { name: "Cancel…" }).click();
    const dialog = page.getByRole("dialog", { name: /^Cancel rollout ro-/ });
    await dialog.getByLabel("Reason").fill("e2e done");
    await dialog.getByLabel(/also cancel its \d+ Runs in flight/).check();
    await dialog.getByRole("button", { name: "Cancel rollout" }).click();
    await page.locator(".page-head .badge-cancelled").first().waitFor({ timeout: 30_000 });
    await page.getByText("e2e done").waitFor();
    const id = new URL(rolloutURL).pathname.split("/").pop();
    await page.goto(`${origin}/m/big-fleet?tab=rollouts`);
    await page.getByRole("link", { name: id }).waitFor();
  });

  if (pageErrors.length) throw new Error(`errors in the page: ${pageErrors.join("\n")}`);
} catch (err) {
  failed = true;
  if (!results.length) console.log(err);
  console.log("--- loom-dev output ---\n" + loom.logs().slice(-4000));
} finally {
  await browser?.close();
  loom.proc.kill("SIGINT");
  await new Promise((r) => loom.proc.once("exit", r));
  idp.proc.kill();
  rmSync(work, { recursive: true, force: true });
}
console.log(`${results.filter((r) => r.ok).length}/${results.length} steps passed; screenshots in ${shots}`);
process.exit(failed ? 1 : 0);
