import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { EventSchema, type Event, type WatchEventsResponse } from "../gen/loom/v1/history_service_pb";
import { follow } from "../stream";

// LiveHub is the one live stream of a browser: the fleet-wide WatchEvents
// feed, held by one tab (the leader) for every tab of the same sign-in, and
// what every page's live view is derived from. A browser allows six
// HTTP/1.1 connections per server; with a stream per page (fleet feed,
// WatchRun, WatchEvents) three tabs used them all and the next page's
// unary calls waited forever. With the hub a browser holds one long-lived
// connection, however many tabs are open.
//
// The leader is elected with the Web Locks API: every tab asks for the
// same lock, the one holding it opens the feed and posts its events on a
// BroadcastChannel, the others wait in line for the lock. When the leader
// goes (closed, frozen, or kept in the back/forward cache) its lock is
// released and the next tab in line opens the feed. Not a SharedWorker:
// the sign-in token lives in each tab's sessionStorage, which a worker
// cannot read, and Chromium on Android has no SharedWorker. Without Web
// Locks or BroadcastChannel each tab holds its own feed (one stream per
// tab: still bounded by the tabs, no longer by the pages).
//
// The feed cannot resume (the fleet-wide WatchEvents starts "now"), so a
// gap is closed by reading again: each stream the leader opens has an
// epoch, and a tab that was live under another epoch (or was suspended)
// tells its listeners null, "read everything again", when the feed is live
// again.

export type FeedListener = (e: Event | null) => void; // null: read everything again
export type StatusListener = (live: boolean) => void;

// What goes over the BroadcastChannel. Events travel as protobuf binary:
// structured clone would keep a message's fields but not its type.
type Wire = { t: "event"; b: Uint8Array } | { t: "status"; live: boolean; epoch: string } | { t: "hello" };

export interface ChannelLike {
  postMessage(m: unknown): void;
  onmessage: ((ev: MessageEvent) => void) | null;
  close(): void;
}

export interface LocksLike {
  request(name: string, options: { signal?: AbortSignal }, callback: () => Promise<void>): Promise<unknown>;
}

export interface HubEnv {
  locks?: LocksLike;
  channel?: (name: string) => ChannelLike;
}

// browserEnv is what the browser offers (jsdom and older browsers: no
// locks), the same object every time.
let env: HubEnv | undefined;
export function browserEnv(): HubEnv {
  if (!env) {
    const locks = typeof navigator !== "undefined" ? (navigator as Navigator & { locks?: LocksLike }).locks : undefined;
    const channel = typeof BroadcastChannel !== "undefined" ? (name: string) => new BroadcastChannel(name) : undefined;
    env = { locks, channel };
  }
  return env;
}

let epochs = 0;
const newEpoch = () => `${Date.now().toString(36)}.${Math.random().toString(36).slice(2)}.${++epochs}`;

export class LiveHub {
  private readonly listeners = new Set<FeedListener>();
  private readonly statusListeners = new Set<StatusListener>();
  private live = false;
  // The epoch of the stream this tab last followed live: undefined before
  // the first, "" after a suspension (whatever the next epoch, read again).
  private epoch: string | undefined;
  private session: AbortController | undefined;
  private chan: ChannelLike | undefined;
  // While leading: what the feed is, to answer a tab that says hello.
  private leading: { live: boolean; epoch: string } | undefined;
  // Opened by the leader (and counted by the tests).
  streams = 0;

  constructor(
    private readonly open: (signal: AbortSignal) => AsyncIterable<WatchEventsResponse>,
    private readonly env: HubEnv,
    private readonly name: string,
    // giveUp says a break is for good (signed out): the leader stops and
    // lets another tab lead.
    private readonly giveUp: (err: unknown) => boolean = () => false,
  ) {}

