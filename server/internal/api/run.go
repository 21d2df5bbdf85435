package api

import (
	"context"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/protoconv"
)

// RunServer serves loom.v1.RunService.
type RunServer struct {
	Runs *migration.Runs
	// Callbacks, when set, signs the callback token shown to the Migrator
	// that owns a Run (StepResult.callback_token).
	Callbacks *auth.Callbacks
	// Log records what each bulk action did; nil records nothing.
	Log *slog.Logger
}

// view renders a Run for the caller: the current step's callback token is
// included for its Migrator (and admins) only.
func (s *RunServer) view(ctx context.Context, r migration.Run) *loomv1.Run {
	p := protoconv.RunToProto(r)
	c := r.Current()
	if s.Callbacks == nil || c == nil || r.Status != migration.RunRunning {
		return p
	}
	if who, ok := auth.PrincipalFrom(ctx); !ok || !(who.Role == auth.RoleAdmin || who.Role == auth.RoleMigrator && who.Scope.Owns(r.MigrationID)) {
		return p
	}
	p.StepResults[len(p.StepResults)-1].CallbackToken = s.Callbacks.Sign(auth.Binding{
		RunID: r.ID, Execution: r.Execution, Step: c.StepName, Attempt: c.Attempt,
	})
	return p
}

var _ loomv1connect.RunServiceHandler = (*RunServer)(nil)

// PreviewRun asks the Migrator for the diffs of one Candidate.
func (s *RunServer) PreviewRun(ctx context.Context, req *connect.Request[loomv1.PreviewRunRequest]) (*connect.Response[loomv1.PreviewRunResponse], error) {
	previews, err := s.Runs.PreviewRun(ctx, req.Msg.GetMigrationId(), req.Msg.GetCandidateId(), req.Msg.GetInputs())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.PreviewRunResponse{Steps: protoconv.StepPreviewsToProto(previews)}), nil
}

// StartRun starts the Run of one Candidate.
func (s *RunServer) StartRun(ctx context.Context, req *connect.Request[loomv1.StartRunRequest]) (*connect.Response[loomv1.StartRunResponse], error) {
	run, err := s.Runs.Start(ctx, migration.StartRequest{MigrationID: req.Msg.GetMigrationId(), CandidateID: req.Msg.GetCandidateId(),
		Inputs: req.Msg.GetInputs(), Note: req.Msg.GetNote()})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.StartRunResponse{Run: s.view(ctx, run)}), nil
}

// CancelRun cancels a running Run.
func (s *RunServer) CancelRun(ctx context.Context, req *connect.Request[loomv1.CancelRunRequest]) (*connect.Response[loomv1.CancelRunResponse], error) {
	run, err := s.Runs.CancelRun(ctx, req.Msg.GetRunId(), req.Msg.GetReason(), caller(ctx, req))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.CancelRunResponse{Run: s.view(ctx, run)}), nil
}

