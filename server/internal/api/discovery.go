package api

import (
	"context"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/protoconv"
)

// DiscoveryServer serves loom.v1.DiscoveryService.
type DiscoveryServer struct {
	Discovery *migration.Discovery
}

var _ loomv1connect.DiscoveryServiceHandler = (*DiscoveryServer)(nil)

// SubmitCandidates merges discovered Candidates into a Migration.
func (s *DiscoveryServer) SubmitCandidates(ctx context.Context, req *connect.Request[loomv1.SubmitCandidatesRequest]) (*connect.Response[loomv1.SubmitCandidatesResponse], error) {
	sub := migration.Submission{
		MigrationID: req.Msg.GetMigrationId(),
		Complete:    req.Msg.GetComplete(),
		Round:       req.Msg.GetRound(),
		Candidates:  make([]migration.Candidate, len(req.Msg.GetCandidates())),
	}
	for i, c := range req.Msg.GetCandidates() {
		sub.Candidates[i] = protoconv.CandidateFromProto(c)
	}
	r, err := s.Discovery.Submit(ctx, sub)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.SubmitCandidatesResponse{
		AddedIds:                r.Added,
		UpdatedIds:              r.Updated,
		UnchangedIds:            r.Unchanged,
		LeftAloneIds:            r.LeftAlone,
		NoLongerDiscoveredIds:   r.NoLongerDiscovered,
		AddedCount:              int32(len(r.Added)),
		UpdatedCount:            int32(len(r.Updated)),
		UnchangedCount:          int32(len(r.Unchanged)),
		LeftAloneCount:          int32(len(r.LeftAlone)),
		NoLongerDiscoveredCount: int32(len(r.NoLongerDiscovered)),
	}), nil
}

// ListCandidates pages through a Migration's Candidates.
func (s *DiscoveryServer) ListCandidates(ctx context.Context, req *connect.Request[loomv1.ListCandidatesRequest]) (*connect.Response[loomv1.ListCandidatesResponse], error) {
	filter := migration.CandidateFilter{
		Status: protoconv.CandidateStatusFromProto(req.Msg.GetStatus()),
		Kind:   req.Msg.GetKind(),
	}
	filterKey := req.Msg.GetMigrationId() + "|" + string(filter.Status) + "|" + filter.Kind
	after, err := decodePageToken(req.Msg.GetPageToken(), filterKey)
	if err != nil {
		return nil, err
	}
	page, err := s.Discovery.List(ctx, req.Msg.GetMigrationId(), filter,
		migration.PageRequest{After: after, Limit: int(req.Msg.GetPageSize())})
	if err != nil {
		return nil, err
	}
	res := &loomv1.ListCandidatesResponse{
		NextPageToken: encodePageToken(page.Next, filterKey),
		TotalSize:     page.Total,
		Candidates:    make([]*loomv1.Candidate, len(page.Candidates)),
	}
	for i, c := range page.Candidates {
		res.Candidates[i] = protoconv.CandidateToProto(c)
	}
	return connect.NewResponse(res), nil
}

// GetCandidate returns one Candidate.
func (s *DiscoveryServer) GetCandidate(ctx context.Context, req *connect.Request[loomv1.GetCandidateRequest]) (*connect.Response[loomv1.GetCandidateResponse], error) {
	c, err := s.Discovery.Get(ctx, req.Msg.GetMigrationId(), req.Msg.GetCandidateId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.GetCandidateResponse{Candidate: protoconv.CandidateToProto(c)}), nil
}

// UpdateCandidateInputs sets and removes a Candidate's stored inputs.
func (s *DiscoveryServer) UpdateCandidateInputs(ctx context.Context, req *connect.Request[loomv1.UpdateCandidateInputsRequest]) (*connect.Response[loomv1.UpdateCandidateInputsResponse], error) {
	c, err := s.Discovery.UpdateInputs(ctx, req.Msg.GetMigrationId(), req.Msg.GetCandidateId(), migration.InputChange{
		Set:    req.Msg.GetInputs(),
		Remove: req.Msg.GetRemoveInputs(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.UpdateCandidateInputsResponse{Candidate: protoconv.CandidateToProto(c)}), nil
}
