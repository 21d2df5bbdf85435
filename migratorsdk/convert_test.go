package migratorsdk

import (
	"testing"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
)

// Every step status of the API, skipped included, has its SDK status and
// back: a Run shown to a Migrator never has a status it cannot name.
func TestEveryStepStatusConverts(t *testing.T) {
	values := loomv1.StepStatus(0).Descriptor().Values()
	for i := range values.Len() {
		p := loomv1.StepStatus(values.Get(i).Number())
		if p == loomv1.StepStatus_STEP_STATUS_UNSPECIFIED {
			continue
		}
		s := statusFromProto(p)
		if s == "" || statusToProto(s) != p {
			t.Errorf("%v converts to %q and back to %v", p, s, statusToProto(s))
		}
	}
	if statusFromProto(loomv1.StepStatus_STEP_STATUS_SKIPPED) != StatusSkipped {
		t.Fatal("skipped is not StatusSkipped")
	}
}
