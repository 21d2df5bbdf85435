package console

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServesTheBuiltConsoleAndItsRoutes(t *testing.T) {
	h := Handler(Options{})
	index, err := fs.ReadFile(dist, "dist/index.html")
	if err != nil {
		t.Fatal(err)
	}
	// Client-side routes, Candidate ids with slashes and dots included, get
	// the page itself, never cached (it names the current assets).
	for _, path := range []string{"/", "/index.html", "/m/go-upgrade", "/m/go-upgrade/c/acme/billing.v2", "/history?m=x"} {
		r := get(t, h, http.MethodGet, path)
		if r.StatusCode != http.StatusOK || body(t, r) != string(index) {
			t.Errorf("GET %s: %d, not index.html", path, r.StatusCode)
		}
		if cc := r.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q", path, cc)
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	// What index.html loads is there, and every asset is served, its
	// hashed name cached for good.
	for _, ref := range regexp.MustCompile(`/assets/[^"]+`).FindAllString(string(index), -1) {
		if _, err := fs.Stat(dist, "dist"+ref); err != nil {
			t.Errorf("index.html loads %s, which is not in dist: dist is stale", ref)
		}
	}
	assets, err := fs.Glob(dist, "dist/assets/*")
	if err != nil || len(assets) == 0 {
		t.Fatalf("no assets in dist: %v", err)
	}
	for _, a := range assets {
		name := strings.TrimPrefix(a, "dist")
		r := get(t, h, http.MethodGet, name)
		if r.StatusCode != http.StatusOK || !strings.Contains(r.Header.Get("Cache-Control"), "immutable") {
			t.Errorf("GET %s: %d, Cache-Control %q", name, r.StatusCode, r.Header.Get("Cache-Control"))
		}
	}
}

func TestLeavesTheAPIsRequestsAlone(t *testing.T) {
	h := Handler(Options{})
	cases := []struct{ method, target string }{
		{http.MethodPost, "/loom.v1.NoSuchService/Call"},             // Connect, gRPC, gRPC-Web
		{http.MethodGet, "/loom.v1.RegistryService/Nope?connect=v1"}, // Connect GET
		{http.MethodGet, "/assets/index-gone.js"},                    // an asset of an older build
		{http.MethodDelete, "/"},
	}
	for _, c := range cases {
		if r := get(t, h, c.method, c.target); r.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: %d, want 404", c.method, c.target, r.StatusCode)
		}
	}
}

func TestPublishesOIDCSignInAndLetsThePageReachTheTokenEndpoint(t *testing.T) {
	// Without OIDC the page reaches only its own origin.
	plain := get(t, Handler(Options{}), http.MethodGet, "/")
	if csp := plain.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self';") {
		t.Errorf("without OIDC: Content-Security-Policy %q", csp)
	}
	if strings.Contains(body(t, plain), "loom-oidc") {
		t.Error("without OIDC the page announces a provider")
	}
	h := Handler(Options{OIDC: &OIDC{
		Issuer: "https://idp.example.com/realms/a", ClientID: `loom "console"`,
		AuthorizationEndpoint: "https://idp.example.com/auth", TokenEndpoint: "https://tokens.example.com:8443/token",
		Scopes: []string{"openid", "email"},
	}})
	for _, path := range []string{"/", "/signin/callback?code=x&state=y"} {
		r := get(t, h, http.MethodGet, path)
		page := body(t, r)
		m := regexp.MustCompile(`<meta name="loom-oidc" content="([^"]*)" />`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("GET %s: no loom-oidc meta tag in %s", path, page)
		}
		// The JSON is escaped for the attribute: quotes in values stay inside it.
		if want := `&#34;clientId&#34;:&#34;loom \&#34;console\&#34;&#34;`; !strings.Contains(m[1], want) {
			t.Errorf("GET %s: meta content %s lacks %s", path, m[1], want)
		}
		if !strings.Contains(m[1], "https://tokens.example.com:8443/token") || !strings.Contains(m[1], "https://idp.example.com/auth") {
			t.Errorf("GET %s: meta content %s lacks the endpoints", path, m[1])
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' https://tokens.example.com:8443;") {
			t.Errorf("GET %s: Content-Security-Policy %q does not allow the token endpoint", path, csp)
		}
	}
}
