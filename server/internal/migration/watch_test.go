package migration

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// watchedDoc is a view for the tests of watchView: a version and whether
// it ended, changed by the test, with the notices of a subscription.
type watchedDoc struct {
	version int64
	ended   bool
}

type docStore struct {
	mu      sync.Mutex
	doc     watchedDoc
	changes chan struct{}
}

func (s *docStore) set(d watchedDoc, notify bool) {
	s.mu.Lock()
	s.doc = d
	s.mu.Unlock()
	if notify {
		s.changes <- struct{}{}
	}
}

func (s *docStore) view() watchedView[watchedDoc] {
	return watchedView[watchedDoc]{
		subscribe: func(context.Context) (<-chan struct{}, error) { return s.changes, nil },
		read: func(context.Context) (watchedDoc, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.doc, nil
		},
		version:     func(d watchedDoc) int64 { return d.version },
		ended:       func(d watchedDoc) bool { return d.ended },
		interrupted: func(last int64) error { return interruptedAt(last) },
	}
}

type interruptedAt int64

func (i interruptedAt) Error() string { return "interrupted" }

func fixedNow() time.Time { return time.Unix(0, 0) }

// The view is sent at once, again on each notice of a change, and the
// watch ends with the ended view.
func TestWatchViewSendsEveryVersionUntilEnded(t *testing.T) {
	s := &docStore{doc: watchedDoc{version: 1}, changes: make(chan struct{})}
	sent := make(chan watchedDoc)
	done := make(chan error, 1)
	go func() {
		done <- watchView(context.Background(), s.view(), time.Hour, fixedNow, 0,
			func(d watchedDoc) error { sent <- d; return nil },
			func(time.Time) error { t.Error("heartbeat with a change to send"); return nil })
	}()
	if d := <-sent; d.version != 1 {
		t.Fatalf("first send %v", d)
	}
	s.set(watchedDoc{version: 2}, true)
	if d := <-sent; d.version != 2 {
		t.Fatalf("second send %v", d)
	}
	s.set(watchedDoc{version: 3, ended: true}, true)
	if d := <-sent; d.version != 3 || !d.ended {
		t.Fatalf("last send %v", d)
	}
	if err := <-done; err != nil {
		t.Fatalf("watch of an ended view returned %v", err)
	}
}

// A watch resumed with nothing new heartbeats at once; an ended view
// already sent ends it with nothing sent.
func TestWatchViewResumedWithNothingNew(t *testing.T) {
	s := &docStore{doc: watchedDoc{version: 4}, changes: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	beats := 0
	err := watchView(ctx, s.view(), time.Hour, fixedNow, 4,
		func(d watchedDoc) error { t.Fatalf("sent %v, not newer than 4", d); return nil },
		func(time.Time) error { beats++; cancel(); return nil })
	if beats != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("%d heartbeats, returned %v; want 1 at once, then the cancel", beats, err)
	}
	s.set(watchedDoc{version: 4, ended: true}, false)
	err = watchView(context.Background(), s.view(), time.Hour, fixedNow, 4,
		func(d watchedDoc) error { t.Fatalf("sent %v again", d); return nil },
		func(time.Time) error { t.Fatal("heartbeat of an ended view"); return nil })
	if err != nil {
		t.Fatalf("watch of an ended view returned %v", err)
	}
}

// A lost subscription ends the watch with the version to resume from; a
// change whose notice was lost shows at the next tick.
func TestWatchViewLostNoticesAndSubscription(t *testing.T) {
	s := &docStore{doc: watchedDoc{version: 1}, changes: make(chan struct{})}
	sent := make(chan watchedDoc)
	done := make(chan error, 1)
	go func() {
		done <- watchView(context.Background(), s.view(), 10*time.Millisecond, fixedNow, 0,
			func(d watchedDoc) error { sent <- d; return nil },
			func(time.Time) error { return nil })
	}()
	<-sent
	s.set(watchedDoc{version: 2}, false) // no notice
	if d := <-sent; d.version != 2 {
		t.Fatalf("after a lost notice, sent %v", d)
	}
	close(s.changes)
	var at interruptedAt
	if err := <-done; !errors.As(err, &at) || at != 2 {
		t.Fatalf("a lost subscription returned %v, want interrupted at version 2", err)
	}
}