// RetryStep dispatches a failed step again.
func (s *RunServer) RetryStep(ctx context.Context, req *connect.Request[loomv1.RetryStepRequest]) (*connect.Response[loomv1.RetryStepResponse], error) {
	acted, err := s.Runs.Act(ctx, req.Msg.GetRunId(), migration.StepAction{
		Kind:    migration.ActionRetry,
		Step:    req.Msg.GetStepName(),
		Attempt: int(req.Msg.GetAttempt()),
		Message: req.Msg.GetNote(),
		Actor:   caller(ctx, req),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.RetryStepResponse{Run: s.view(ctx, acted.Run)}), nil
}

// FinishReview finishes a step awaiting review.
func (s *RunServer) FinishReview(ctx context.Context, req *connect.Request[loomv1.FinishReviewRequest]) (*connect.Response[loomv1.FinishReviewResponse], error) {
	acted, err := s.Runs.Act(ctx, req.Msg.GetRunId(), migration.StepAction{
		Kind:    migration.ActionFinishReview,
		Step:    req.Msg.GetStepName(),
		Attempt: int(req.Msg.GetAttempt()),
		Status:  protoconv.StepStatusFromProto(req.Msg.GetOutcome()),
		Message: req.Msg.GetNote(),
		Actor:   caller(ctx, req),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.FinishReviewResponse{Run: s.view(ctx, acted.Run)}), nil
}

// MarkStepMerged records a merge made outside Loom.
func (s *RunServer) MarkStepMerged(ctx context.Context, req *connect.Request[loomv1.MarkStepMergedRequest]) (*connect.Response[loomv1.MarkStepMergedResponse], error) {
	acted, err := s.Runs.Act(ctx, req.Msg.GetRunId(), migration.StepAction{
		Kind:    migration.ActionMarkMerged,
		Step:    req.Msg.GetStepName(),
		Attempt: int(req.Msg.GetAttempt()),
		Message: req.Msg.GetNote(),
		Actor:   caller(ctx, req),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.MarkStepMergedResponse{Run: s.view(ctx, acted.Run)}), nil
}

// SkipStep skips the current step of a Run, with a reason.
func (s *RunServer) SkipStep(ctx context.Context, req *connect.Request[loomv1.SkipStepRequest]) (*connect.Response[loomv1.SkipStepResponse], error) {
	acted, err := s.Runs.Act(ctx, req.Msg.GetRunId(), migration.StepAction{
		Kind:    migration.ActionSkip,
		Step:    req.Msg.GetStepName(),
		Attempt: int(req.Msg.GetAttempt()),
		Message: req.Msg.GetReason(),
		Actor:   caller(ctx, req),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.SkipStepResponse{Run: s.view(ctx, acted.Run)}), nil
}

// AdoptPullRequest records that the current step's pull request exists.
func (s *RunServer) AdoptPullRequest(ctx context.Context, req *connect.Request[loomv1.AdoptPullRequestRequest]) (*connect.Response[loomv1.AdoptPullRequestResponse], error) {
	acted, err := s.Runs.Act(ctx, req.Msg.GetRunId(), migration.StepAction{
		Kind:    migration.ActionAdoptPR,
		Step:    req.Msg.GetStepName(),
		Attempt: int(req.Msg.GetAttempt()),
		PRURL:   req.Msg.GetPrUrl(),
		Message: req.Msg.GetNote(),
		Actor:   caller(ctx, req),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.AdoptPullRequestResponse{Run: s.view(ctx, acted.Run)}), nil
}

// BulkRetrySteps retries the failed steps of a selection of Runs.
func (s *RunServer) BulkRetrySteps(ctx context.Context, req *connect.Request[loomv1.BulkRetryStepsRequest]) (*connect.Response[loomv1.BulkRetryStepsResponse], error) {
	m := req.Msg.GetMigrationId()
	rep, err := s.Runs.BulkRetry(ctx, protoconv.SelectionFromProto(m, req.Msg.GetSelection()), req.Msg.GetStepName(), req.Msg.GetNote(), caller(ctx, req))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.BulkRetryStepsResponse{Result: bulkResult(ctx, s.Log, req.Spec().Procedure, m, rep)}), nil
}

// BulkCancelRuns cancels a selection of Runs.
func (s *RunServer) BulkCancelRuns(ctx context.Context, req *connect.Request[loomv1.BulkCancelRunsRequest]) (*connect.Response[loomv1.BulkCancelRunsResponse], error) {
	m := req.Msg.GetMigrationId()
	rep, err := s.Runs.BulkCancel(ctx, protoconv.SelectionFromProto(m, req.Msg.GetSelection()), req.Msg.GetReason(), caller(ctx, req))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.BulkCancelRunsResponse{Result: bulkResult(ctx, s.Log, req.Spec().Procedure, m, rep)}), nil
}

// BulkFinishReviews finishes the reviews of a selection of Runs.
func (s *RunServer) BulkFinishReviews(ctx context.Context, req *connect.Request[loomv1.BulkFinishReviewsRequest]) (*connect.Response[loomv1.BulkFinishReviewsResponse], error) {
	m := req.Msg.GetMigrationId()
	rep, err := s.Runs.BulkFinishReview(ctx, protoconv.SelectionFromProto(m, req.Msg.GetSelection()), req.Msg.GetStepName(),
		protoconv.StepStatusFromProto(req.Msg.GetOutcome()), req.Msg.GetNote(), caller(ctx, req))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.BulkFinishReviewsResponse{Result: bulkResult(ctx, s.Log, req.Spec().Procedure, m, rep)}), nil
}

// BulkMarkStepsMerged records merges made outside Loom for a selection of Runs.
func (s *RunServer) BulkMarkStepsMerged(ctx context.Context, req *connect.Request[loomv1.BulkMarkStepsMergedRequest]) (*connect.Response[loomv1.BulkMarkStepsMergedResponse], error) {
	m := req.Msg.GetMigrationId()
	rep, err := s.Runs.BulkMarkMerged(ctx, protoconv.SelectionFromProto(m, req.Msg.GetSelection()), req.Msg.GetStepName(),
		req.Msg.GetNote(), caller(ctx, req))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.BulkMarkStepsMergedResponse{Result: bulkResult(ctx, s.Log, req.Spec().Procedure, m, rep)}), nil
}

// GetRun returns a Run.
func (s *RunServer) GetRun(ctx context.Context, req *connect.Request[loomv1.GetRunRequest]) (*connect.Response[loomv1.GetRunResponse], error) {
	run, err := s.Runs.GetRun(ctx, req.Msg.GetRunId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.GetRunResponse{Run: s.view(ctx, run)}), nil
}

// ReconcileRuns brings the views of running Runs in line with the engine.
func (s *RunServer) ReconcileRuns(ctx context.Context, req *connect.Request[loomv1.ReconcileRunsRequest]) (*connect.Response[loomv1.ReconcileRunsResponse], error) {
	rep, err := s.Runs.Reconcile(ctx, req.Msg.GetMigrationId())
	if err != nil {
		return nil, err
	}
	out := &loomv1.ReconcileRunsResponse{Checked: rep.Checked}
	for _, f := range rep.Fixed {
		out.Fixed = append(out.Fixed, &loomv1.RunFix{RunId: f.RunID, Status: protoconv.RunStatusToProto(f.Status), Reason: f.Reason})
	}
	return connect.NewResponse(out), nil
}

// ListRuns pages through a Migration's Runs.
func (s *RunServer) ListRuns(ctx context.Context, req *connect.Request[loomv1.ListRunsRequest]) (*connect.Response[loomv1.ListRunsResponse], error) {
	filter := migration.RunFilter{
		Status:            protoconv.RunStatusFromProto(req.Msg.GetStatus()),
		CurrentStepStatus: protoconv.StepStatusFromProto(req.Msg.GetCurrentStepStatus()),
		DispatchFailing:   req.Msg.GetDispatchFailing(),
	}
	filterKey := req.Msg.GetMigrationId() + "|" + string(filter.Status) + "|" + string(filter.CurrentStepStatus)
	if filter.DispatchFailing {
		filterKey += "|dispatch-failing"
	}
	after, err := decodePageToken(req.Msg.GetPageToken(), filterKey)
	if err != nil {
		return nil, err
	}
	page, err := s.Runs.ListRuns(ctx, req.Msg.GetMigrationId(), filter,
		migration.PageRequest{After: after, Limit: int(req.Msg.GetPageSize())})
	if err != nil {
		return nil, err
	}
	res := &loomv1.ListRunsResponse{
		NextPageToken: encodePageToken(page.Next, filterKey),
		TotalSize:     page.Total,
		Runs:          make([]*loomv1.Run, len(page.Runs)),
	}
	for i, r := range page.Runs {
		res.Runs[i] = s.view(ctx, r)
	}
	return connect.NewResponse(res), nil
}

// WatchRun streams a Run until it ends.
func (s *RunServer) WatchRun(ctx context.Context, req *connect.Request[loomv1.WatchRunRequest], stream *connect.ServerStream[loomv1.WatchRunResponse]) error {
	return s.Runs.WatchRun(ctx, req.Msg.GetRunId(), req.Msg.GetAfterVersion(),
		func(run migration.Run) error {
			return stream.Send(&loomv1.WatchRunResponse{Update: &loomv1.WatchRunResponse_Run{Run: s.view(ctx, run)}})
		},
		func(now time.Time) error {
			return stream.Send(&loomv1.WatchRunResponse{Update: &loomv1.WatchRunResponse_Heartbeat{Heartbeat: timestamppb.New(now)}})
		})
}
