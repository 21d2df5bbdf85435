package api

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/protoconv"
)

// RolloutServer serves loom.v1.RolloutService.
type RolloutServer struct {
	Rollouts *migration.Rollouts
}

var _ loomv1connect.RolloutServiceHandler = (*RolloutServer)(nil)

// PreviewSelection says what a rollout of a selection would start.
func (s *RolloutServer) PreviewSelection(ctx context.Context, req *connect.Request[loomv1.PreviewSelectionRequest]) (*connect.Response[loomv1.PreviewSelectionResponse], error) {
	m := req.Msg.GetMigrationId()
	p, err := s.Rollouts.PreviewSelection(ctx, protoconv.SelectionFromProto(m, req.Msg.GetSelection()),
		req.Msg.GetDefaultInputs(), int(req.Msg.GetSampleSize()))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(protoconv.SelectionPreviewToProto(p)), nil
}

// StartRollout starts a rollout.
func (s *RolloutServer) StartRollout(ctx context.Context, req *connect.Request[loomv1.StartRolloutRequest]) (*connect.Response[loomv1.StartRolloutResponse], error) {
	m := req.Msg.GetMigrationId()
	r, err := s.Rollouts.StartRollout(ctx, protoconv.SelectionFromProto(m, req.Msg.GetSelection()),
		req.Msg.GetDefaultInputs(), protoconv.RolloutSettingsFromProto(req.Msg.GetSettings()), req.Msg.GetReason())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.StartRolloutResponse{Rollout: protoconv.RolloutToProto(r)}), nil
}

// GetRollout reads a rollout.
func (s *RolloutServer) GetRollout(ctx context.Context, req *connect.Request[loomv1.GetRolloutRequest]) (*connect.Response[loomv1.GetRolloutResponse], error) {
	r, err := s.Rollouts.GetRollout(ctx, req.Msg.GetMigrationId(), req.Msg.GetRolloutId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.GetRolloutResponse{Rollout: protoconv.RolloutToProto(r)}), nil
}

// ListRollouts pages through a Migration's rollouts.
func (s *RolloutServer) ListRollouts(ctx context.Context, req *connect.Request[loomv1.ListRolloutsRequest]) (*connect.Response[loomv1.ListRolloutsResponse], error) {
	m := req.Msg.GetMigrationId()
	after, err := decodePageToken(req.Msg.GetPageToken(), "rollouts:"+m)
	if err != nil {
		return nil, err
	}
	rs, next, err := s.Rollouts.ListRollouts(ctx, m, migration.PageRequest{After: after, Limit: int(req.Msg.GetPageSize())})
	if err != nil {
		return nil, err
	}
	out := &loomv1.ListRolloutsResponse{NextPageToken: encodePageToken(next, "rollouts:"+m)}
	for _, r := range rs {
		out.Rollouts = append(out.Rollouts, protoconv.RolloutToProto(r))
	}
	return connect.NewResponse(out), nil
}

// WatchRollout streams a rollout's changes.
func (s *RolloutServer) WatchRollout(ctx context.Context, req *connect.Request[loomv1.WatchRolloutRequest], stream *connect.ServerStream[loomv1.WatchRolloutResponse]) error {
	return s.Rollouts.WatchRollout(ctx, req.Msg.GetMigrationId(), req.Msg.GetRolloutId(), req.Msg.GetAfterVersion(),
		func(r migration.Rollout) error {
			return stream.Send(&loomv1.WatchRolloutResponse{Rollout: protoconv.RolloutToProto(r)})
		},
		func(now time.Time) error {
			return stream.Send(&loomv1.WatchRolloutResponse{Heartbeat: timestamppb.New(now)})
		})
}

// PauseRollout pauses a rollout.
func (s *RolloutServer) PauseRollout(ctx context.Context, req *connect.Request[loomv1.PauseRolloutRequest]) (*connect.Response[loomv1.PauseRolloutResponse], error) {
	out, err := s.Rollouts.Control(ctx, req.Msg.GetMigrationId(), req.Msg.GetRolloutId(),
		migration.RolloutControl{Kind: migration.ControlPause, Reason: req.Msg.GetReason()})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.PauseRolloutResponse{Rollout: protoconv.RolloutToProto(out.Rollout)}), nil
}

// ResumeRollout resumes or approves a rollout.
func (s *RolloutServer) ResumeRollout(ctx context.Context, req *connect.Request[loomv1.ResumeRolloutRequest]) (*connect.Response[loomv1.ResumeRolloutResponse], error) {
	out, err := s.Rollouts.Control(ctx, req.Msg.GetMigrationId(), req.Msg.GetRolloutId(),
		migration.RolloutControl{Kind: migration.ControlResume, Reason: req.Msg.GetReason()})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.ResumeRolloutResponse{Rollout: protoconv.RolloutToProto(out.Rollout)}), nil
}

// UpdateRollout changes a rollout's pacing.
func (s *RolloutServer) UpdateRollout(ctx context.Context, req *connect.Request[loomv1.UpdateRolloutRequest]) (*connect.Response[loomv1.UpdateRolloutResponse], error) {
	out, err := s.Rollouts.Control(ctx, req.Msg.GetMigrationId(), req.Msg.GetRolloutId(), migration.RolloutControl{
		Kind: migration.ControlUpdate, Settings: protoconv.RolloutSettingsFromProto(req.Msg.GetSettings()), Mask: req.Msg.GetUpdateMask(),
		Reason: req.Msg.GetReason()})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.UpdateRolloutResponse{Rollout: protoconv.RolloutToProto(out.Rollout)}), nil
}

// CancelRollout cancels a rollout, and its Runs in flight when asked.
func (s *RolloutServer) CancelRollout(ctx context.Context, req *connect.Request[loomv1.CancelRolloutRequest]) (*connect.Response[loomv1.CancelRolloutResponse], error) {
	out, err := s.Rollouts.Control(ctx, req.Msg.GetMigrationId(), req.Msg.GetRolloutId(), migration.RolloutControl{
		Kind: migration.ControlCancel, Reason: req.Msg.GetReason(), CancelRuns: req.Msg.GetCancelRuns()})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.CancelRolloutResponse{Rollout: protoconv.RolloutToProto(out.Rollout), CancelledRuns: int32(out.CancelledRuns)}), nil
}
