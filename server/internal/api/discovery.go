package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/protoconv"
)

// DiscoveryServer serves loom.v1.DiscoveryService.
type DiscoveryServer struct {
	Discovery *migration.Discovery
	// Log records what each bulk action did; nil records nothing.
	Log *slog.Logger
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

// ListCandidates pages through a Migration's Candidates, filtered and
// ordered, with their Runs' progress.
func (s *DiscoveryServer) ListCandidates(ctx context.Context, req *connect.Request[loomv1.ListCandidatesRequest]) (*connect.Response[loomv1.ListCandidatesResponse], error) {
	msg := req.Msg
	filter := migration.CandidateFilter{
		Status:            protoconv.CandidateStatusFromProto(msg.GetStatus()),
		Kind:              msg.GetKind(),
		CurrentStep:       msg.GetCurrentStep(),
		CurrentStepStatus: protoconv.StepStatusFromProto(msg.GetCurrentStepStatus()),
		IDPrefix:          msg.GetIdPrefix(),
		Metadata:          msg.GetMetadata(),
		Order:             protoconv.CandidateOrderFromProto(msg.GetOrderBy()),
		Descending:        msg.GetDescending(),
	}
	filterKey := candidateFilterKey(msg.GetMigrationId(), filter)
	after, err := decodePageToken(msg.GetPageToken(), filterKey)
	if err != nil {
		return nil, err
	}
	page, err := s.Discovery.List(ctx, msg.GetMigrationId(), filter,
		migration.PageRequest{After: after, Limit: int(msg.GetPageSize())})
	if err != nil {
		return nil, err
	}
	res := &loomv1.ListCandidatesResponse{
		NextPageToken:       encodePageToken(page.Next, filterKey),
		TotalSize:           page.Total,
		TotalSizeIsEstimate: page.TotalIsEstimate,
		Candidates:          make([]*loomv1.Candidate, len(page.Candidates)),
		Progress:            make(map[string]*loomv1.CandidateProgress, len(page.Candidates)),
	}
	for i, c := range page.Candidates {
		res.Candidates[i] = protoconv.CandidateToProto(c)
		res.Progress[c.ID] = protoconv.CandidateProgressToProto(c.Progress)
	}
	return connect.NewResponse(res), nil
}

// candidateFilterKey binds a page token to the Migration, the filters, the
// order and the direction it was made with: a digest of all of them, so
// that the token stays short whatever the metadata filters hold.
func candidateFilterKey(migrationID string, f migration.CandidateFilter) string {
	b, _ := json.Marshal(struct {
		M string
		F migration.CandidateFilter
	}{migrationID, f}) // encoding/json sorts the metadata map's keys
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
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
		Note:   req.Msg.GetNote(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.UpdateCandidateInputsResponse{Candidate: protoconv.CandidateToProto(c)}), nil
}

// BulkUpdateCandidateInputs sets and removes the stored inputs of a
// selection of Candidates.
func (s *DiscoveryServer) BulkUpdateCandidateInputs(ctx context.Context, req *connect.Request[loomv1.BulkUpdateCandidateInputsRequest]) (*connect.Response[loomv1.BulkUpdateCandidateInputsResponse], error) {
	m := req.Msg.GetMigrationId()
	rep, err := s.Discovery.BulkUpdateInputs(ctx, protoconv.SelectionFromProto(m, req.Msg.GetSelection()), migration.InputChange{
		Set:    req.Msg.GetInputs(),
		Remove: req.Msg.GetRemoveInputs(),
		Note:   req.Msg.GetNote(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.BulkUpdateCandidateInputsResponse{Result: bulkResult(ctx, s.Log, req.Spec().Procedure, m, rep)}), nil
}
