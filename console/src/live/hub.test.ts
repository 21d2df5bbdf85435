import { describe, expect, it, vi } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  EventKind,
  EventSchema,
  WatchEventsResponseSchema,
  type Event,
  type WatchEventsResponse,
} from "../gen/loom/v1/history_service_pb";
import { channelName, followPageLifecycle, LiveHub, type ChannelLike, type HubEnv, type LocksLike } from "./hub";

// A server's fleet feed: every stream opened gets a heartbeat at once, then
// what emit sends, until the client aborts it. fail makes the next opens
// throw.
class Server {
  opened = 0;
  open = new Set<(m: WatchEventsResponse) => void>();
  failWith: unknown;
  stream = (signal: AbortSignal): AsyncIterable<WatchEventsResponse> => {
    this.opened++;
    const failWith = this.failWith;
    const open = this.open;
    return (async function* () {
      if (failWith) throw failWith;
      const queue = [create(WatchEventsResponseSchema, { update: { case: "heartbeat", value: {} } })];
      let wake = () => {};
      const push = (m: WatchEventsResponse) => {
        queue.push(m);
        wake();
      };
      open.add(push);
      try {
        while (!signal.aborted) {
          while (queue.length) yield queue.shift()!;
          await new Promise<void>((r) => {
            wake = r;
            signal.addEventListener("abort", () => r(), { once: true });
          });
        }
      } finally {
        open.delete(push);
      }
    })();
  };
  emit(e: Event) {
    for (const push of this.open) push(create(WatchEventsResponseSchema, { update: { case: "event", value: e } }));
  }
}

// The Web Locks API as the browser keeps it: one holder per name, the
// others granted in turn; an aborted request still waiting rejects.
class Locks implements LocksLike {
  private held = new Set<string>();
  private waiting = new Map<string, { cb: () => Promise<void>; done: (v: unknown) => void; fail: (e: unknown) => void }[]>();
  request(name: string, options: { signal?: AbortSignal }, cb: () => Promise<void>): Promise<unknown> {
    return new Promise((done, fail) => {
      const q = this.waiting.get(name) ?? [];
      this.waiting.set(name, q);
      const entry = { cb, done, fail };
      q.push(entry);
      options.signal?.addEventListener("abort", () => {
        const i = q.indexOf(entry);
        if (i >= 0) {
          q.splice(i, 1);
          fail(new DOMException("aborted", "AbortError"));
        }
      });
      this.grant(name);
    });
  }
  private grant(name: string) {
    if (this.held.has(name)) return;
    const next = this.waiting.get(name)?.shift();
    if (!next) return;
    this.held.add(name);
    Promise.resolve()
      .then(next.cb)
      .then(next.done, next.fail)
      .finally(() => {
        this.held.delete(name);
        this.grant(name);
      });
  }
}

// BroadcastChannel: a message reaches every other open channel of the
// name, later, never the sender.
function channels(): (name: string) => ChannelLike {
  const open = new Set<ChannelLike & { name: string }>();
  return (name) => {
    const c: ChannelLike & { name: string } = {
      name,
      onmessage: null,
      postMessage(m) {
        for (const o of open) if (o !== c && o.name === name) setTimeout(() => open.has(o) && o.onmessage?.({ data: structuredClone(m) } as MessageEvent));
      },
      close() {
        open.delete(c);
      },
    };
    open.add(c);
    return c;
  };
}

// A tab: its hub and what its pages heard.
function tab(server: Server, env: HubEnv, name = "loom.live.test") {
  const heard: (string | null)[] = [];
  const hub = new LiveHub(server.stream, env, name, (err) => err instanceof ConnectError && err.code === Code.Unauthenticated);
  hub.subscribe((e) => heard.push(e ? e.id : null));
  return { hub, heard };
}

const event = (id: string) => create(EventSchema, { id, kind: EventKind.RUN_STARTED, migrationId: "m", candidateId: "c" });
const streamsOf = (tabs: { hub: LiveHub }[]) => tabs.reduce((n, t) => n + t.hub.streams, 0);

