import type { StepResult } from "../gen/loom/v1/run_pb";
import { time } from "../format";

// DispatchTrouble says, on a step, that Loom cannot hand it to its Migrator
// (tries so far, the last error, the next try), and that it was dispatched
// again because its Migrator held it past its lease without a report.
export function DispatchTrouble({ step }: { step: StepResult }) {
  return (
    <>
      {step.dispatchFailures > 0 && (
        <div className="dispatch-trouble" role="alert" data-dispatch-failures={step.dispatchFailures}>
          Loom cannot hand this step to its Migrator: {step.dispatchFailures}{" "}
          {step.dispatchFailures === 1 ? "try" : "tries"} failed, the last with “{step.lastDispatchError}”.
          {step.nextDispatchTime && <> Next try {time(step.nextDispatchTime)}.</>}
        </div>
      )}
      {step.dispatchCount > 1 && (
        <div className="muted small" data-dispatch-count={step.dispatchCount}>
          dispatched {step.dispatchCount} times: the Migrator held it past its lease without a report
        </div>
      )}
    </>
  );
}
