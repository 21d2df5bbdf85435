// Package protoconv converts between the API's protobuf messages (loom.v1)
// and the domain types of package migration, in both directions, for the
// API handlers and for the Migrator client alike. Output-only fields of
// requests are dropped here, so no handler can store them.
package protoconv

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/server/internal/migration"
)

// MigrationFromProto reads a Migration definition; output-only fields are dropped.
func MigrationFromProto(p *loomv1.Migration) migration.Migration {
	return migration.Migration{
		ID:             p.GetId(),
		Name:           p.GetName(),
		Description:    p.GetDescription(),
		Overview:       p.GetOverview(),
		Steps:          StepsFromProto(p.GetSteps()),
		RequiredInputs: InputDefsFromProto(p.GetRequiredInputs()),
		MigratorURL:    p.GetMigratorUrl(),
		DispatchLease:  p.GetDispatchLease().AsDuration(),
		LeaseByType:    leasesFromProto(p.GetDispatchLeaseByType()),

		ViewersMayPreview: p.GetViewersMayPreview(),
	}
}

func leasesFromProto(p map[string]*durationpb.Duration) map[string]time.Duration {
	if len(p) == 0 {
		return nil
	}
	out := make(map[string]time.Duration, len(p))
	for k, d := range p {
		out[k] = d.AsDuration()
	}
	return out
}

func leasesToProto(m map[string]time.Duration) map[string]*durationpb.Duration {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]*durationpb.Duration, len(m))
	for k, d := range m {
		out[k] = durationpb.New(d)
	}
	return out
}

// optDuration renders a duration, nil for zero (unset).
func optDuration(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}

// MigrationToProto renders a stored Migration.
func MigrationToProto(m migration.Migration) *loomv1.Migration {
	return &loomv1.Migration{
		Id:                  m.ID,
		Name:                m.Name,
		Description:         m.Description,
		Overview:            m.Overview,
		Steps:               StepsToProto(m.Steps),
		RequiredInputs:      InputDefsToProto(m.RequiredInputs),
		MigratorUrl:         m.MigratorURL,
		CreateTime:          TimeToProto(m.CreateTime),
		UpdateTime:          TimeToProto(m.UpdateTime),
		CandidateCounts:     CountsToProto(m.Counts),
		CandidateKinds:      m.Kinds,
		DispatchLease:       optDuration(m.DispatchLease),
		DispatchLeaseByType: leasesToProto(m.LeaseByType),
		ViewersMayPreview:   m.ViewersMayPreview,
	}
}

// CountsToProto renders Candidate counts.
func CountsToProto(c migration.CandidateCounts) *loomv1.CandidateCounts {
	return &loomv1.CandidateCounts{
		NotStarted: c.NotStarted,
		Running:    c.Running,
		Completed:  c.Completed,
		Total:      c.Total(),
	}
}

// StepsFromProto reads step definitions.
func StepsFromProto(ps []*loomv1.StepDefinition) []migration.StepDefinition {
	if len(ps) == 0 {
		return nil
	}
	out := make([]migration.StepDefinition, len(ps))
	for i, p := range ps {
		out[i] = migration.StepDefinition{
			Name:          p.GetName(),
			Type:          p.GetType(),
			MigratorApp:   p.GetMigratorApp(),
			Config:        p.GetConfig(),
			Description:   p.GetDescription(),
			ReportTimeout: p.GetReportTimeout().AsDuration(),
		}
	}
	return out
}

// StepsToProto renders step definitions.
func StepsToProto(steps []migration.StepDefinition) []*loomv1.StepDefinition {
	out := make([]*loomv1.StepDefinition, len(steps))
	for i, s := range steps {
		out[i] = &loomv1.StepDefinition{
			Name:        s.Name,
			Type:        s.Type,
			MigratorApp: s.MigratorApp,
			Config:      s.Config,
			Description: s.Description,
		}
		if s.ReportTimeout > 0 {
			out[i].ReportTimeout = durationpb.New(s.ReportTimeout)
		}
	}
	return out
}

// InputDefsFromProto reads input definitions.
func InputDefsFromProto(ps []*loomv1.InputDefinition) []migration.InputDefinition {
	if len(ps) == 0 {
		return nil
	}
	out := make([]migration.InputDefinition, len(ps))
	for i, p := range ps {
		out[i] = migration.InputDefinition{Name: p.GetName(), Label: p.GetLabel(), Description: p.GetDescription()}
	}
	return out
}

