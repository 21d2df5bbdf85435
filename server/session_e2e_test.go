package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/server"
	"github.com/loomhq/loom/server/auth"
)

// browser calls the API as the console does: Connect's JSON protocol, with
// whatever cookies and headers it is given.
type browser struct {
	t      *testing.T
	url    string
	origin string
	// cookies sent with every call (name → value).
	cookies map[string]string
	csrf    string
	header  http.Header
}

// call makes one unary call and returns the response (body decoded into
// out when it succeeds) and its Connect code ("" for success).
func (b *browser) call(procedure, body string, out any) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.url+procedure, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	if b.csrf != "" {
		req.Header.Set(auth.CSRFHeader, b.csrf)
	}
	for k, vs := range b.header {
		req.Header[k] = vs
	}
	for name, value := range b.cookies {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var e struct{ Code, Message string }
		_ = json.NewDecoder(res.Body).Decode(&e)
		return res, e.Code
	}
	if out != nil {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			b.t.Fatal(err)
		}
	}
	return res, ""
}

// with is a copy of b with changes: another tab, another origin, a header.
func (b *browser) with(mutate func(*browser)) *browser {
	c := *b
	c.header = b.header.Clone()
	if c.header == nil {
		c.header = http.Header{}
	}
	mutate(&c)
	return &c
}

const getCaller = "/loom.v1.RegistryService/GetCaller"

type callerJSON struct {
	Subject string `json:"subject"`
	Role    string `json:"role"`
}

