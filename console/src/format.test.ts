import { describe, expect, it } from "vitest";
import { ago, duration, parseEnum, stepStatusLabel } from "./format";
import { StepStatus } from "./gen/loom/v1/run_pb";

describe("format", () => {
  it("labels enums as the domain model spells them", () => {
    expect(stepStatusLabel(StepStatus.AWAITING_REVIEW)).toBe("awaiting_review");
    expect(parseEnum(StepStatus, "open")).toBe(StepStatus.OPEN);
    expect(parseEnum(StepStatus, "nonsense")).toBe(0);
  });
  it("prints durations in the unit that reads best", () => {
    expect(duration({ seconds: 0n, nanos: 250_000_000 } as never)).toBe("250 ms");
    expect(duration({ seconds: 90n, nanos: 0 } as never)).toBe("1.5 min");
    expect(duration(undefined)).toBe("—");
  });
  it("says how long ago", () => {
    const now = Date.parse("2026-01-01T00:10:00Z");
    expect(ago({ seconds: BigInt(Date.parse("2026-01-01T00:00:00Z") / 1000), nanos: 0 } as never, now)).toBe("10m ago");
  });
});