// InputDefsToProto renders input definitions.
func InputDefsToProto(defs []migration.InputDefinition) []*loomv1.InputDefinition {
	out := make([]*loomv1.InputDefinition, len(defs))
	for i, d := range defs {
		out[i] = &loomv1.InputDefinition{Name: d.Name, Label: d.Label, Description: d.Description}
	}
	return out
}

// CandidateFromProto reads a discovered Candidate; output-only fields are dropped.
func CandidateFromProto(p *loomv1.Candidate) migration.Candidate {
	return migration.Candidate{
		ID:       p.GetId(),
		Kind:     p.GetKind(),
		Metadata: p.GetMetadata(),
		Files:    FileGroupsFromProto(p.GetFiles()),
		Steps:    StepsFromProto(p.GetSteps()),
	}
}

// CandidateToProto renders a stored Candidate.
func CandidateToProto(c migration.Candidate) *loomv1.Candidate {
	return &loomv1.Candidate{
		Id:                 c.ID,
		Kind:               c.Kind,
		Metadata:           c.Metadata,
		Files:              FileGroupsToProto(c.Files),
		Steps:              StepsToProto(c.Steps),
		Status:             CandidateStatusToProto(c.Status),
		Inputs:             c.Inputs,
		MigrationId:        c.MigrationID,
		NoLongerDiscovered: c.NoLongerDiscovered,
		CreateTime:         TimeToProto(c.CreateTime),
		UpdateTime:         TimeToProto(c.UpdateTime),
		LastChangeTime:     TimeToProto(c.LastChangeTime),
	}
}

// CandidateProgressToProto renders where a Candidate's Run stands.
func CandidateProgressToProto(p migration.CandidateProgress) *loomv1.CandidateProgress {
	return &loomv1.CandidateProgress{
		RunStatus:         runStatuses[p.RunStatus],
		CurrentStep:       p.CurrentStep,
		CurrentStepStatus: StepStatusToProto(p.CurrentStepStatus),
	}
}

var candidateOrders = map[loomv1.CandidateOrder]migration.CandidateOrder{
	loomv1.CandidateOrder_CANDIDATE_ORDER_UNSPECIFIED:  migration.OrderByID,
	loomv1.CandidateOrder_CANDIDATE_ORDER_ID:           migration.OrderByID,
	loomv1.CandidateOrder_CANDIDATE_ORDER_STATUS:       migration.OrderByStatus,
	loomv1.CandidateOrder_CANDIDATE_ORDER_CURRENT_STEP: migration.OrderByCurrentStep,
	loomv1.CandidateOrder_CANDIDATE_ORDER_LAST_CHANGE:  migration.OrderByLastChange,
}

// CandidateOrderFromProto maps an order of ListCandidates; unspecified (and
// an unknown value, which validation refuses first) is by id.
func CandidateOrderFromProto(p loomv1.CandidateOrder) migration.CandidateOrder {
	if o, ok := candidateOrders[p]; ok {
		return o
	}
	return migration.OrderByID
}

// SelectionFromProto reads the selection of a bulk action on the
// Candidates of migrationID.
func SelectionFromProto(migrationID string, p *loomv1.CandidateSelection) migration.Selection {
	sel := migration.Selection{MigrationID: migrationID, CandidateIDs: p.GetCandidateIds()}
	if f := p.GetFilter(); f != nil {
		sel.Filter = &migration.CandidateFilter{
			Status:            CandidateStatusFromProto(f.GetStatus()),
			Kind:              f.GetKind(),
			CurrentStep:       f.GetCurrentStep(),
			CurrentStepStatus: StepStatusFromProto(f.GetCurrentStepStatus()),
			IDPrefix:          f.GetIdPrefix(),
			Metadata:          f.GetMetadata(),
		}
	}
	return sel
}

// FileGroupsFromProto reads file groups.
func FileGroupsFromProto(ps []*loomv1.FileGroup) []migration.FileGroup {
	if len(ps) == 0 {
		return nil
	}
	out := make([]migration.FileGroup, len(ps))
	for i, p := range ps {
		files := make([]migration.FileRef, len(p.GetFiles()))
		for j, f := range p.GetFiles() {
			files[j] = migration.FileRef{Path: f.GetPath(), URL: f.GetUrl()}
		}
		out[i] = migration.FileGroup{Name: p.GetName(), Files: files}
	}
	return out
}

// FileGroupsToProto renders file groups.
func FileGroupsToProto(groups []migration.FileGroup) []*loomv1.FileGroup {
	out := make([]*loomv1.FileGroup, len(groups))
	for i, g := range groups {
		files := make([]*loomv1.FileRef, len(g.Files))
		for j, f := range g.Files {
			files[j] = &loomv1.FileRef{Path: f.Path, Url: f.URL}
		}
		out[i] = &loomv1.FileGroup{Name: g.Name, Files: files}
	}
	return out
}