describe("the browser's one feed", () => {
  it("is held by one tab for all: one stream, every event heard by every tab once", async () => {
    const server = new Server();
    const env = { locks: new Locks(), channel: channels() };
    const tabs = [tab(server, env), tab(server, env), tab(server, env), tab(server, env), tab(server, env)];
    tabs.forEach((t) => t.hub.start());
    await vi.waitFor(() => expect(tabs.every((t) => t.hub.isLive())).toBe(true));
    expect(server.opened).toBe(1);
    expect(tabs.filter((t) => t.hub.isLeader())).toHaveLength(1);
    server.emit(event("1-0"));
    server.emit(event("2-0"));
    await vi.waitFor(() => expect(tabs.map((t) => t.heard)).toEqual(tabs.map(() => ["1-0", "2-0"])));
    // A tab opened later hears the feed is live from the leader.
    const late = tab(server, env);
    late.hub.start();
    await vi.waitFor(() => expect(late.hub.isLive()).toBe(true));
    expect(server.opened).toBe(1);
    tabs.concat(late).forEach((t) => t.hub.stop());
    await vi.waitFor(() => expect(server.open.size).toBe(0));
  });

  it("passes to the next tab when the leader goes; the tabs that were live read again", async () => {
    const server = new Server();
    const env = { locks: new Locks(), channel: channels() };
    const tabs = [tab(server, env), tab(server, env), tab(server, env)];
    tabs.forEach((t) => t.hub.start());
    await vi.waitFor(() => expect(tabs.every((t) => t.hub.isLive())).toBe(true));
    const leader = tabs.find((t) => t.hub.isLeader())!;
    const others = tabs.filter((t) => t !== leader);
    leader.hub.stop();
    // The next in line opens the feed; the old stream is closed first.
    await vi.waitFor(() => expect(others.filter((t) => t.hub.isLeader())).toHaveLength(1));
    await vi.waitFor(() => expect(others.every((t) => t.hub.isLive())).toBe(true));
    expect(server.opened).toBe(2);
    expect(server.open.size).toBe(1);
    // Events written between the two streams were missed: read again, once.
    expect(others.map((t) => t.heard)).toEqual([[null], [null]]);
    server.emit(event("3-0"));
    await vi.waitFor(() => expect(others.map((t) => t.heard)).toEqual([[null, "3-0"], [null, "3-0"]]));
    expect(leader.heard).toEqual([]);
  });

  it("stays out while the page is in the back/forward cache, and reads again when it is back", async () => {
    const server = new Server();
    const env = { locks: new Locks(), channel: channels() };
    const [a, b] = [tab(server, env), tab(server, env)];
    a.hub.start();
    await vi.waitFor(() => expect(a.hub.isLeader() && a.hub.isLive()).toBe(true));
    b.hub.start();
    await vi.waitFor(() => expect(b.hub.isLive()).toBe(true));
    const win = new EventTarget() as Window;
    const doc = new EventTarget() as Document;
    const detach = followPageLifecycle(b.hub, win, doc);
    const transition = (type: string, persisted: boolean) => Object.assign(new Event(type), { persisted });
    win.dispatchEvent(transition("pagehide", true));
    expect(b.hub.isLive()).toBe(false);
    server.emit(event("4-0")); // missed by b
    await vi.waitFor(() => expect(a.heard).toEqual(["4-0"]));
    win.dispatchEvent(transition("pageshow", true));
    await vi.waitFor(() => expect(b.hub.isLive()).toBe(true));
    // The leader did not change, yet b missed events: it reads again.
    expect(b.heard).toEqual([null]);
    expect(server.opened).toBe(1);
    // Frozen and resumed alike.
    doc.dispatchEvent(new Event("freeze"));
    expect(b.hub.isLive()).toBe(false);
    doc.dispatchEvent(new Event("resume"));
    await vi.waitFor(() => expect(b.heard).toEqual([null, null]));
    // The leader itself in the cache: b takes the feed over.
    const detachA = followPageLifecycle(a.hub, win, doc);
    detach();
    win.dispatchEvent(transition("pagehide", true));
    await vi.waitFor(() => expect(b.hub.isLeader() && b.hub.isLive()).toBe(true));
    expect(server.opened).toBe(2);
    expect(server.open.size).toBe(1);
    detachA();
  });

  it("is left to another tab by a leader the server signed out", async () => {
    const server = new Server();
    const env = { locks: new Locks(), channel: channels() };
    server.failWith = new ConnectError("no token", Code.Unauthenticated);
    const signedOut = tab(server, env);
    signedOut.hub.start();
    await vi.waitFor(() => expect(server.opened).toBe(1));
    server.failWith = undefined;
    const signedIn = tab(server, env);
    signedIn.hub.start();
    await vi.waitFor(() => expect(signedIn.hub.isLeader() && signedIn.hub.isLive()).toBe(true));
    expect(signedOut.hub.isLeader()).toBe(false);
    expect(server.opened).toBe(2);
  });

  it("without Web Locks or BroadcastChannel, is one stream per tab", async () => {
    const server = new Server();
    const tabs = [tab(server, {}), tab(server, { channel: channels() }), tab(server, { locks: new Locks() })];
    tabs.forEach((t) => t.hub.start());
    await vi.waitFor(() => expect(tabs.every((t) => t.hub.isLive())).toBe(true));
    expect(server.opened).toBe(3);
    server.emit(event("5-0"));
    await vi.waitFor(() => expect(tabs.map((t) => t.heard)).toEqual([["5-0"], ["5-0"], ["5-0"]]));
    expect(streamsOf(tabs)).toBe(3);
    tabs.forEach((t) => t.hub.stop());
  });

  it("is one per sign-in: tabs with another token follow their own", async () => {
    expect(channelName("a")).toBe(channelName("a"));
    expect(channelName("a")).not.toBe(channelName("b"));
    expect(channelName("secret-token")).not.toContain("secret");
    const server = new Server();
    const env = { locks: new Locks(), channel: channels() };
    const tabs = [tab(server, env, channelName("a")), tab(server, env, channelName("a")), tab(server, env, channelName("b"))];
    tabs.forEach((t) => t.hub.start());
    await vi.waitFor(() => expect(tabs.every((t) => t.hub.isLive())).toBe(true));
    expect(server.opened).toBe(2);
  });
});
