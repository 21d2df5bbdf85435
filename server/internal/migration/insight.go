package migration

import (
	"context"
	"time"
)

// History is the use case of reading and following lifecycle events.
type History struct {
	Store interface {
		HistoryStore
		RegistryStore
	}
	Now Clock
	// Heartbeat is the longest a watcher waits without a message.
	Heartbeat time.Duration
}

// List pages through a Migration's events, newest first. The history of a
// deleted Migration stays readable until retention.
func (h *History) List(ctx context.Context, migrationID string, f EventFilter, page PageRequest) (EventPage, error) {
	page.Limit = clampPage(page.Limit, DefaultCandidatePageSize, MaxCandidatePageSize)
	return h.Store.ListEvents(ctx, migrationID, f, page)
}

// Watch sends a Migration's events after afterID (or, when empty, those
// written from now on) as they come, oldest first, and calls heartbeat when
// nothing happened for h.Heartbeat. It returns when ctx ends.
func (h *History) Watch(ctx context.Context, migrationID string, f EventFilter, afterID string, send func(Event) error, heartbeat func(time.Time) error) error {
	if _, err := h.Store.GetMigration(ctx, migrationID); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes, err := h.Store.WatchEvents(ctx, migrationID)
	if err != nil {
		return err
	}
	last := afterID
	if last == "" {
		if last, err = h.Store.LatestEventID(ctx, migrationID); err != nil {
			return err
		}
	}
	every := h.Heartbeat
	if every <= 0 {
		every = 15 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	// The first round answers at once: the events to catch up on, or a
	// heartbeat, so a client knows the stream is open.
	beat := true
	for {
		// Read everything after the last event sent; the Candidate filter
		// reads the Candidate's own stream.
		sent := false
		for {
			events, err := h.Store.EventsAfter(ctx, migrationID, f.CandidateID, last, 500)
			if err != nil {
				return err
			}
			for _, e := range events {
				last = e.ID
				if !f.Matches(e) {
					continue
				}
				if err := send(e); err != nil {
					return err
				}
				sent = true
				tick.Reset(every)
			}
			if len(events) < 500 {
				break
			}
		}
		if beat && !sent {
			if err := heartbeat(h.Now()); err != nil {
				return err
			}
		}
		beat = false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, open := <-changes:
			if !open && ctx.Err() == nil {
				return Unavailable(ReasonStoreUnavailable, "the event feed of %s was interrupted; watch again after %s", migrationID, last)
			}
		case <-tick.C:
			// Read again too: a Candidate's own events are not announced.
			beat = true
		}
	}
}

// Metrics is the use case of reading a fleet's figures.
type Metrics struct {
	Store MetricsStore
	Now   Clock
}

// Migration returns a Migration's figures.
func (m *Metrics) Migration(ctx context.Context, migrationID string, q MetricsQuery) (MigrationMetrics, error) {
	if q.StuckAfter <= 0 {
		q.StuckAfter = 24 * time.Hour
	}
	q.Now = m.Now()
	return m.Store.MigrationMetrics(ctx, migrationID, q)
}

// Fleet returns a page of the fleet overview.
func (m *Metrics) Fleet(ctx context.Context, page PageRequest) (FleetPage, error) {
	page.Limit = clampPage(page.Limit, DefaultMigrationPageSize, MaxMigrationPageSize)
	return m.Store.FleetOverview(ctx, page, m.Now())
}