// One sign-in per browser: a session made from a token is named by an
// HttpOnly, SameSite=Strict cookie and proven by a CSRF token; it acts with
// the token's role, never from another origin, and a bearer token wins over
// it; signing out ends it for every tab; Redis away is unavailable, not a
// sign-out.
func TestBrowserSessions(t *testing.T) {
	tokensFile, keysFile, tokens := credentials(t)
	w := newWorld(t)
	w.configure = func(c *server.Config) {
		c.Security = server.SecurityConfig{TokensFile: tokensFile, KeysFile: keysFile, AllowMigratorNets: []string{"127.0.0.0/8"}}
	}
	l := w.startLoom()
	l.as(tokens["migrator"]).setup(t, w.migrator.url, "acme/payments")
	tab := &browser{t: t, url: l.url, origin: l.url, cookies: map[string]string{}}

	// A token the server does not know starts nothing; nor does a page of
	// another site, even with a good token (it would sign the browser in as
	// someone else).
	if _, code := tab.call("/loom.v1.SessionService/CreateSession", `{"token": "loom_not-a-token"}`, nil); code != "unauthenticated" {
		t.Fatalf("unknown token: %q", code)
	}
	evil := tab.with(func(b *browser) { b.origin = "https://evil.example" })
	if _, code := evil.call("/loom.v1.SessionService/CreateSession", `{"token": "`+tokens["operator"]+`"}`, nil); code != "permission_denied" {
		t.Fatalf("sign-in from another origin: %q", code)
	}

	// Signed in with the operator's token (as `loom dev`'s URL does).
	var created struct {
		Subject, Role, CsrfToken string
		ExpireTime               time.Time
	}
	res, code := tab.call("/loom.v1.SessionService/CreateSession", `{"token": "`+tokens["operator"]+`"}`, &created)
	if code != "" {
		t.Fatalf("CreateSession: %q", code)
	}
	if created.Subject != "alice" || created.Role != "operator" || created.CsrfToken == "" ||
		created.ExpireTime.Before(time.Now().Add(auth.DefaultSessionLife-time.Minute)) {
		t.Fatalf("created %+v", created)
	}
	cookies := map[string]*http.Cookie{}
	for _, c := range res.Cookies() {
		cookies[c.Name] = c
	}
	// Plain http to 127.0.0.1 (loom dev): not Secure, so the browser keeps
	// it; no __Host- prefix, which requires Secure.
	session, csrf := cookies[auth.SessionCookie], cookies[auth.CSRFCookie]
	if session == nil || csrf == nil {
		t.Fatalf("cookies set: %v", res.Header.Values("Set-Cookie"))
	}
	if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/" || session.Secure || session.MaxAge <= 0 {
		t.Errorf("session cookie %q", session.String())
	}
	if csrf.HttpOnly || csrf.SameSite != http.SameSiteStrictMode || csrf.Value != created.CsrfToken {
		t.Errorf("CSRF cookie %q", csrf.String())
	}
	if strings.Contains(res.Header.Get("Set-Cookie"), tokens["operator"]) {
		t.Fatal("the token itself is in a cookie")
	}
	tab.cookies[auth.SessionCookie] = session.Value
	tab.csrf = created.CsrfToken

	// Every tab: the cookie alone (with its CSRF token) is a credential.
	var who callerJSON
	if _, code := tab.call(getCaller, `{}`, &who); code != "" || who.Subject != "alice" || who.Role != "operator" {
		t.Fatalf("GetCaller with the session: %q %+v", code, who)
	}
	// The role is the token's: an operator may act, not delete.
	if _, code := tab.call("/loom.v1.RegistryService/DeleteMigration", `{"migration_id": "go-upgrade"}`, nil); code != "permission_denied" {
		t.Errorf("an operator's session deleted a Migration: %q", code)
	}
	// Its actions are recorded as the token's subject's.
	if _, code := tab.call("/loom.v1.DiscoveryService/UpdateCandidateInputs",
		`{"migration_id": "go-upgrade", "candidate_id": "acme/payments", "inputs": {"target_version": "1.23"}}`, nil); code != "" {
		t.Fatalf("UpdateCandidateInputs with the session: %q", code)
	}
	var events struct {
		Events []struct{ Actor string } `json:"events"`
	}
	if _, code := tab.call("/loom.v1.HistoryService/ListEvents", `{"migration_id": "go-upgrade"}`, &events); code != "" {
		t.Fatalf("ListEvents: %q", code)
	}
	if !strings.Contains(jsonString(t, events), `"Actor":"alice"`) {
		t.Errorf("no event is recorded as alice's: %+v", events)
	}

	// Without the CSRF token, or with another, the cookie does nothing:
	// permission_denied, before anything changes.
	for name, b := range map[string]*browser{
		"no CSRF token":    tab.with(func(b *browser) { b.csrf = "" }),
		"wrong CSRF token": tab.with(func(b *browser) { b.csrf = created.CsrfToken + "x" }),
		// A cookie never authenticates a call from another origin, one
		// allowed by -cors-origins included: those send bearer tokens.
		"another origin": tab.with(func(b *browser) { b.origin = "https://evil.example" }),
		"another site":   tab.with(func(b *browser) { b.origin = ""; b.header.Set("Sec-Fetch-Site", "cross-site") }),
		"another port":   tab.with(func(b *browser) { b.origin = "http://127.0.0.1:1" }),
	} {
		if _, code := b.call("/loom.v1.DiscoveryService/UpdateCandidateInputs",
			`{"migration_id": "go-upgrade", "candidate_id": "acme/payments", "inputs": {"target_version": "6.66"}}`, nil); code != "permission_denied" {
			t.Errorf("%s: %q", name, code)
		}
	}
	// A session cookie under the __Host- name is not taken over plain http.
	hostCookie := tab.with(func(b *browser) {
		b.cookies = map[string]string{auth.SecureCookiePrefix + auth.SessionCookie: session.Value}
	})
	if _, code := hostCookie.call(getCaller, `{}`, nil); code != "unauthenticated" {
		t.Errorf("__Host- cookie over http: %q", code)
	}

	// A bearer token takes precedence over the cookie: API clients are
	// unchanged, whatever cookie they carry.
	bearer := tab.with(func(b *browser) { b.header.Set("Authorization", "Bearer "+tokens["migrator"]) })
	if _, code := bearer.call(getCaller, `{}`, &who); code != "" || who.Subject != "go-upgrader" {
		t.Errorf("bearer with a cookie: %q %+v", code, who)
	}
	bad := tab.with(func(b *browser) { b.header.Set("Authorization", "Bearer loom_not-a-token") })
	if _, code := bad.call(getCaller, `{}`, nil); code != "unauthenticated" {
		t.Errorf("a bad bearer token fell back to the cookie: %q", code)
	}

	// Redis away: unavailable, never unauthenticated (the console shows an
	// error, not the sign-in form); back, the same session works.
	w.redis.Down()
	if _, code := tab.call(getCaller, `{}`, nil); code != "unavailable" {
		t.Errorf("a call with the session while Redis is down: %q", code)
	}
	if _, code := tab.call("/loom.v1.SessionService/CreateSession", `{"token": "`+tokens["operator"]+`"}`, nil); code != "unavailable" {
		t.Errorf("a sign-in while Redis is down: %q", code)
	}
	if _, code := tab.call("/loom.v1.SessionService/DeleteSession", `{}`, nil); code != "unavailable" {
		t.Errorf("a sign-out while Redis is down: %q", code)
	}
	w.redis.Up()
	waitFor(t, 20*time.Second, "the session to work again after Redis is back", func() bool {
		_, code := tab.call(getCaller, `{}`, nil)
		return code == ""
	})

	// A second tab shares the session; signing out in one ends it in both.
	other := tab.with(func(b *browser) {})
	res, code = tab.call("/loom.v1.SessionService/DeleteSession", `{}`, nil)
	if code != "" {
		t.Fatalf("DeleteSession: %q", code)
	}
	cleared := 0
	for _, c := range res.Cookies() {
		if (c.Name == auth.SessionCookie || c.Name == auth.CSRFCookie) && c.MaxAge < 0 {
			cleared++
		}
	}
	if cleared != 2 {
		t.Errorf("sign-out cleared %d cookies: %v", cleared, res.Header.Values("Set-Cookie"))
	}
	if _, code := other.call(getCaller, `{}`, nil); code != "unauthenticated" {
		t.Errorf("the other tab after sign-out: %q", code)
	}
	// Signing out again only clears the cookies.
	if _, code := other.call("/loom.v1.SessionService/DeleteSession", `{}`, nil); code != "" {
		t.Errorf("a second sign-out: %q", code)
	}

	// A session made from a token ends when the token is revoked.
	res, code = tab.call("/loom.v1.SessionService/CreateSession", `{"token": "`+tokens["operator"]+`"}`, &created)
	if code != "" {
		t.Fatalf("CreateSession again: %q", code)
	}
	for _, c := range res.Cookies() {
		if c.Name == auth.SessionCookie {
			tab.cookies[auth.SessionCookie] = c.Value
		}
	}
	tab.csrf = created.CsrfToken
	if _, code := tab.call(getCaller, `{}`, nil); code != "" {
		t.Fatalf("the new session: %q", code)
	}
	var f auth.TokensFile
	b, _ := os.ReadFile(tokensFile)
	_ = json.Unmarshal(b, &f)
	kept := f.Tokens[:0]
	for _, e := range f.Tokens {
		if e.Subject != "alice" {
			kept = append(kept, e)
		}
	}
	f.Tokens = kept
	b, _ = jsonMarshal(f)
	if err := os.WriteFile(tokensFile+".new", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tokensFile+".new", tokensFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the session of a revoked token to end", func() bool {
		_, code := tab.call(getCaller, `{}`, nil)
		return code == "unauthenticated"
	})
}

// The console's session makes no difference to a Loom without
// authentication: there is nothing to sign in to.
func TestNoSessionsWithoutAuthentication(t *testing.T) {
	w := newWorld(t)
	l := w.startLoom()
	tab := &browser{t: t, url: l.url, origin: l.url}
	if _, code := tab.call("/loom.v1.SessionService/CreateSession", `{"token": "loom_x"}`, nil); code != "failed_precondition" {
		t.Errorf("CreateSession without authentication: %q", code)
	}
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
