import { afterEach } from "vitest";
import { cleanup } from "@testing-library/react";

// jsdom has no matchMedia, which uPlot asks for when it loads.
if (!window.matchMedia) {
  window.matchMedia = (query: string) =>
    ({
      matches: false,
      media: query,
      onchange: null,
      addListener() {},
      removeListener() {},
      addEventListener() {},
      removeEventListener() {},
      dispatchEvent: () => false,
    }) as MediaQueryList;
}

afterEach(() => cleanup());

// jsdom has no canvas either: uPlot's charts draw into a 2D context (and
// paths) that do nothing; their labels, which the tests read, are the
// page's own.
if (typeof globalThis.Path2D === "undefined") {
  globalThis.Path2D = class {
    constructor() {
      return new Proxy(this, { get: (t, k) => (k in t ? t[k as keyof typeof t] : () => {}) });
    }
  } as unknown as typeof Path2D;
}
HTMLCanvasElement.prototype.getContext = function (this: HTMLCanvasElement) {
  const state: Record<string | symbol, unknown> = { canvas: this };
  const ctx: object = new Proxy(state, {
    get: (t, k) => (k in t ? t[k] : k === "measureText" ? () => ({ width: 0 }) : () => ctx),
    set: (t, k, v) => {
      t[k] = v;
      return true;
    },
  });
  return ctx;
} as unknown as HTMLCanvasElement["getContext"];
