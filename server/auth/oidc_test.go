package auth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDiscoverReadsAndChecksTheProvidersConfiguration(t *testing.T) {
	var doc map[string]any
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/realms/loom/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(doc)
	}))
	defer idp.Close()
	issuer := idp.URL + "/realms/loom"
	good := func() map[string]any {
		return map[string]any{
			"issuer":                           issuer,
			"authorization_endpoint":           idp.URL + "/auth",
			"token_endpoint":                   idp.URL + "/token",
			"jwks_uri":                         idp.URL + "/keys",
			"code_challenge_methods_supported": []string{"plain", "S256"},
		}
	}
	doc = good()
	d, err := Discover(context.Background(), idp.Client(), issuer)
	if err != nil {
		t.Fatal(err)
	}
	if d.TokenEndpoint != idp.URL+"/token" || d.AuthorizationEndpoint != idp.URL+"/auth" || d.JWKSURI != idp.URL+"/keys" {
		t.Errorf("discovered %+v", d)
	}

	cases := []struct {
		name   string
		change func(map[string]any)
		issuer string
		want   string
	}{
		{"another issuer", func(m map[string]any) { m["issuer"] = idp.URL }, issuer, "names issuer"},
		{"no PKCE S256", func(m map[string]any) { m["code_challenge_methods_supported"] = []string{"plain"} }, issuer, "S256"},
		{"relative token endpoint", func(m map[string]any) { m["token_endpoint"] = "/token" }, issuer, "token_endpoint"},
		{"no authorization endpoint", func(m map[string]any) { delete(m, "authorization_endpoint") }, issuer, "authorization_endpoint"},
		{"not a provider", func(map[string]any) {}, idp.URL + "/nothing", "404"},
	}
	for _, c := range cases {
		doc = good()
		c.change(doc)
		if _, err := Discover(context.Background(), idp.Client(), c.issuer); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	// Listing no methods at all is allowed: the field is optional.
	doc = good()
	delete(doc, "code_challenge_methods_supported")
	if _, err := Discover(context.Background(), idp.Client(), issuer); err != nil {
		t.Errorf("without code_challenge_methods_supported: %v", err)
	}
}
