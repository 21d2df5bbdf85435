package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/console"
	"github.com/loomhq/loom/server/internal/dispatch"
)

// SecurityConfig says who may call Loom, how Loom proves itself to
// Migrators, and where Loom may call.
type SecurityConfig struct {
	// Insecure serves everyone without a token: only for a trusted network.
	// Otherwise at least one of TokensFile and JWT is required.
	Insecure bool
	// TokensFile holds static tokens, hashed (see auth.TokensFile). It is
	// reread within seconds of a change (see tokensReloadEvery), so tokens
	// are added and revoked without a restart.
	TokensFile string
	// JWT accepts OIDC / JWT access tokens when its Issuer is set. Without
	// a JWKS URL or file, the keys are found through the issuer's OpenID
	// configuration.
	JWT auth.JWTConfig
	// ConsoleOIDC lets the console sign people in at the JWT issuer, when
	// its ClientID is set.
	ConsoleOIDC ConsoleOIDC
	// KeysFile holds the callback-token and call-signing keys (`loom keys
	// init` writes one); required unless Insecure.
	KeysFile string
	// ProtectHealth requires a token for gRPC health and reflection too.
	ProtectHealth bool
	// RateLimit is each caller's sustained calls per second (Burst its
	// burst); 0 disables it.
	RateLimit float64
	Burst     int
	// MaxRequestBytes bounds one request message; 0 means 4 MiB.
	MaxRequestBytes int
	// AllowMigratorNets are networks Migrators may live in although refused
	// by default (loopback, link-local, metadata), e.g. "127.0.0.0/8".
	AllowMigratorNets []string
	// SessionLifetime bounds a browser's sign-in (a session cookie, see
	// SessionService) from its start, SessionIdleTimeout ends it after that
	// long without a call; zero takes auth.DefaultSessionLife and
	// auth.DefaultSessionIdle.
	SessionLifetime    time.Duration
	SessionIdleTimeout time.Duration
	// AllowMigratorHosts, when not empty, are the only Migrator host names
	// Loom calls ("*.svc.cluster.local" allows a whole domain).
	AllowMigratorHosts []string
}

// ConsoleOIDC configures the console's sign-in at an OpenID Provider: the
// authorization-code flow with PKCE (S256) of a public client, the browser
// exchanging the code itself. The provider must allow the console's origin
// (CORS) at its token endpoint and its redirect URI, the console's origin
// followed by /signin/callback.
type ConsoleOIDC struct {
	// ClientID is the console's client at the provider.
	ClientID string
	// Scopes to ask for; empty means openid, profile and email.
	Scopes []string
	// UseIDToken sends the ID token to Loom rather than the access token,
	// for providers whose access tokens are opaque; the audience checked
	// (-jwt-audience) is then the client id.
	UseIDToken bool
}

// TLSConfig serves the API over TLS and secures calls to Migrators.
type TLSConfig struct {
	// CertFile and KeyFile serve TLS; they are reread when they change, so
	// a renewed certificate needs no restart.
	CertFile string
	KeyFile  string
	// ClientCAFile verifies client certificates when callers present one
	// (mutual TLS for Migrators); a certificate that does not verify is
	// refused.
	ClientCAFile string
	// MigratorCAFile verifies https:// Migrators signed by a private CA.
	MigratorCAFile string
	// MigratorCertFile and MigratorKeyFile are the client certificate Loom
	// presents to Migrators that require mutual TLS.
	MigratorCertFile string
	MigratorKeyFile  string
}

func (c SecurityConfig) validate() error {
	if c.Insecure {
		return nil
	}
	if c.TokensFile == "" && c.JWT.Issuer == "" {
		return errors.New("authentication: give a tokens file (-tokens-file) or a JWT issuer (-jwt-issuer); " +
			"or, on a trusted network only, -insecure-no-auth")
	}
	if c.ConsoleOIDC.ClientID != "" && c.JWT.Issuer == "" {
		return errors.New("oidc: the console's client id (-oidc-client-id) needs the provider as JWT issuer (-jwt-issuer)")
	}
	if c.SessionLifetime < 0 || c.SessionIdleTimeout < 0 {
		return errors.New("session lifetime and idle timeout: must not be negative")
	}
	if c.KeysFile == "" {
		return errors.New("keys: give a keys file (-keys-file); `loom keys init -out keys.json` writes one")
	}
	return nil
}

// security is what SecurityConfig and TLSConfig build.
type security struct {
	authn *auth.Authenticator
	// tokens are the tokens file's, reread while the server serves; nil
	// without a tokens file.
	tokens    *auth.FileTokens
	callbacks *auth.Callbacks
	signer    *auth.Signer
	policy    *dispatch.Policy
	migrTLS   *tls.Config
	// signIn is what the console needs for OIDC sign-in; nil without it.
	signIn *console.OIDC
}

