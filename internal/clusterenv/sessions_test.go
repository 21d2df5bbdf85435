package clusterenv_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/loomhq/loom/internal/clusterenv"
	"github.com/loomhq/loom/server/auth"
)

// lbCall makes one unary Connect JSON call to replica r as a load balancer
// in front of the replicas forwards a browser's: to r, but for the
// balancer's host (origin's), the one the browser's cookie and Origin name.
// It returns the response and its Connect code ("" for success), the body
// decoded into out on success.
func lbCall(t *testing.T, r *clusterenv.Replica, origin string, header http.Header, procedure, body string, out any) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.URL+procedure, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(origin)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = u.Host
	req.Header = header.Clone()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", origin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var e struct{ Code string }
		_ = json.NewDecoder(res.Body).Decode(&e)
		return res, e.Code
	}
	if out != nil {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return res, ""
}

// checkSessionsAcrossReplicas checks what docs/production.md says of
// browser sessions behind a load balancer: a sign-in made through one
// replica holds on every other, and a sign-out through any ends it on all.
func checkSessionsAcrossReplicas(t *testing.T, env *clusterenv.Env) {
	t.Helper()
	a, b, c := env.Replicas[0], env.Replicas[1], env.Replicas[2]
	// The balancer's address, as the browser knows Loom: here replica A's.
	origin := a.URL
	var created struct{ CsrfToken string }
	res, code := lbCall(t, a, origin, http.Header{}, "/loom.v1.SessionService/CreateSession", `{"token": "`+env.Tokens["operator"]+`"}`, &created)
	if code != "" {
		t.Fatalf("CreateSession through %s: %q", a.Name(), code)
	}
	var session string
	for _, ck := range res.Cookies() {
		if ck.Name == auth.SessionCookie {
			session = ck.Value
		}
	}
	if session == "" || created.CsrfToken == "" {
		t.Fatalf("CreateSession set no session cookie or CSRF token: %v", res.Header.Values("Set-Cookie"))
	}
	tab := http.Header{}
	tab.Set(auth.CSRFHeader, created.CsrfToken)
	tab.Set("Cookie", auth.SessionCookie+"="+session)
	for _, r := range env.Replicas {
		var who struct{ Subject, Role string }
		if _, code := lbCall(t, r, origin, tab, "/loom.v1.RegistryService/GetCaller", `{}`, &who); code != "" || who.Role != "operator" {
			t.Fatalf("the session made through %s, used through %s: %q %+v", a.Name(), r.Name(), code, who)
		}
	}
	if _, code := lbCall(t, c, origin, tab, "/loom.v1.SessionService/DeleteSession", `{}`, nil); code != "" {
		t.Fatalf("DeleteSession through %s: %q", c.Name(), code)
	}
	for _, r := range []*clusterenv.Replica{a, b} {
		if _, code := lbCall(t, r, origin, tab, "/loom.v1.RegistryService/GetCaller", `{}`, nil); code != "unauthenticated" {
			t.Fatalf("the session ended through %s, used through %s: %q, want unauthenticated", c.Name(), r.Name(), code)
		}
	}
}

// checkRateLimitsPerReplica checks the rate limit as docs/production.md
// documents it for several replicas: each replica counts a caller's calls
// on its own (the replicas run with the default limit, 50/s with a burst
// of 200), so a caller refused by one is still answered by another.
func checkRateLimitsPerReplica(ctx context.Context, t *testing.T, env *clusterenv.Env) {
	t.Helper()
	a, b := env.Replicas[0], env.Replicas[1]
	// The admin's token: no other caller of the test uses it, so its
	// buckets are full.
	bearer := http.Header{}
	bearer.Set("Authorization", "Bearer "+env.Tokens["admin"])
	refusedAfter := 0
	for i := 1; i <= 400 && ctx.Err() == nil; i++ {
		_, code := lbCall(t, a, a.URL, bearer, "/loom.v1.RegistryService/GetCaller", `{}`, nil)
		if code == "resource_exhausted" {
			refusedAfter = i
			break
		}
		if code != "" {
			t.Fatalf("call %d to %s: %q", i, a.Name(), code)
		}
	}
	// The burst (200) and what refilled while the calls were made.
	if refusedAfter <= 200 {
		t.Fatalf("%s refused call %d of a caller with a burst of 200, want later, or never refused it (0)", a.Name(), refusedAfter)
	}
	if _, code := lbCall(t, b, b.URL, bearer, "/loom.v1.RegistryService/GetCaller", `{}`, nil); code != "" {
		t.Fatalf("%s refused the caller %s limited: %q (each replica counts on its own)", b.Name(), a.Name(), code)
	}
	t.Logf("the rate limit: %s refused call %d of a burst, %s answered the next", a.Name(), refusedAfter, b.Name())
}