var candidateStatuses = map[migration.CandidateStatus]loomv1.CandidateStatus{
	migration.CandidateNotStarted: loomv1.CandidateStatus_CANDIDATE_STATUS_NOT_STARTED,
	migration.CandidateRunning:    loomv1.CandidateStatus_CANDIDATE_STATUS_RUNNING,
	migration.CandidateCompleted:  loomv1.CandidateStatus_CANDIDATE_STATUS_COMPLETED,
}

// CandidateStatusToProto renders a Candidate status.
func CandidateStatusToProto(s migration.CandidateStatus) loomv1.CandidateStatus {
	return candidateStatuses[s]
}

// CandidateStatusFromProto maps a filter; unspecified means any ("").
func CandidateStatusFromProto(p loomv1.CandidateStatus) migration.CandidateStatus {
	for d, v := range candidateStatuses {
		if v == p {
			return d
		}
	}
	return ""
}

// TimeToProto renders a time; the zero time is unset.
func TimeToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

var runStatuses = map[migration.RunStatus]loomv1.RunStatus{
	migration.RunRunning:   loomv1.RunStatus_RUN_STATUS_RUNNING,
	migration.RunCompleted: loomv1.RunStatus_RUN_STATUS_COMPLETED,
	migration.RunCancelled: loomv1.RunStatus_RUN_STATUS_CANCELLED,
}

// RunStatusToProto renders a Run status.
func RunStatusToProto(s migration.RunStatus) loomv1.RunStatus { return runStatuses[s] }

// RunStatusFromProto maps a filter; unspecified means any ("").
func RunStatusFromProto(p loomv1.RunStatus) migration.RunStatus {
	for d, v := range runStatuses {
		if v == p {
			return d
		}
	}
	return ""
}

var stepStatuses = map[migration.StepStatus]loomv1.StepStatus{
	migration.StepInProgress:     loomv1.StepStatus_STEP_STATUS_IN_PROGRESS,
	migration.StepOpen:           loomv1.StepStatus_STEP_STATUS_OPEN,
	migration.StepMerged:         loomv1.StepStatus_STEP_STATUS_MERGED,
	migration.StepAwaitingReview: loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW,
	migration.StepCompleted:      loomv1.StepStatus_STEP_STATUS_COMPLETED,
	migration.StepFailed:         loomv1.StepStatus_STEP_STATUS_FAILED,
	migration.StepSkipped:        loomv1.StepStatus_STEP_STATUS_SKIPPED,
}

// StepStatusToProto renders a step status.
func StepStatusToProto(s migration.StepStatus) loomv1.StepStatus { return stepStatuses[s] }

// StepStatusFromProto reads a step status; unspecified is "".
func StepStatusFromProto(p loomv1.StepStatus) migration.StepStatus {
	for d, v := range stepStatuses {
		if v == p {
			return d
		}
	}
	return ""
}

// RunToProto renders a Run with its step results.
func RunToProto(r migration.Run) *loomv1.Run {
	p := &loomv1.Run{
		Id:                r.ID,
		MigrationId:       r.MigrationID,
		CandidateId:       r.CandidateID,
		Execution:         r.Execution,
		Status:            runStatuses[r.Status],
		Steps:             StepsToProto(r.Steps),
		CurrentStep:       r.CurrentStepName(),
		CurrentStepStatus: StepStatusToProto(r.CurrentStepStatus()),
		Inputs:            r.Inputs,
		StartTime:         TimeToProto(r.StartTime),
		UpdateTime:        TimeToProto(r.UpdateTime),
		EndTime:           TimeToProto(r.EndTime),
		CancelReason:      r.CancelReason,
		Version:           r.Version,
		RolloutId:         r.RolloutID,
	}
	for _, s := range r.Results {
		p.StepResults = append(p.StepResults, StepResultToProto(s))
	}
	return p
}

