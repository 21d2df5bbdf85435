package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Session is a browser's sign-in, kept on the server: the browser holds
// only its id, in an HttpOnly cookie, so no script of the page can read a
// credential.
type Session struct {
	Principal Principal `json:"principal"`
	// CSRF is the token a call made with the session cookie must carry in
	// the CSRFHeader: a page of another site can make the browser send the
	// cookie, never read this.
	CSRF string `json:"csrf"`
	// TokenSHA256 is HashToken of the Loom token the session was made from
	// (empty for a JWT): the session is checked against the tokens in
	// effect at every call, so removing the token ends it, and a role
	// changed in the tokens file applies at once.
	TokenSHA256 string    `json:"token_sha256,omitempty"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
}

// SessionStore keeps the records of sessions (encoded by this package) by
// key (SessionKey of their id).
type SessionStore interface {
	// SaveSession stores a record for ttl.
	SaveSession(ctx context.Context, key string, record []byte, ttl time.Duration) error
	// TouchSession returns the record and keeps it ttl longer (its idle
	// timeout starts again); found is false when there is none.
	TouchSession(ctx context.Context, key string, ttl time.Duration) (record []byte, found bool, err error)
	// DeleteSession removes it; removing none is no error.
	DeleteSession(ctx context.Context, key string) error
}

// sessionRecordVersion is the version of a stored session's JSON; a record
// of another version is no session (its browser signs in again).
const sessionRecordVersion = 1

type sessionRecord struct {
	V int `json:"v"`
	Session
}

// Session cookies and header. Over https the cookies carry the __Host-
// prefix, which browsers accept only Secure, for the whole host and from
// that host itself (no Domain), so no sibling subdomain can plant one.
const (
	SessionCookie      = "loom_session"
	CSRFCookie         = "loom_csrf"
	SecureCookiePrefix = "__Host-"
	CSRFHeader         = "Loom-CSRF"
	DefaultSessionLife = 12 * time.Hour
	DefaultSessionIdle = 2 * time.Hour
	sessionIDBytes     = 32
)

// ErrNoSession says a session cookie names no session: never made, signed
// out, expired or idle too long.
var ErrNoSession = errors.New("the session has ended (signed out, expired or idle too long): sign in again")

// ErrBadCSRF says a call with the session cookie lacks the session's CSRF
// token.
var ErrBadCSRF = errors.New("a call with the session cookie must carry the session's CSRF token in the " + CSRFHeader + " header")

// Sessions makes, finds and ends sessions.
type Sessions struct {
	Store SessionStore
	// Authn checks the tokens sessions are made from, and (for Loom
	// tokens) that they still hold at every call.
	Authn *Authenticator
	// Lifetime bounds a session from its start; Idle ends it after that
	// long without a call. Zero: DefaultSessionLife, DefaultSessionIdle.
	Lifetime, Idle time.Duration
	Now            func() time.Time
}

func (s *Sessions) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sessions) lifetime() time.Duration {
	if s.Lifetime > 0 {
		return s.Lifetime
	}
	return DefaultSessionLife
}

// IdleTimeout is how long a session lasts without a call.
func (s *Sessions) IdleTimeout() time.Duration {
	if s.Idle > 0 {
		return min(s.Idle, s.lifetime())
	}
	return min(DefaultSessionIdle, s.lifetime())
}

// SessionKey is the name a session is stored under: a hash of its id, so
// that what Redis holds (a dump, a replica, MONITOR) cannot be replayed as
// a cookie.
func SessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// Create checks token as a bearer token is checked and starts a session of
// its caller. It returns the session's id, for the cookie.
func (s *Sessions) Create(ctx context.Context, token string) (id string, sess Session, err error) {
	token = strings.TrimSpace(token)
	p, err := s.Authn.Authenticate(ctx, "Bearer "+token)
	if err != nil {
		return "", Session{}, err
	}
	b := make([]byte, sessionIDBytes)
	c := make([]byte, sessionIDBytes)
	if _, err := rand.Read(b); err != nil {
		return "", Session{}, err
	}
	if _, err := rand.Read(c); err != nil {
		return "", Session{}, err
	}
	now := s.now().UTC()
	sess = Session{Principal: p, CSRF: base64.RawURLEncoding.EncodeToString(c), Created: now, Expires: now.Add(s.lifetime())}
	if strings.HasPrefix(token, tokenPrefix) {
		sess.TokenSHA256 = HashToken(token)
	}
	id = base64.RawURLEncoding.EncodeToString(b)
	rec, err := json.Marshal(sessionRecord{V: sessionRecordVersion, Session: sess})
	if err != nil {
		return "", Session{}, err
	}
	if err := s.Store.SaveSession(ctx, SessionKey(id), rec, s.IdleTimeout()); err != nil {
		return "", Session{}, fmt.Errorf("save session: %w", err)
	}
	return id, sess, nil
}

// hashAuthenticator authenticates a Loom token by its hash: what a session
// made from one keeps.
type hashAuthenticator interface {
	AuthenticateHash(sha256Hex string) (Principal, error)
}

// Lookup returns the session of id, and starts its idle timeout again.
// ErrNoSession when it has ended; a store error (Redis unreachable) is
// returned as is, never as ErrNoSession: a browser is not signed out
// because Redis is away.
func (s *Sessions) Lookup(ctx context.Context, id string) (Session, error) {
	if id == "" || len(id) > 2*sessionIDBytes {
		return Session{}, ErrNoSession
	}
	key := SessionKey(id)
	raw, found, err := s.Store.TouchSession(ctx, key, s.IdleTimeout())
	if err != nil {
		return Session{}, err
	}
	var rec sessionRecord
	if !found || json.Unmarshal(raw, &rec) != nil || rec.V != sessionRecordVersion {
		return Session{}, ErrNoSession
	}
	sess := rec.Session
	if !s.now().Before(sess.Expires) {
		_ = s.Store.DeleteSession(ctx, key)
		return Session{}, ErrNoSession
	}
	if sess.TokenSHA256 != "" {
		h, ok := s.Authn.Static.(hashAuthenticator)
		if !ok {
			return Session{}, ErrNoSession
		}
		p, err := h.AuthenticateHash(sess.TokenSHA256)
		if err != nil {
			// The token was revoked: so is every session made from it.
			_ = s.Store.DeleteSession(ctx, key)
			return Session{}, ErrNoSession
		}
		sess.Principal = p
	}
	return sess, nil
}

// Delete ends the session of id.
func (s *Sessions) Delete(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	return s.Store.DeleteSession(ctx, SessionKey(id))
}

// CheckCSRF compares a call's CSRF header with the session's, in constant
// time.
func (sess Session) CheckCSRF(header string) error {
	if header == "" || subtle.ConstantTimeCompare([]byte(header), []byte(sess.CSRF)) != 1 {
		return ErrBadCSRF
	}
	return nil
}