  subscribe(l: FeedListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  onStatus(l: StatusListener): () => void {
    this.statusListeners.add(l);
    return () => this.statusListeners.delete(l);
  }

  isLive(): boolean {
    return this.live;
  }

  isLeader(): boolean {
    return this.leading !== undefined;
  }

  // start joins the browser's feed: leads it, or listens to the leader.
  start(): void {
    if (this.session) return;
    const ctl = new AbortController();
    this.session = ctl;
    const { locks, channel } = this.env;
    if (!locks || !channel) {
      void this.lead(ctl.signal, undefined);
      return;
    }
    const chan = channel(this.name);
    this.chan = chan;
    chan.onmessage = (ev) => this.receive(ev.data as Wire);
    chan.postMessage({ t: "hello" } satisfies Wire);
    // The lock is held for as long as the callback's promise is pending: it
    // settles the moment the session ends, not once the stream has wound
    // down, so that the page holds no lock when the browser decides whether
    // to keep it in the back/forward cache. A request still waiting is
    // dropped by the abort (and rejects: ignored).
    const ended = new Promise<void>((resolve) => ctl.signal.addEventListener("abort", () => resolve(), { once: true }));
    locks.request(this.name, { signal: ctl.signal }, () => Promise.race([this.lead(ctl.signal, chan), ended])).catch(() => {});
  }

  // stop leaves the feed: the stream closes, the lock goes to the next tab,
  // nothing is heard until start. Used when the page is hidden in the
  // back/forward cache or frozen, and when it unmounts.
  stop(): void {
    const ctl = this.session;
    if (!ctl) return;
    this.session = undefined;
    if (this.leading && this.chan) this.chan.postMessage({ t: "status", live: false, epoch: this.leading.epoch } satisfies Wire);
    this.leading = undefined;
    ctl.abort();
    this.chan?.close();
    this.chan = undefined;
    // Whatever the feed is when this tab is back, it missed events.
    if (this.epoch !== undefined) this.epoch = "";
    this.setLive(false);
  }

  // lead follows the fleet feed for every tab until signal aborts or the
  // feed gives up.
  private async lead(signal: AbortSignal, chan: ChannelLike | undefined): Promise<void> {
    if (signal.aborted) return;
    this.leading = { live: false, epoch: "" };
    const status = (live: boolean, epoch: string) => {
      if (signal.aborted) return;
      this.leading = { live, epoch };
      const m: Wire = { t: "status", live, epoch };
      chan?.postMessage(m);
      this.receive(m);
    };
    let epoch = "";
    let gaveUp = false;
    await follow(
      (s) => {
        this.streams++;
        return this.open(s);
      },
      (res) => {
        if (!epoch) {
          epoch = newEpoch();
          status(true, epoch);
        }
        if (res.update.case === "event") {
          const e = res.update.value;
          chan?.postMessage({ t: "event", b: toBinary(EventSchema, e) } satisfies Wire);
          this.deliver(e);
        }
      },
      signal,
      (err) => {
        if (signal.aborted) return true;
        if (epoch) status(false, epoch);
        epoch = "";
        if (this.giveUp(err)) return (gaveUp = true);
        return false;
      },
    );
    if (gaveUp && !signal.aborted) {
      // Returning releases the lock: a tab that can follow the feed takes
      // it; this one keeps listening.
      this.leading = undefined;
    }
  }

  private receive(m: Wire): void {
    switch (m.t) {
      case "event":
        this.deliver(fromBinary(EventSchema, m.b));
        break;
      case "status":
        if (m.live) {
          if (this.epoch !== undefined && this.epoch !== m.epoch) this.deliver(null);
          this.epoch = m.epoch;
        } else if (m.epoch !== this.epoch) {
          // An older stream's end, heard after the next one is up (tabs'
          // messages are not ordered between them).
          return;
        }
        this.setLive(m.live);
        break;
      case "hello":
        if (this.leading?.live) this.chan?.postMessage({ t: "status", live: true, epoch: this.leading.epoch } satisfies Wire);
        break;
    }
  }

  private deliver(e: Event | null): void {
    for (const l of this.listeners) l(e);
  }

  private setLive(live: boolean): void {
    if (this.live === live) return;
    this.live = live;
    for (const l of this.statusListeners) l(live);
  }
}

// followPageLifecycle stops the hub while the page is hidden in the
// back/forward cache or frozen (a page kept there with an open stream holds
// one of the browser's connections for nothing, and with a lock or a
// channel open Chromium may not keep it at all), and starts it again when
// the page is shown or resumed. pagehide without persisted is the page
// going away: stopping then hands the feed over at once.
export function followPageLifecycle(hub: LiveHub, win: Window = window, doc: Document = document): () => void {
  const stop = () => hub.stop();
  const start = () => hub.start();
  const shown = (e: PageTransitionEvent) => {
    if (e.persisted) start();
  };
  win.addEventListener("pagehide", stop);
  win.addEventListener("pageshow", shown);
  doc.addEventListener("freeze", stop);
  doc.addEventListener("resume", start);
  return () => {
    win.removeEventListener("pagehide", stop);
    win.removeEventListener("pageshow", shown);
    doc.removeEventListener("freeze", stop);
    doc.removeEventListener("resume", start);
  };
}

// channelName partitions the browser's feed by sign-in: tabs signed in
// with the same token share one; a tab signed in otherwise (another role,
// or none) follows its own, so that no tab sees events its own sign-in may
// not read. The name carries a hash of the token, never the token.
export function channelName(token: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < token.length; i++) {
    h ^= token.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return `loom.live.${(h >>> 0).toString(36)}`;
}
