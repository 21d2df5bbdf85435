package server_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/server"
	"github.com/loomhq/loom/server/auth"
)

// With a console client id, the server reads the issuer's OpenID
// configuration: the console's page names the provider's endpoints and may
// reach its token endpoint, and the issuer's tokens are verified with the
// keys its configuration names (no -jwt-jwks-url given).
func TestTheConsoleSignsInAtTheIssuerItDiscovers(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: string(jose.EdDSA), Use: "sig"}}})
	mux := http.NewServeMux()
	idp := httptest.NewServer(mux)
	defer idp.Close()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": idp.URL, "authorization_endpoint": idp.URL + "/authorize", "token_endpoint": idp.URL + "/token",
			"jwks_uri": idp.URL + "/keys", "code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) })

	_, keysFile, _ := credentials(t)
	w := newWorld(t)
	w.configure = func(c *server.Config) {
		c.Security = server.SecurityConfig{
			KeysFile:    keysFile,
			JWT:         auth.JWTConfig{Issuer: idp.URL, Audience: "loom-console"},
			ConsoleOIDC: server.ConsoleOIDC{ClientID: "loom-console"},
		}
	}
	l := w.startLoom()

	res, err := http.Get(l.url + "/m/go-upgrade")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	page, _ := io.ReadAll(res.Body)
	m := regexp.MustCompile(`<meta name="loom-oidc" content="([^"]*)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("the console's page names no provider: %s", page)
	}
	var published map[string]any
	if err := json.Unmarshal([]byte(html.UnescapeString(string(m[1]))), &published); err != nil {
		t.Fatal(err)
	}
	if published["clientId"] != "loom-console" || published["tokenEndpoint"] != idp.URL+"/token" ||
		published["authorizationEndpoint"] != idp.URL+"/authorize" || published["issuer"] != idp.URL {
		t.Errorf("published %v", published)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' "+idp.URL+";") {
		t.Errorf("Content-Security-Policy %q does not let the page reach the token endpoint", csp)
	}

	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: "k1"}}, nil)
	token, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: idp.URL, Subject: "ada", Audience: jwt.Audience{"loom-console"},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Claims(map[string]any{"loom_role": "operator"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	caller, err := l.as(token).registry.GetCaller(ctx, connect.NewRequest(&loomv1.GetCallerRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if caller.Msg.GetSubject() != "ada" || caller.Msg.GetRole() != "operator" {
		t.Errorf("caller %v", caller.Msg)
	}
}
