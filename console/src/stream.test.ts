import { describe, expect, it } from "vitest";
import { follow } from "./stream";

describe("follow", () => {
  it("opens a broken stream again, resuming, until told to stop", async () => {
    let opens = 0;
    const seen: number[] = [];
    const breaks: unknown[] = [];
    await follow(
      async function* () {
        opens++;
        if (opens === 1) throw new Error("connection reset");
        yield seen.length + 1;
        yield seen.length + 1;
      },
      (m) => seen.push(m),
      new AbortController().signal,
      (err) => {
        breaks.push(err);
        return err === undefined; // a clean end: done
      },
    );
    expect(opens).toBe(2);
    expect(seen).toEqual([1, 2]);
    expect(breaks).toEqual([new Error("connection reset"), undefined]);
  });
  it("stops when its signal is aborted", async () => {
    const ctl = new AbortController();
    let opens = 0;
    await follow(
      async function* () {
        opens++;
        ctl.abort();
        throw new Error("aborted");
      },
      () => {},
      ctl.signal,
    );
    expect(opens).toBe(1);
  });
});
