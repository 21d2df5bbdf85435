package api_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/api"
	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/redistest"
	"github.com/loomhq/loom/server/internal/store"
)

// Over https the session's cookies are Secure and carry the __Host- prefix
// (no sibling host can plant one), the browser speaks HTTP/2 with Loom, and
// a page of the same host over plain http is another origin.
func TestSessionCookiesOverTLSAreSecure(t *testing.T) {
	rs := redistest.Start(t)
	st := store.New(redis.NewClient(&redis.Options{Addr: rs.Addr()}))
	tok, hash, _ := auth.NewToken()
	static, err := auth.NewStaticTokens([]auth.StaticToken{{Subject: "alice", Role: auth.RoleOperator, SHA256: hash}})
	if err != nil {
		t.Fatal(err)
	}
	authn := &auth.Authenticator{Static: static}
	key, _ := auth.NewCallbackKey("c1")
	callbacks, _ := auth.NewCallbacks(key)
	clock := func() time.Time { return time.Now().UTC() }
	srv := httptest.NewUnstartedServer(api.NewHandler(api.Options{
		Registry:      &migration.Registry{Store: st, Now: clock},
		Discovery:     &migration.Discovery{Store: st, Now: clock},
		Runs:          &migration.Runs{Store: st, Now: clock},
		History:       &migration.History{Store: st, Now: clock},
		Metrics:       &migration.Metrics{Store: st, Now: clock},
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:         st.Ping,
		Authenticator: authn,
		Sessions:      &auth.Sessions{Store: st, Authn: authn},
		Callbacks:     callbacks,
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	client := srv.Client()

	call := func(procedure, origin, body string, cookies []*http.Cookie, csrf string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+procedure, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", origin)
		if csrf != "" {
			req.Header.Set(auth.CSRFHeader, csrf)
		}
		for _, c := range cookies {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.ProtoMajor != 2 {
			t.Errorf("%s over %s, not HTTP/2", procedure, res.Proto)
		}
		var e struct{ Code, CsrfToken string }
		_ = json.NewDecoder(res.Body).Decode(&e)
		if res.StatusCode == http.StatusOK {
			return res, e.CsrfToken
		}
		return res, "error:" + e.Code
	}

	res, csrf := call("/loom.v1.SessionService/CreateSession", srv.URL, `{"token": "`+tok+`"}`, nil, "")
	if strings.HasPrefix(csrf, "error:") {
		t.Fatalf("CreateSession: %s", csrf)
	}
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" || !strings.HasPrefix(c.Name, "__Host-") {
			t.Errorf("cookie %q", c.String())
		}
		if c.Name == "__Host-"+auth.SessionCookie {
			session = c
		}
	}
	if session == nil || !session.HttpOnly {
		t.Fatalf("cookies %v", res.Header.Values("Set-Cookie"))
	}
	// (GetCaller's answer has no csrf_token: "" is its success.)
	if _, code := call("/loom.v1.RegistryService/GetCaller", srv.URL, `{}`, []*http.Cookie{session}, csrf); code != "" {
		t.Fatalf("GetCaller with the session: %s", code)
	}
	// The same host over plain http is another origin: refused.
	plain := "http://" + strings.TrimPrefix(srv.URL, "https://")
	if _, code := call("/loom.v1.RegistryService/GetCaller", plain, `{}`, []*http.Cookie{session}, csrf); code != "error:permission_denied" {
		t.Errorf("a call from %s: %q", plain, code)
	}
	// The cookie without its prefix is not the session over https.
	bare := &http.Cookie{Name: auth.SessionCookie, Value: session.Value}
	if _, code := call("/loom.v1.RegistryService/GetCaller", srv.URL, `{}`, []*http.Cookie{bare}, csrf); code != "error:unauthenticated" {
		t.Errorf("the unprefixed cookie over https: %q", code)
	}
}