// StepResultToProto renders one step's result.
func StepResultToProto(s migration.StepResult) *loomv1.StepResult {
	return &loomv1.StepResult{
		StepName:   s.StepName,
		Status:     StepStatusToProto(s.Status),
		Metadata:   s.Metadata,
		PrUrl:      s.PRURL,
		Message:    s.Message,
		Attempt:    int32(s.Attempt),
		StartTime:  TimeToProto(s.StartTime),
		UpdateTime: TimeToProto(s.UpdateTime),
		EndTime:    TimeToProto(s.EndTime),
		OpenTime:   TimeToProto(s.OpenTime),
		Actor:      s.Actor,
		// Views written before the count was kept say 0: one dispatch.
		DispatchCount:     int32(max(s.Dispatches, 1)),
		DispatchFailures:  int32(s.DispatchFailures),
		LastDispatchError: s.LastDispatchError,
		NextDispatchTime:  TimeToProto(s.NextDispatchTime),
	}
}

var fileDiffStatuses = map[migration.FileDiffStatus]loomv1.FileDiffStatus{
	migration.FileAdded:    loomv1.FileDiffStatus_FILE_DIFF_STATUS_ADDED,
	migration.FileModified: loomv1.FileDiffStatus_FILE_DIFF_STATUS_MODIFIED,
	migration.FileDeleted:  loomv1.FileDiffStatus_FILE_DIFF_STATUS_DELETED,
}

// StepPreviewsToProto renders previews.
func StepPreviewsToProto(ps []migration.StepPreview) []*loomv1.StepPreview {
	out := make([]*loomv1.StepPreview, len(ps))
	for i, p := range ps {
		sp := &loomv1.StepPreview{StepName: p.StepName, Skipped: p.Skipped, SkipReason: p.SkipReason, Error: p.Error}
		for _, d := range p.Diffs {
			sp.Diffs = append(sp.Diffs, &loomv1.FileDiff{Repo: d.Repo, Path: d.Path, Before: d.Before, After: d.After, Status: fileDiffStatuses[d.Status]})
		}
		out[i] = sp
	}
	return out
}

// StepPreviewsFromProto reads previews.
func StepPreviewsFromProto(ps []*loomv1.StepPreview) []migration.StepPreview {
	out := make([]migration.StepPreview, len(ps))
	for i, p := range ps {
		sp := migration.StepPreview{StepName: p.GetStepName(), Skipped: p.GetSkipped(), SkipReason: p.GetSkipReason(), Error: p.GetError()}
		for _, d := range p.GetDiffs() {
			fd := migration.FileDiff{Repo: d.GetRepo(), Path: d.GetPath(), Before: d.GetBefore(), After: d.GetAfter()}
			for k, v := range fileDiffStatuses {
				if v == d.GetStatus() {
					fd.Status = k
				}
			}
			sp.Diffs = append(sp.Diffs, fd)
		}
		out[i] = sp
	}
	return out
}

var eventKinds = map[migration.EventKind]loomv1.EventKind{
	migration.EventMigrationAnnounced:      loomv1.EventKind_EVENT_KIND_MIGRATION_ANNOUNCED,
	migration.EventMigrationUpdated:        loomv1.EventKind_EVENT_KIND_MIGRATION_UPDATED,
	migration.EventMigrationDeleted:        loomv1.EventKind_EVENT_KIND_MIGRATION_DELETED,
	migration.EventCandidatesDiscovered:    loomv1.EventKind_EVENT_KIND_CANDIDATES_DISCOVERED,
	migration.EventCandidateDiscovered:     loomv1.EventKind_EVENT_KIND_CANDIDATE_DISCOVERED,
	migration.EventCandidateInputsUpdated:  loomv1.EventKind_EVENT_KIND_CANDIDATE_INPUTS_UPDATED,
	migration.EventRunStarted:              loomv1.EventKind_EVENT_KIND_RUN_STARTED,
	migration.EventStepDispatched:          loomv1.EventKind_EVENT_KIND_STEP_DISPATCHED,
	migration.EventDispatchFailed:          loomv1.EventKind_EVENT_KIND_DISPATCH_FAILED,
	migration.EventStepReported:            loomv1.EventKind_EVENT_KIND_STEP_REPORTED,
	migration.EventStepFailed:              loomv1.EventKind_EVENT_KIND_STEP_FAILED,
	migration.EventStepRetried:             loomv1.EventKind_EVENT_KIND_STEP_RETRIED,
	migration.EventReviewFinished:          loomv1.EventKind_EVENT_KIND_REVIEW_FINISHED,
	migration.EventStepMarkedMerged:        loomv1.EventKind_EVENT_KIND_STEP_MARKED_MERGED,
	migration.EventRunCancelled:            loomv1.EventKind_EVENT_KIND_RUN_CANCELLED,
	migration.EventRunCompleted:            loomv1.EventKind_EVENT_KIND_RUN_COMPLETED,
	migration.EventRolloutStarted:          loomv1.EventKind_EVENT_KIND_ROLLOUT_STARTED,
	migration.EventRolloutPaused:           loomv1.EventKind_EVENT_KIND_ROLLOUT_PAUSED,
	migration.EventRolloutResumed:          loomv1.EventKind_EVENT_KIND_ROLLOUT_RESUMED,
	migration.EventRolloutUpdated:          loomv1.EventKind_EVENT_KIND_ROLLOUT_UPDATED,
	migration.EventRolloutAwaitingApproval: loomv1.EventKind_EVENT_KIND_ROLLOUT_AWAITING_APPROVAL,
	migration.EventRolloutCancelled:        loomv1.EventKind_EVENT_KIND_ROLLOUT_CANCELLED,
	migration.EventRolloutCompleted:        loomv1.EventKind_EVENT_KIND_ROLLOUT_COMPLETED,
	migration.EventStepSkipped:             loomv1.EventKind_EVENT_KIND_STEP_SKIPPED,
	migration.EventPRAdopted:               loomv1.EventKind_EVENT_KIND_PR_ADOPTED,
}