func buildSecurity(ctx context.Context, c SecurityConfig, t TLSConfig) (*security, error) {
	s := &security{policy: &dispatch.Policy{Hosts: c.AllowMigratorHosts}}
	for _, cidr := range c.AllowMigratorNets {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			return nil, fmt.Errorf("allowed migrator network %q: %w", cidr, err)
		}
		s.policy.AllowNets = append(s.policy.AllowNets, n)
	}
	if !c.Insecure {
		s.authn = &auth.Authenticator{}
		if c.TokensFile != "" {
			st, err := auth.OpenTokensFile(c.TokensFile)
			if err != nil {
				return nil, err
			}
			s.authn.Static, s.tokens = st, st
		}
		if c.JWT.Issuer != "" {
			if err := s.discover(ctx, &c); err != nil {
				return nil, err
			}
			v, err := auth.NewJWTVerifier(ctx, c.JWT)
			if err != nil {
				return nil, err
			}
			s.authn.JWT = v
		}
		var err error
		if s.callbacks, s.signer, err = auth.LoadKeys(c.KeysFile); err != nil {
			return nil, err
		}
	}
	if t.MigratorCAFile != "" || t.MigratorCertFile != "" {
		s.migrTLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if t.MigratorCAFile != "" {
			pool, err := loadPool(t.MigratorCAFile)
			if err != nil {
				return nil, err
			}
			s.migrTLS.RootCAs = pool
		}
		if t.MigratorCertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.MigratorCertFile, t.MigratorKeyFile)
			if err != nil {
				return nil, fmt.Errorf("migrator client certificate: %w", err)
			}
			s.migrTLS.Certificates = []tls.Certificate{cert}
		}
	}
	return s, nil
}

// discover reads the issuer's OpenID configuration when the console signs in
// there or the keys are to be found through it.
func (s *security) discover(ctx context.Context, c *SecurityConfig) error {
	if c.ConsoleOIDC.ClientID == "" && (c.JWT.JWKSURL != "" || c.JWT.JWKSFile != "") {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	d, err := auth.Discover(dctx, http.DefaultClient, c.JWT.Issuer)
	if err != nil {
		return err
	}
	if c.JWT.JWKSURL == "" && c.JWT.JWKSFile == "" {
		c.JWT.JWKSURL = d.JWKSURI
	}
	if o := c.ConsoleOIDC; o.ClientID != "" {
		scopes := o.Scopes
		if len(scopes) == 0 {
			scopes = []string{"openid", "profile", "email"}
		}
		s.signIn = &console.OIDC{
			Issuer:                d.Issuer,
			ClientID:              o.ClientID,
			AuthorizationEndpoint: d.AuthorizationEndpoint,
			TokenEndpoint:         d.TokenEndpoint,
			EndSessionEndpoint:    d.EndSessionEndpoint,
			Scopes:                scopes,
			UseIDToken:            o.UseIDToken,
		}
	}
	return nil
}

// serverTLS is the TLS configuration of the API, nil without a certificate.
func serverTLS(t TLSConfig) (*tls.Config, error) {
	if t.CertFile == "" && t.KeyFile == "" {
		return nil, nil
	}
	r := &certReloader{certFile: t.CertFile, keyFile: t.KeyFile}
	if _, err := r.get(nil); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.get, NextProtos: []string{"h2", "http/1.1"}}
	if t.ClientCAFile != "" {
		pool, err := loadPool(t.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// certReloader serves the certificate of two files, reloading them when
// their modification time changes (checked at most once a second).
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	mod     time.Time
	checked time.Time
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cert != nil && time.Since(r.checked) < time.Second {
		return r.cert, nil
	}
	r.checked = time.Now()
	ci, err1 := os.Stat(r.certFile)
	ki, err2 := os.Stat(r.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		if r.cert != nil {
			return r.cert, nil // keep serving the last good one
		}
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	mod := ci.ModTime()
	if ki.ModTime().After(mod) {
		mod = ki.ModTime()
	}
	if r.cert != nil && mod.Equal(r.mod) {
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		if r.cert != nil {
			return r.cert, nil // a half-written renewal: keep the old one
		}
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	r.cert, r.mod = &cert, mod
	return r.cert, nil
}

// tokensReloadEvery is how often a serving server looks at its tokens file
// for changes: a Stat, and a read only when the file changed.
const tokensReloadEvery = 2 * time.Second

// reloadTokens rereads the tokens file when it changes, every every, until
// ctx ends. A file that cannot be read or does not check keeps the tokens
// loaded before, and says why once (not at every look).
func reloadTokens(ctx context.Context, tokens *auth.FileTokens, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := tokens.Reload()
		switch {
		case err != nil:
			if err.Error() != lastErr {
				log.Error("the tokens file cannot be used: the tokens loaded before stay in effect until it is fixed",
					"file", tokens.Path(), "error", err)
			}
			lastErr = err.Error()
		case changed:
			log.Info("tokens file reloaded", "file", tokens.Path(), "tokens", tokens.Len())
			lastErr = ""
		}
	}
}
