// Package auth decides who is calling and what they may do: bearer tokens
// (static, stored hashed, or OIDC/JWT access tokens), roles and Migration
// ownership, and the callback tokens that bind a Migrator's report to the
// step and attempt it was dispatched.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Role is what a caller may do.
type Role string

// The roles, from least to most powerful; admin may do everything.
const (
	RoleViewer   Role = "viewer"
	RoleMigrator Role = "migrator"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case RoleViewer, RoleMigrator, RoleOperator, RoleAdmin:
		return true
	}
	return false
}

// Principal is an authenticated caller.
type Principal struct {
	// Subject names the caller in records ("alice", "go-upgrader").
	Subject string
	Role    Role
	// Scope limits a Migrator to the Migrations it owns.
	Scope Scope
}

// Scope lists the Migrations a caller may touch: exact ids and id prefixes.
// The zero Scope owns nothing; AllMigrations owns everything.
type Scope struct {
	All      bool     `json:"all,omitempty"`
	IDs      []string `json:"migrations,omitempty"`
	Prefixes []string `json:"migration_prefixes,omitempty"`
}

// AllMigrations is the scope of a caller not limited to some Migrations.
var AllMigrations = Scope{All: true}

// Owns reports whether the scope covers Migration id.
func (s Scope) Owns(id string) bool {
	if s.All {
		return true
	}
	for _, x := range s.IDs {
		if x == id {
			return true
		}
	}
	for _, p := range s.Prefixes {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return false
}

// tokenPrefix marks Loom's static tokens, so that they are recognisable in
// logs and by secret scanners.
const tokenPrefix = "loom_"

// NewToken returns a fresh random static token and its hash for the tokens
// file.
func NewToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token), nil
}

// HashToken is how a static token is stored: hex SHA-256. Tokens carry 256
// random bits, so a fast hash is enough: there is nothing to brute-force.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// StaticToken is one entry of a tokens file.
type StaticToken struct {
	Subject string `json:"subject"`
	Role    Role   `json:"role"`
	// SHA256 is HashToken of the token; the token itself is never stored.
	SHA256 string `json:"sha256"`
	Scope
}

// TokensFile is the tokens file of `loom serve`:
//
//	{"tokens": [
//	  {"subject": "alice", "role": "operator", "sha256": "…"},
//	  {"subject": "go-upgrader", "role": "migrator", "migrations": ["go-upgrade"], "sha256": "…"}
//	]}
type TokensFile struct {
	Tokens []StaticToken `json:"tokens"`
}

// LoadTokens reads and checks a tokens file.
func LoadTokens(path string) (*StaticTokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	var f TokensFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return NewStaticTokens(f.Tokens)
}

// StaticTokens authenticates the tokens of a tokens file.
type StaticTokens struct {
	byHash map[string]StaticToken
}

// NewStaticTokens checks entries and indexes them by hash.
func NewStaticTokens(entries []StaticToken) (*StaticTokens, error) {
	s := &StaticTokens{byHash: make(map[string]StaticToken, len(entries))}
	for i, e := range entries {
		switch {
		case e.Subject == "":
			return nil, fmt.Errorf("token %d: subject is empty", i)
		case !e.Role.Valid():
			return nil, fmt.Errorf("token %d (%s): role %q is not viewer, operator, migrator or admin", i, e.Subject, e.Role)
		case len(e.SHA256) != 64:
			return nil, fmt.Errorf("token %d (%s): sha256 must be the 64 hex digits of the token's SHA-256", i, e.Subject)
		case e.Role == RoleMigrator && !e.Scope.All && len(e.IDs) == 0 && len(e.Prefixes) == 0:
			return nil, fmt.Errorf("token %d (%s): a migrator token needs the migrations it owns (migrations or migration_prefixes)", i, e.Subject)
		}
		if _, err := hex.DecodeString(e.SHA256); err != nil {
			return nil, fmt.Errorf("token %d (%s): sha256: %w", i, e.Subject, err)
		}
		if _, dup := s.byHash[strings.ToLower(e.SHA256)]; dup {
			return nil, fmt.Errorf("token %d (%s): the same token appears twice", i, e.Subject)
		}
		s.byHash[strings.ToLower(e.SHA256)] = e
	}
	return s, nil
}

// ErrUnknownToken says a token is not one this server knows.
var ErrUnknownToken = errors.New("unknown token")

// Authenticate returns the principal of a static token.
func (s *StaticTokens) Authenticate(token string) (Principal, error) {
	return s.AuthenticateHash(HashToken(token))
}

// AuthenticateHash returns the principal of the static token whose hash is
// h (HashToken), if it is in the file: how a session made from the token
// is checked at every call.
func (s *StaticTokens) AuthenticateHash(h string) (Principal, error) {
	e, ok := s.byHash[h]
	// The map lookup already chose; compare anyway in constant time so the
	// check does not depend on how much of the hash matched.
	if !ok || subtle.ConstantTimeCompare([]byte(h), []byte(strings.ToLower(e.SHA256))) != 1 {
		return Principal{}, ErrUnknownToken
	}
	scope := e.Scope
	if e.Role != RoleMigrator {
		scope = AllMigrations
	}
	return Principal{Subject: e.Subject, Role: e.Role, Scope: scope}, nil
}
