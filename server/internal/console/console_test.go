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
	h := Handler()
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
	h := Handler()
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
