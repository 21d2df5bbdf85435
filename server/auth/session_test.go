package auth_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/loomhq/loom/server/auth"
)

// memSessions is a SessionStore in memory, which can be made unreachable.
type memSessions struct {
	records map[string][]byte
	ttls    map[string]time.Duration
	down    error
}

func (m *memSessions) SaveSession(_ context.Context, key string, rec []byte, ttl time.Duration) error {
	if m.down != nil {
		return m.down
	}
	m.records[key], m.ttls[key] = rec, ttl
	return nil
}

func (m *memSessions) TouchSession(_ context.Context, key string, ttl time.Duration) ([]byte, bool, error) {
	if m.down != nil {
		return nil, false, m.down
	}
	rec, ok := m.records[key]
	m.ttls[key] = ttl
	return rec, ok, nil
}

func (m *memSessions) DeleteSession(_ context.Context, key string) error {
	if m.down != nil {
		return m.down
	}
	delete(m.records, key)
	return nil
}

func TestSessions(t *testing.T) {
	tok, hash, _ := auth.NewToken()
	st, _ := auth.NewStaticTokens([]auth.StaticToken{{Subject: "alice", Role: auth.RoleOperator, SHA256: hash}})
	store := &memSessions{records: map[string][]byte{}, ttls: map[string]time.Duration{}}
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	s := &auth.Sessions{Store: store, Authn: &auth.Authenticator{Static: st}, Lifetime: 8 * time.Hour, Idle: time.Hour,
		Now: func() time.Time { return now }}
	ctx := context.Background()

	if _, _, err := s.Create(ctx, "loom_nope"); !errors.Is(err, auth.ErrUnknownToken) {
		t.Fatalf("unknown token: %v", err)
	}
	id, sess, err := s.Create(ctx, tok)
	if err != nil || sess.Principal.Subject != "alice" || sess.CSRF == "" || !sess.Expires.Equal(now.Add(8*time.Hour)) {
		t.Fatalf("create: %+v %v", sess, err)
	}
	// Stored under a hash of the id, never the id (the cookie) or the token.
	key := auth.SessionKey(id)
	if _, ok := store.records[id]; ok || store.records[key] == nil || store.ttls[key] != time.Hour {
		t.Fatalf("stored %v", store.ttls)
	}
	if bytes.Contains(store.records[key], []byte(tok)) || bytes.Contains(store.records[key], []byte(id)) {
		t.Fatal("the token is stored")
	}
	got, err := s.Lookup(ctx, id)
	if err != nil || got.Principal.Role != auth.RoleOperator || got.CheckCSRF(sess.CSRF) != nil || got.CheckCSRF("") == nil ||
		got.CheckCSRF(sess.CSRF+"x") == nil {
		t.Fatalf("lookup: %+v %v", got, err)
	}
	if _, err := s.Lookup(ctx, id+"x"); !errors.Is(err, auth.ErrNoSession) {
		t.Errorf("another id: %v", err)
	}

	// Redis away is an error of its own, never "no session".
	down := errors.New("redis unreachable")
	store.down = down
	if _, err := s.Lookup(ctx, id); !errors.Is(err, down) || errors.Is(err, auth.ErrNoSession) {
		t.Errorf("store down: %v", err)
	}
	store.down = nil

	// Past its lifetime a session ends, however busy.
	now = now.Add(8 * time.Hour)
	if _, err := s.Lookup(ctx, id); !errors.Is(err, auth.ErrNoSession) {
		t.Errorf("past its lifetime: %v", err)
	}
	if _, ok := store.records[key]; ok {
		t.Error("an expired session is kept")
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Error(err)
	}
}
