package store

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// sessions.go keeps the console's sign-ins: one key per session, which Redis
// expires after the session's idle timeout; every call made with the
// session moves that expiry on (GETEX: one round trip). The record is
// opaque here: package auth encodes it (auth.Session), and the server
// passes the Store to auth as its SessionStore.

// SaveSession stores a session's record under key (a hash of its id) for
// ttl.
func (s *Store) SaveSession(ctx context.Context, key string, record []byte, ttl time.Duration) error {
	return s.rdb.Set(ctx, sessionKey(key), record, ttl).Err()
}

// TouchSession returns the record under key, if any, and makes it expire
// ttl from now.
func (s *Store) TouchSession(ctx context.Context, key string, ttl time.Duration) (record []byte, found bool, err error) {
	b, err := s.rdb.GetEx(ctx, sessionKey(key), ttl).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// DeleteSession removes the session under key; none is no error.
func (s *Store) DeleteSession(ctx context.Context, key string) error {
	return s.rdb.Del(ctx, sessionKey(key)).Err()
}
