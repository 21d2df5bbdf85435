package api

import (
	"context"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/protoconv"
)

// EventServer serves loom.v1.EventService.
type EventServer struct {
	Runs *migration.Runs
}

var _ loomv1connect.EventServiceHandler = (*EventServer)(nil)

// ReportStepStatus applies a Migrator's report to its Run.
func (s *EventServer) ReportStepStatus(ctx context.Context, req *connect.Request[loomv1.ReportStepStatusRequest]) (*connect.Response[loomv1.ReportStepStatusResponse], error) {
	m := req.Msg
	run, changed, err := s.Runs.Act(ctx, m.GetRunId(), migration.StepAction{
		Kind:      migration.ActionReport,
		Execution: m.GetExecution(),
		Step:      m.GetStepName(),
		Attempt:   int(m.GetAttempt()),
		Status:    protoconv.StepStatusFromProto(m.GetStatus()),
		PRURL:     m.GetPrUrl(),
		Message:   m.GetMessage(),
		Metadata:  m.GetMetadata(),
		Actor:     migration.ActorMigrator,
	})
	if err != nil {
		return nil, err
	}
	res := &loomv1.ReportStepStatusResponse{Changed: changed}
	for _, r := range run.Results {
		if r.StepName == m.GetStepName() {
			res.Step = protoconv.StepResultToProto(r)
		}
	}
	return connect.NewResponse(res), nil
}