// EventKindsFromProto reads a kind filter.
func EventKindsFromProto(ps []loomv1.EventKind) []migration.EventKind {
	var out []migration.EventKind
	for _, p := range ps {
		for k, v := range eventKinds {
			if v == p {
				out = append(out, k)
			}
		}
	}
	return out
}

// EventToProto renders an event.
func EventToProto(e migration.Event) *loomv1.Event {
	return &loomv1.Event{
		Id: e.ID, Time: TimeToProto(e.Time), Kind: eventKinds[e.Kind], MigrationId: e.MigrationID,
		CandidateId: e.CandidateID, RunId: e.RunID, Execution: e.Execution, Step: e.Step,
		Attempt: int32(e.Attempt), Actor: e.Actor, Details: e.Details,
	}
}

// MetricsToProto renders a Migration's figures.
func MetricsToProto(m migration.MigrationMetrics) *loomv1.MigrationMetrics {
	p := &loomv1.MigrationMetrics{
		MigrationId: m.MigrationID, Candidates: CountsToProto(m.Counts),
		OpenPullRequests: m.OpenPullRequests, AwaitingReview: m.AwaitingReview, Failed: m.Failed, StuckCount: m.StuckCount,
		DispatchFailing: m.DispatchFailing,
	}
	for _, c := range m.CurrentSteps {
		p.CurrentSteps = append(p.CurrentSteps, &loomv1.CurrentStepCount{Step: c.Step, Status: StepStatusToProto(c.Status), Count: c.Count})
	}
	for _, b := range m.Burndown {
		p.Burndown = append(p.Burndown, &loomv1.BurndownPoint{Start: TimeToProto(b.Start), Started: b.Started, Completed: b.Completed})
	}
	for _, d := range m.StepDurations {
		p.StepDurations = append(p.StepDurations, &loomv1.StepDurations{
			Step: d.Step, Count: d.Count, P50: durationpb.New(d.P50), P95: durationpb.New(d.P95), Max: durationpb.New(d.Max),
			MergedCount: d.MergedCount, MergeP50: durationpb.New(d.MergeP50), MergeP95: durationpb.New(d.MergeP95), MergeMax: durationpb.New(d.MergeMax),
			FailedCount:  d.FailedCount,
			SkippedCount: d.SkippedCount,
		})
	}
	for _, f := range m.RecentFailures {
		p.RecentFailures = append(p.RecentFailures, &loomv1.Failure{Time: TimeToProto(f.Time), CandidateId: f.CandidateID, Step: f.Step, Attempt: int32(f.Attempt), Message: f.Message})
	}
	for _, s := range m.Stuck {
		p.Stuck = append(p.Stuck, &loomv1.StuckCandidate{CandidateId: s.CandidateID, LastEventTime: TimeToProto(s.LastEventTime)})
	}
	for _, d := range m.EventsPerDay {
		p.EventsPerDay = append(p.EventsPerDay, &loomv1.DayCount{Day: TimeToProto(d.Day), Count: d.Count})
	}
	return p
}

// SummaryToProto renders a Migration's headline figures.
func SummaryToProto(s migration.MigrationSummary) *loomv1.MigrationSummary {
	return &loomv1.MigrationSummary{
		Migration: MigrationToProto(s.Migration), OpenPullRequests: s.OpenPullRequests,
		AwaitingReview: s.AwaitingReview, Failed: s.Failed, CompletedLastDays: s.CompletedLastDays,
		DispatchFailing: s.DispatchFailing,
	}
}
