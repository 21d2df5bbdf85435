import { describe, expect, it } from "vitest";
import { EventKind } from "./gen/loom/v1/history_service_pb";
import { allKinds, kindGroups, kindName, parseKind, parseTime, readFilters, withKinds } from "./historyFilters";

describe("the history filters of the URL", () => {
  it("name kinds as the enum does, lower case, and read them back, old numbers too", () => {
    expect(kindName(EventKind.STEP_FAILED)).toBe("step_failed");
    for (const k of allKinds) {
      expect(parseKind(kindName(k))).toBe(k);
      expect(parseKind(String(k))).toBe(k);
    }
    expect(parseKind("EVENT_KIND_RUN_STARTED")).toBe(EventKind.RUN_STARTED);
    expect(parseKind("Run_Started")).toBe(EventKind.RUN_STARTED);
    for (const bad of ["", "0", "19", "99", "unspecified", "nope", "7.0"]) expect(parseKind(bad)).toBe(0);
  });

  it("group every kind once", () => {
    const grouped = kindGroups.flatMap((g) => g.kinds);
    expect([...grouped].sort((a, b) => a - b)).toEqual(allKinds);
  });

  it("keep kinds once each, in the enum's order, and write them by name", () => {
    const f = readFilters(new URLSearchParams("kind=step_failed&kind=7&kind=run_started&kind=x&c=a&prefix=acme/"));
    expect(f).toMatchObject({ kinds: [EventKind.RUN_STARTED, EventKind.STEP_FAILED], candidateId: "a", candidatePrefix: "acme/" });
    const next = withKinds(new URLSearchParams("m=go&kind=7"), [EventKind.STEP_FAILED, EventKind.MIGRATION_ANNOUNCED]);
    expect(next.toString()).toBe("m=go&kind=migration_announced&kind=step_failed");
  });

  it("read times relative to now or as ISO times", () => {
    const now = Date.UTC(2026, 11, 7, 12);
    expect(parseTime("1h", now)).toBe(now - 3_600_000);
    expect(parseTime("30m", now)).toBe(now - 1_800_000);
    expect(parseTime("7d", now)).toBe(now - 7 * 86_400_000);
    expect(parseTime("2026-12-07T09:02:00Z", now)).toBe(Date.UTC(2026, 11, 7, 9, 2));
    expect(parseTime("", now)).toBeUndefined();
    expect(parseTime(null, now)).toBeUndefined();
    expect(parseTime("yesterday", now)).toBeUndefined();
  });
});
