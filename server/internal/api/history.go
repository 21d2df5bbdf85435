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

// HistoryServer serves loom.v1.HistoryService.
type HistoryServer struct {
	History *migration.History
}

var _ loomv1connect.HistoryServiceHandler = (*HistoryServer)(nil)

func eventFilter(candidate string, kinds []loomv1.EventKind, since, until *timestamppb.Timestamp) migration.EventFilter {
	f := migration.EventFilter{CandidateID: candidate, Kinds: protoconv.EventKindsFromProto(kinds)}
	if since != nil {
		f.Since = since.AsTime()
	}
	if until != nil {
		f.Until = until.AsTime()
	}
	return f
}

// ListEvents pages through a Migration's history, newest first.
func (s *HistoryServer) ListEvents(ctx context.Context, req *connect.Request[loomv1.ListEventsRequest]) (*connect.Response[loomv1.ListEventsResponse], error) {
	m := req.Msg
	filterKey := m.GetMigrationId() + "|" + m.GetCandidateId() + "|" + m.GetStartTime().String() + "|" + m.GetEndTime().String()
	for _, k := range m.GetKinds() {
		filterKey += "|" + k.String()
	}
	for _, st := range m.GetReportedStatuses() {
		filterKey += "|reported:" + st.String()
	}
	if p := m.GetCandidateIdPrefix(); p != "" {
		filterKey += "|prefix:" + p
	}
	after, err := decodePageToken(m.GetPageToken(), filterKey)
	if err != nil {
		return nil, err
	}
	f := eventFilter(m.GetCandidateId(), m.GetKinds(), m.GetStartTime(), m.GetEndTime())
	f.CandidatePrefix = m.GetCandidateIdPrefix()
	for _, st := range m.GetReportedStatuses() {
		f.ReportedStatuses = append(f.ReportedStatuses, protoconv.StepStatusFromProto(st))
	}
	page, err := s.History.List(ctx, m.GetMigrationId(), f, migration.PageRequest{After: after, Limit: int(m.GetPageSize())})
	if err != nil {
		return nil, err
	}
	res := &loomv1.ListEventsResponse{NextPageToken: encodePageToken(page.Next, filterKey)}
	for _, e := range page.Events {
		res.Events = append(res.Events, protoconv.EventToProto(e))
	}
	return connect.NewResponse(res), nil
}

// WatchEvents streams a Migration's new events, or the whole fleet's.
func (s *HistoryServer) WatchEvents(ctx context.Context, req *connect.Request[loomv1.WatchEventsRequest], stream *connect.ServerStream[loomv1.WatchEventsResponse]) error {
	m := req.Msg
	send := func(e migration.Event) error {
		return stream.Send(&loomv1.WatchEventsResponse{Update: &loomv1.WatchEventsResponse_Event{Event: protoconv.EventToProto(e)}})
	}
	beat := func(now time.Time) error {
		return stream.Send(&loomv1.WatchEventsResponse{Update: &loomv1.WatchEventsResponse_Heartbeat{Heartbeat: timestamppb.New(now)}})
	}
	if m.GetMigrationId() == "" {
		// The fleet: a migrator follows only the Migrations it owns.
		return s.History.WatchFleet(ctx, eventFilter("", m.GetKinds(), nil, nil), ownedFilter(ctx), send, beat)
	}
	return s.History.Watch(ctx, m.GetMigrationId(), eventFilter(m.GetCandidateId(), m.GetKinds(), nil, nil), m.GetAfterId(), send, beat)
}

// MetricsServer serves loom.v1.MetricsService.
type MetricsServer struct {
	Metrics *migration.Metrics
}

var _ loomv1connect.MetricsServiceHandler = (*MetricsServer)(nil)

// GetMigrationMetrics returns a Migration's figures.
func (s *MetricsServer) GetMigrationMetrics(ctx context.Context, req *connect.Request[loomv1.GetMigrationMetricsRequest]) (*connect.Response[loomv1.GetMigrationMetricsResponse], error) {
	q := migration.MetricsQuery{StuckAfter: req.Msg.GetStuckAfter().AsDuration(), Daily: req.Msg.GetBurndownUnit() == loomv1.BurndownUnit_BURNDOWN_UNIT_DAY}
	if req.Msg.GetBurndownUnit() == loomv1.BurndownUnit_BURNDOWN_UNIT_UNSPECIFIED {
		q.Daily = false // the store picks hours; days are asked for explicitly
	}
	m, err := s.Metrics.Migration(ctx, req.Msg.GetMigrationId(), q)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.GetMigrationMetricsResponse{Metrics: protoconv.MetricsToProto(m)}), nil
}

// GetFleetOverview pages through the Migrations' headline figures.
func (s *MetricsServer) GetFleetOverview(ctx context.Context, req *connect.Request[loomv1.GetFleetOverviewRequest]) (*connect.Response[loomv1.GetFleetOverviewResponse], error) {
	after, err := decodePageToken(req.Msg.GetPageToken(), "fleet")
	if err != nil {
		return nil, err
	}
	page, err := s.Metrics.Fleet(ctx, migration.PageRequest{After: after, Limit: int(req.Msg.GetPageSize())})
	if err != nil {
		return nil, err
	}
	res := &loomv1.GetFleetOverviewResponse{NextPageToken: encodePageToken(page.Next, "fleet")}
	owned := ownedFilter(ctx)
	for _, sum := range page.Migrations {
		if owned(sum.Migration.ID) {
			res.Migrations = append(res.Migrations, protoconv.SummaryToProto(sum))
		}
	}
	return connect.NewResponse(res), nil
}
