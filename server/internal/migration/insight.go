package migration

import (
	"context"
	"strings"
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
	if page.After != "" && !validEventID(page.After) {
		return EventPage{}, InvalidArgument("page_token", ReasonInvalidPageToken, "the page token names no event")
	}
	page.Limit = clampPage(page.Limit, DefaultCandidatePageSize, MaxCandidatePageSize)
	if f.CandidateID != "" && f.CandidatePrefix != "" && !strings.HasPrefix(f.CandidateID, f.CandidatePrefix) {
		return EventPage{}, nil // no event is of both
	}
	return h.Store.ListEvents(ctx, migrationID, f, page)
}

// Watch sends a Migration's events after afterID (or, when empty, those
// written from now on) as they come, oldest first, and calls heartbeat when
// nothing happened for h.Heartbeat. It returns when ctx ends.
func (h *History) Watch(ctx context.Context, migrationID string, f EventFilter, afterID string, send func(Event) error, heartbeat func(time.Time) error) error {
	if afterID != "" && !validEventID(afterID) {
		return InvalidArgument("after_id", ReasonInvalidEventID, "%q is not the id of an event (as \"1733570000000-0\")", afterID)
	}
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

// WatchFleet sends the events written from now on in every Migration that
// owned admits, as they come, and calls heartbeat when nothing happened for
// h.Heartbeat (and once at the start). It returns when ctx ends.
//
// The fleet's Pub/Sub channel says which Migration grew; each Migration's
// stream holds the events, read from a cursor per Migration. A name the
// channel drops (a reconnection, a slow reader) is made up for on every
// heartbeat, which reads every Migration's cursor again.
func (h *History) WatchFleet(ctx context.Context, f EventFilter, owned func(migrationID string) bool, send func(Event) error, heartbeat func(time.Time) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes, err := h.Store.WatchFleet(ctx)
	if err != nil {
		return err
	}
	start, err := h.Store.EventIDNow(ctx)
	if err != nil {
		return err
	}
	cursors := map[string]string{}
	// catchUp sends what Migration m wrote after its cursor.
	catchUp := func(m string) (sent bool, err error) {
		if !owned(m) {
			return false, nil
		}
		last, ok := cursors[m]
		if !ok {
			last = start
		}
		for {
			events, err := h.Store.EventsAfter(ctx, m, "", last, 500)
			if err != nil {
				return sent, err
			}
			for _, e := range events {
				last = e.ID
				if !f.Matches(e) {
					continue
				}
				if err := send(e); err != nil {
					return sent, err
				}
				sent = true
			}
			cursors[m] = last
			if len(events) < 500 {
				return sent, nil
			}
		}
	}
	every := h.Heartbeat
	if err := heartbeat(h.Now()); err != nil {
		return err
	}
	if every <= 0 {
		every = 15 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, open := <-changes:
			if !open {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return Unavailable(ReasonStoreUnavailable, "the fleet's event feed was interrupted; watch again")
			}
			sent, err := catchUp(m)
			if err != nil {
				return err
			}
			if sent {
				tick.Reset(every)
			}
		case <-tick.C:
			ids, err := h.Store.MigrationIDs(ctx)
			if err != nil {
				return err
			}
			// Deleted Migrations keep their history for a while: their
			// cursors are read too.
			known := make(map[string]bool, len(ids))
			for _, m := range ids {
				known[m] = true
			}
			for m := range cursors {
				if !known[m] {
					ids = append(ids, m)
				}
			}
			any := false
			for _, m := range ids {
				sent, err := catchUp(m)
				if err != nil {
					return err
				}
				any = any || sent
			}
			if !any {
				if err := heartbeat(h.Now()); err != nil {
					return err
				}
			}
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

// validEventID reports whether id has the form of an event id: the
// store's stream ids, "<unix ms>-<sequence>" (or "<unix ms>"), which Redis
// refuses to read from otherwise.
func validEventID(id string) bool {
	ms, seq, hasSeq := strings.Cut(id, "-")
	return digits(ms) && (!hasSeq || digits(seq))
}

func digits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
