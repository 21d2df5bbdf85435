package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// JWTConfig configures OIDC / JWT access tokens.
type JWTConfig struct {
	// Issuer and Audience the tokens must carry.
	Issuer   string
	Audience string
	// JWKSURL or JWKSFile holds the issuer's public keys (one of them).
	JWKSURL  string
	JWKSFile string
	// RoleClaim names the claim holding the caller's role; default
	// "loom_role".
	RoleClaim string
	// MigrationsClaim names the claim listing the Migration ids (or id
	// prefixes ending in '*') a migrator owns; default "loom_migrations".
	MigrationsClaim string
}

// JWTVerifier authenticates signed JWT access tokens with go-jose.
type JWTVerifier struct {
	cfg    JWTConfig
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	keys    jose.JSONWebKeySet
	fetched time.Time
}

// NewJWTVerifier checks cfg and loads the keys once.
func NewJWTVerifier(ctx context.Context, cfg JWTConfig) (*JWTVerifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("jwt: issuer and audience are required")
	}
	if (cfg.JWKSURL == "") == (cfg.JWKSFile == "") {
		return nil, errors.New("jwt: give exactly one of a JWKS URL and a JWKS file")
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = "loom_role"
	}
	if cfg.MigrationsClaim == "" {
		cfg.MigrationsClaim = "loom_migrations"
	}
	v := &JWTVerifier{cfg: cfg, client: &http.Client{Timeout: 10 * time.Second}, now: time.Now}
	if err := v.refresh(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// refresh reloads the key set.
func (v *JWTVerifier) refresh(ctx context.Context) error {
	var raw []byte
	var err error
	if v.cfg.JWKSFile != "" {
		raw, err = os.ReadFile(v.cfg.JWKSFile)
	} else {
		raw, err = v.fetch(ctx)
	}
	if err != nil {
		return fmt.Errorf("jwt: load keys: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return fmt.Errorf("jwt: keys: %w", err)
	}
	v.mu.Lock()
	v.keys, v.fetched = set, v.now()
	v.mu.Unlock()
	return nil
}

func (v *JWTVerifier) fetch(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	res, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", v.cfg.JWKSURL, res.Status)
	}
	return io.ReadAll(io.LimitReader(res.Body, 1<<20))
}

// signatureAlgorithms are the algorithms accepted; "none" and HMAC never.
var signatureAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// Authenticate verifies a JWT and maps its claims to a Principal.
func (v *JWTVerifier) Authenticate(ctx context.Context, token string) (Principal, error) {
	tok, err := jwt.ParseSigned(token, signatureAlgorithms)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrUnknownToken, err)
	}
	key, err := v.key(ctx, tok)
	if err != nil {
		return Principal{}, err
	}
	var std jwt.Claims
	var extra map[string]any
	if err := tok.Claims(key, &std, &extra); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrUnknownToken, err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: v.cfg.Issuer, AnyAudience: jwt.Audience{v.cfg.Audience}, Time: v.now()}, time.Minute); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrUnknownToken, err)
	}
	if std.Expiry == nil {
		return Principal{}, fmt.Errorf("%w: the token has no expiry", ErrUnknownToken)
	}
	role, _ := extra[v.cfg.RoleClaim].(string)
	p := Principal{Subject: std.Subject, Role: Role(role), Scope: AllMigrations}
	if !p.Role.Valid() {
		return Principal{}, fmt.Errorf("%w: claim %s is %q, not a Loom role", ErrNoRole, v.cfg.RoleClaim, role)
	}
	if p.Role == RoleMigrator {
		p.Scope = Scope{}
		list, _ := extra[v.cfg.MigrationsClaim].([]any)
		for _, item := range list {
			s, _ := item.(string)
			if prefix, ok := strings.CutSuffix(s, "*"); ok {
				p.Scope.Prefixes = append(p.Scope.Prefixes, prefix)
			} else if s != "" {
				p.Scope.IDs = append(p.Scope.IDs, s)
			}
		}
	}
	if p.Subject == "" {
		p.Subject = "jwt"
	}
	return p, nil
}

// ErrNoRole says an authenticated token carries no Loom role.
var ErrNoRole = errors.New("token carries no Loom role")

// key finds the token's verification key, reloading the key set once (at
// most every 30 s) when the token names a key not seen yet: the issuer
// rotated its keys.
func (v *JWTVerifier) key(ctx context.Context, tok *jwt.JSONWebToken) (any, error) {
	kid := ""
	if len(tok.Headers) > 0 {
		kid = tok.Headers[0].KeyID
	}
	for attempt := 0; attempt < 2; attempt++ {
		v.mu.Lock()
		keys, fetched := v.keys, v.fetched
		v.mu.Unlock()
		for _, k := range keys.Keys {
			if kid == "" || k.KeyID == kid {
				return k.Key, nil
			}
		}
		if attempt == 0 && v.now().Sub(fetched) > 30*time.Second {
			if err := v.refresh(ctx); err != nil {
				return nil, err
			}
		}
	}
	return nil, fmt.Errorf("%w: no key %q in the issuer's key set", ErrUnknownToken, kid)
}
