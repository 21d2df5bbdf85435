package protoconv

import (
	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/server/internal/migration"
)

var rolloutStates = map[migration.RolloutState]loomv1.RolloutState{
	migration.RolloutRunning:          loomv1.RolloutState_ROLLOUT_STATE_RUNNING,
	migration.RolloutAwaitingApproval: loomv1.RolloutState_ROLLOUT_STATE_AWAITING_APPROVAL,
	migration.RolloutPaused:           loomv1.RolloutState_ROLLOUT_STATE_PAUSED,
	migration.RolloutCompleted:        loomv1.RolloutState_ROLLOUT_STATE_COMPLETED,
	migration.RolloutCancelled:        loomv1.RolloutState_ROLLOUT_STATE_CANCELLED,
}

// RolloutToProto renders a rollout.
func RolloutToProto(r migration.Rollout) *loomv1.Rollout {
	p := &loomv1.Rollout{
		Id:            r.ID,
		MigrationId:   r.MigrationID,
		State:         rolloutStates[r.State],
		StateReason:   r.StateReason,
		StateActor:    r.StateActor,
		DefaultInputs: r.DefaultInputs,
		Settings:      RolloutSettingsToProto(r.Settings),
		CreatedBy:     r.CreatedBy,
		CreateTime:    TimeToProto(r.CreateTime),
		UpdateTime:    TimeToProto(r.UpdateTime),
		EndTime:       TimeToProto(r.EndTime),
		Version:       r.Version,
		Progress: &loomv1.RolloutProgress{
			Planned:       int32(r.Progress.Planned),
			Started:       int32(r.Progress.Started),
			InFlight:      int32(max(r.Progress.InFlight, 0)),
			Completed:     int32(r.Progress.Completed),
			Failed:        int32(max(r.Progress.Failed, 0)),
			Cancelled:     int32(r.Progress.Cancelled),
			Skipped:       int32(r.Progress.Skipped),
			Waiting:       int32(r.Progress.Waiting()),
			HeldBy:        r.Progress.HeldBy,
			SkippedReason: r.Progress.SkippedReason,
			StepFailures:  int32(r.Progress.StepFailures),
			CanarySize:    int32(r.Settings.CanarySize),
			CanaryPassed:  r.Progress.CanaryPassed,
		},
	}
	if f := r.Filter; f != nil {
		p.Selection = &loomv1.CandidateSelection{Filter: &loomv1.CandidateFilter{
			Status:            CandidateStatusToProto(f.Status),
			Kind:              f.Kind,
			CurrentStep:       f.CurrentStep,
			CurrentStepStatus: StepStatusToProto(f.CurrentStepStatus),
			IdPrefix:          f.IDPrefix,
			Metadata:          f.Metadata,
		}}
	}
	return p
}

// RolloutSettingsToProto renders a rollout's settings.
func RolloutSettingsToProto(s migration.RolloutSettings) *loomv1.RolloutSettings {
	p := &loomv1.RolloutSettings{
		MaxInFlight:         int32(s.MaxInFlight),
		CanarySize:          int32(s.CanarySize),
		AfterCanary:         loomv1.CanaryContinuation_CANARY_CONTINUATION_APPROVAL,
		MaxStartsPerMinute:  int32(s.MaxStartsPerMinute),
		MaxOpenPullRequests: int32(s.MaxOpenPRs),
	}
	if s.AfterCanary == migration.AfterCanaryAutomatic {
		p.AfterCanary = loomv1.CanaryContinuation_CANARY_CONTINUATION_AUTOMATIC
	}
	if !s.PauseOnFailures.Off() {
		p.PauseOnFailures = &loomv1.FailureThreshold{Failures: int32(s.PauseOnFailures.Failures), Window: int32(s.PauseOnFailures.Window)}
	}
	return p
}

// RolloutSettingsFromProto reads a rollout's settings.
func RolloutSettingsFromProto(p *loomv1.RolloutSettings) migration.RolloutSettings {
	s := migration.RolloutSettings{
		MaxInFlight:        int(p.GetMaxInFlight()),
		CanarySize:         int(p.GetCanarySize()),
		AfterCanary:        migration.AfterCanaryApproval,
		MaxStartsPerMinute: int(p.GetMaxStartsPerMinute()),
		MaxOpenPRs:         int(p.GetMaxOpenPullRequests()),
	}
	if p.GetAfterCanary() == loomv1.CanaryContinuation_CANARY_CONTINUATION_AUTOMATIC {
		s.AfterCanary = migration.AfterCanaryAutomatic
	}
	if t := p.GetPauseOnFailures(); t != nil {
		s.PauseOnFailures = migration.FailureThreshold{Failures: int(t.GetFailures()), Window: int(t.GetWindow())}
	}
	return s
}

// SelectionPreviewToProto renders a selection's preview.
func SelectionPreviewToProto(p migration.SelectionPreview) *loomv1.PreviewSelectionResponse {
	out := &loomv1.PreviewSelectionResponse{
		Count:              int32(p.Count),
		MissingInputsCount: int32(p.MissingInputsCount),
		NotStartableCount:  int32(p.NotStartableCount),
	}
	for _, m := range p.MissingInputs {
		out.MissingInputs = append(out.MissingInputs, &loomv1.CandidateMissingInputs{CandidateId: m.CandidateID, Missing: m.Missing})
	}
	for _, s := range p.Samples {
		out.Samples = append(out.Samples, &loomv1.CandidatePreview{CandidateId: s.CandidateID, Steps: StepPreviewsToProto(s.Steps), Error: s.Error})
	}
	return out
}
