package api

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/protoconv"
)

// EventServer serves loom.v1.EventService.
type EventServer struct {
	Runs *migration.Runs
	// Callbacks, when set, requires every report to carry the callback token
	// of the dispatch it reports on.
	Callbacks *auth.Callbacks

	reports metric.Int64Counter
}

func newEventServer(runs *migration.Runs, callbacks *auth.Callbacks, meter metric.Meter) *EventServer {
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("")
	}
	reports, _ := meter.Int64Counter("loom.events.processed", metric.WithUnit("{report}"),
		metric.WithDescription("Step status reports of Migrators processed, by Migration, reported status and result (changed, unchanged or refused)."))
	return &EventServer{Runs: runs, Callbacks: callbacks, reports: reports}
}

var _ loomv1connect.EventServiceHandler = (*EventServer)(nil)

// ReportStepStatus applies a Migrator's report to its Run.
func (s *EventServer) ReportStepStatus(ctx context.Context, req *connect.Request[loomv1.ReportStepStatusRequest]) (res *connect.Response[loomv1.ReportStepStatusResponse], err error) {
	m := req.Msg
	if s.reports != nil {
		defer func() {
			result := "refused"
			if err == nil {
				result = "unchanged"
				if res.Msg.GetChanged() {
					result = "changed"
				}
			}
			mig, _, _ := migration.ParseRunID(m.GetRunId())
			s.reports.Add(ctx, 1, metric.WithAttributes(attribute.String("migration_id", mig),
				attribute.String("status", string(protoconv.StepStatusFromProto(m.GetStatus()))), attribute.String("result", result)))
		}()
	}
	if s.Callbacks != nil {
		err := s.Callbacks.Verify(m.GetCallbackToken(), auth.Binding{
			RunID: m.GetRunId(), Execution: m.GetExecution(), Step: m.GetStepName(), Attempt: int(m.GetAttempt()),
		})
		if err != nil {
			return nil, connect.NewError(connect.CodeUnauthenticated, errors.New(
				"callback_token: not the token Loom issued for this run, execution, step and attempt (copy it from the dispatch)"))
		}
	}
	acted, err := s.Runs.Act(ctx, m.GetRunId(), migration.StepAction{
		Kind:      migration.ActionReport,
		Execution: m.GetExecution(),
		Step:      m.GetStepName(),
		Attempt:   int(m.GetAttempt()),
		Status:    protoconv.StepStatusFromProto(m.GetStatus()),
		PRURL:     m.GetPrUrl(),
		Message:   m.GetMessage(),
		Metadata:  m.GetMetadata(),
		Actor:     reporter(ctx),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.ReportStepStatusResponse{Changed: acted.Changed, Step: protoconv.StepResultToProto(acted.Step)}), nil
}

// ResumeSteps dispatches again the steps of a Migration in progress.
func (s *EventServer) ResumeSteps(ctx context.Context, req *connect.Request[loomv1.ResumeStepsRequest]) (*connect.Response[loomv1.ResumeStepsResponse], error) {
	n, err := s.Runs.ResumeSteps(ctx, req.Msg.GetMigrationId(), reporter(ctx))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.ResumeStepsResponse{Resumed: n}), nil
}

// reporter names who reported: the Migrator's authenticated subject, or
// "migrator" when callers are not authenticated.
func reporter(ctx context.Context) string {
	if p, ok := auth.PrincipalFrom(ctx); ok {
		return p.Subject
	}
	return migration.ActorMigrator
}
