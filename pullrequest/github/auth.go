package github

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	gh "github.com/google/go-github/v93/github"
)

// renewBefore is how long before its expiry an installation token is
// replaced (GitHub's last an hour).
const renewBefore = time.Minute

// appTransport authenticates calls to the API as an App installation: it
// trades a JWT signed with the App's key for an installation access token
// (POST /app/installations/{id}/access_tokens), keeps it until shortly
// before it expires, and puts it on every call to the API's origin (and
// only there).
type appTransport struct {
	app  App
	key  *rsa.PrivateKey
	api  *url.URL
	next http.RoundTripper
	// exchange gets installation tokens: a go-github client whose calls
	// carry the App's JWT.
	exchange *gh.Client
	now      func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

func newAppTransport(app App, api *url.URL, hc *http.Client) (*appTransport, error) {
	if app.ID <= 0 || app.InstallationID <= 0 {
		return nil, errors.New("github: Options.App needs the App's ID and the InstallationID")
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM(app.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("github: Options.App.PrivateKey: %w", err)
	}
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	t := &appTransport{app: app, key: key, api: api, next: next, now: time.Now}
	base := api.String()
	t.exchange, err = gh.NewClient(gh.WithURLs(&base, &base), gh.WithUserAgent("loom-pullrequest"),
		gh.WithHTTPClient(&http.Client{Timeout: hc.Timeout, Transport: jwtTransport{t}}))
	if err != nil {
		return nil, fmt.Errorf("github: %w", err)
	}
	return t, nil
}

// signJWT is the App's JSON Web Token (RS256): issued a minute ago against
// clock drift, expiring in 9 minutes (GitHub accepts at most 10).
func (t *appTransport) signJWT() (string, error) {
	now := t.now()
	return jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    strconv.FormatInt(t.app.ID, 10),
		IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(9 * time.Minute)),
	}).SignedString(t.key)
}

// installationToken returns a valid installation token, renewing it when
// it expires within renewBefore.
func (t *appTransport) installationToken(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && t.now().Add(renewBefore).Before(t.expires) {
		return t.token, nil
	}
	// Asked twice, GitHub makes two tokens; the one not kept expires.
	tok, _, err := t.exchange.Apps.CreateInstallationToken(repeatable(ctx), t.app.InstallationID, nil)
	if err != nil {
		return "", fmt.Errorf("github: installation token of App %d, installation %d: %w", t.app.ID, t.app.InstallationID, err)
	}
	if tok.GetToken() == "" {
		return "", fmt.Errorf("github: installation token of App %d: GitHub returned none", t.app.ID)
	}
	t.token, t.expires = tok.GetToken(), tok.GetExpiresAt().Time
	return t.token, nil
}

func (t *appTransport) sameOrigin(u *url.URL) bool {
	return u.Scheme == t.api.Scheme && u.Host == t.api.Host
}

func (t *appTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.sameOrigin(req.URL) {
		return t.next.RoundTrip(req)
	}
	tok, err := t.installationToken(req.Context())
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return t.next.RoundTrip(r)
}

// jwtTransport puts the App's JWT on the calls of the token exchange.
type jwtTransport struct{ t *appTransport }

func (j jwtTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !j.t.sameOrigin(req.URL) {
		return j.t.next.RoundTrip(req)
	}
	token, err := j.t.signJWT()
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("github: sign the App's JWT: %w", err)
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+token)
	return j.t.next.RoundTrip(r)
}
