package migration

import (
	"context"
	"time"
)

// watchedView is one stored view a watch follows: a Run, a rollout.
type watchedView[T any] struct {
	// subscribe notifies of every stored change of the view until ctx
	// ends; the channel closes when the subscription is lost.
	subscribe func(ctx context.Context) (<-chan struct{}, error)
	read      func(ctx context.Context) (T, error)
	version   func(T) int64
	// ended says the view will not change any more: the watch ends once it
	// is read.
	ended func(T) bool
	// interrupted is the error of a lost subscription; last is the version
	// sent last, from which the client watches again.
	interrupted func(last int64) error
}

// watchView sends the view after afterVersion, then every newer version,
// and calls heartbeat when nothing changed for every (15 s when not
// positive). It returns once an ended view was read, when ctx ends, or
// when the subscription is lost.
func watchView[T any](ctx context.Context, v watchedView[T], every time.Duration, now Clock, afterVersion int64,
	send func(T) error, heartbeat func(time.Time) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribe before the first read, so no change falls between the two.
	changes, err := v.subscribe(ctx)
	if err != nil {
		return err
	}
	if every <= 0 {
		every = 15 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := afterVersion
	for first := true; ; first = false {
		view, err := v.read(ctx)
		if err != nil {
			return err
		}
		if v.version(view) > last {
			if err := send(view); err != nil {
				return err
			}
			last = v.version(view)
			tick.Reset(every)
		} else if first && !v.ended(view) {
			// A resumed watch with nothing new answers at once too, so a
			// client knows the stream is open.
			if err := heartbeat(now()); err != nil {
				return err
			}
		}
		if v.ended(view) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, open := <-changes:
			if !open && ctx.Err() == nil {
				return v.interrupted(last)
			}
		case <-tick.C:
			// Re-read on every tick too, so a change whose notice was lost
			// (a reconnect to Redis) shows within one heartbeat.
			if view, err := v.read(ctx); err == nil && v.version(view) > last {
				continue
			}
			if err := heartbeat(now()); err != nil {
				return err
			}
		}
	}
}
