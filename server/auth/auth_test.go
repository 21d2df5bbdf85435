package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/loomhq/loom/server/auth"
)

func TestStaticTokens(t *testing.T) {
	opTok, opHash, _ := auth.NewToken()
	migTok, migHash, _ := auth.NewToken()
	st, err := auth.NewStaticTokens([]auth.StaticToken{
		{Subject: "alice", Role: auth.RoleOperator, SHA256: opHash},
		{Subject: "go-upgrader", Role: auth.RoleMigrator, SHA256: migHash, Scope: auth.Scope{IDs: []string{"go-upgrade"}, Prefixes: []string{"go-"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &auth.Authenticator{Static: st}
	p, err := a.Authenticate(context.Background(), "Bearer "+opTok)
	if err != nil || p.Subject != "alice" || p.Role != auth.RoleOperator || !p.Scope.Owns("anything") {
		t.Fatalf("operator: %+v %v", p, err)
	}
	p, err = a.Authenticate(context.Background(), "Bearer "+migTok)
	if err != nil || p.Role != auth.RoleMigrator || !p.Scope.Owns("go-upgrade") || !p.Scope.Owns("go-1-24") || p.Scope.Owns("helm-upgrade") {
		t.Fatalf("migrator: %+v %v", p, err)
	}
	for _, h := range []string{"", "Bearer ", "Basic abc", "Bearer loom_forged", "Bearer " + opTok + "x", opTok} {
		if _, err := a.Authenticate(context.Background(), h); err == nil {
			t.Errorf("accepted %q", h)
		}
	}
}

func TestTokensFileIsChecked(t *testing.T) {
	_, hash, _ := auth.NewToken()
	for name, entries := range map[string][]auth.StaticToken{
		"no subject":              {{Role: auth.RoleViewer, SHA256: hash}},
		"unknown role":            {{Subject: "x", Role: "root", SHA256: hash}},
		"not a hash":              {{Subject: "x", Role: auth.RoleViewer, SHA256: "abc"}},
		"migrator owning nothing": {{Subject: "x", Role: auth.RoleMigrator, SHA256: hash}},
		"duplicate":               {{Subject: "x", Role: auth.RoleViewer, SHA256: hash}, {Subject: "y", Role: auth.RoleViewer, SHA256: hash}},
	} {
		if _, err := auth.NewStaticTokens(entries); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.json")
	os.WriteFile(path, []byte(`{"tokens": [{"subject": "a", "role": "viewer", "sha256": "`+hash+`", "colour": "red"}]}`), 0o600)
	if _, err := auth.LoadTokens(path); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestCallbackTokensAreBoundToTheDispatch(t *testing.T) {
	old, _ := auth.NewCallbackKey("old")
	current, _ := auth.NewCallbackKey("new")
	before, _ := auth.NewCallbacks(old)
	after, _ := auth.NewCallbacks(current, old) // rotated: new signs, old still verifies

	b := auth.Binding{RunID: "m__c", Execution: 2, Step: "bump", Attempt: 1}
	issuedBefore := before.Sign(b)
	if err := after.Verify(issuedBefore, b); err != nil {
		t.Fatalf("a token issued before the rotation must keep working for Runs in flight: %v", err)
	}
	tok := after.Sign(b)
	if err := after.Verify(tok, b); err != nil {
		t.Fatal(err)
	}
	for name, other := range map[string]auth.Binding{
		"another execution": {RunID: "m__c", Execution: 1, Step: "bump", Attempt: 1},
		"another attempt":   {RunID: "m__c", Execution: 2, Step: "bump", Attempt: 2},
		"another step":      {RunID: "m__c", Execution: 2, Step: "review", Attempt: 1},
		"another run":       {RunID: "m__d", Execution: 2, Step: "bump", Attempt: 1},
		"shifted fields":    {RunID: "m__cb", Execution: 2, Step: "ump", Attempt: 1},
	} {
		if err := after.Verify(tok, other); !errors.Is(err, auth.ErrBadCallbackToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
	stranger, _ := auth.NewCallbackKey("new") // same id, other secret
	forger, _ := auth.NewCallbacks(stranger)
	if err := after.Verify(forger.Sign(b), b); !errors.Is(err, auth.ErrBadCallbackToken) {
		t.Errorf("forged: %v", err)
	}
	retired, _ := auth.NewCallbacks(current)
	if err := retired.Verify(issuedBefore, b); !errors.Is(err, auth.ErrBadCallbackToken) {
		t.Errorf("a removed key still verifies: %v", err)
	}
}

// A token that differs from the one issued in any one character, the last
// included (whose low bits base64 leaves unused), is refused.
func TestACallbackTokenWithAnyCharacterChangedIsRefused(t *testing.T) {
	key, _ := auth.NewCallbackKey("k1")
	c, _ := auth.NewCallbacks(key)
	b := auth.Binding{RunID: "m__c", Execution: 1, Step: "s", Attempt: 1}
	good := c.Sign(b)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
	for i := range good {
		for _, r := range alphabet {
			if byte(r) == good[i] {
				continue
			}
			changed := good[:i] + string(r) + good[i+1:]
			if err := c.Verify(changed, b); err == nil {
				t.Fatalf("%q (character %d changed to %q) verifies", changed, i, r)
			}
		}
	}
}

// FuzzCallbackToken feeds arbitrary tokens to the parser: it must never
// panic, and nothing but the issued token verifies.
func FuzzCallbackToken(f *testing.F) {
	key, _ := auth.NewCallbackKey("k1")
	c, _ := auth.NewCallbacks(key)
	b := auth.Binding{RunID: "m__c", Execution: 1, Step: "s", Attempt: 1}
	good := c.Sign(b)
	f.Add(good)
	f.Add("lct1.k1.")
	f.Add("lct1..AAAA")
	f.Add("lct1.k1.AAAA.extra")
	f.Add(strings.Repeat(".", 100))
	f.Fuzz(func(t *testing.T, token string) {
		if err := c.Verify(token, b); err == nil && token != good {
			t.Fatalf("%q verifies but was not issued", token)
		}
	})
}

// FuzzBearer feeds arbitrary Authorization headers to the authenticator.
func FuzzBearer(f *testing.F) {
	tok, hash, _ := auth.NewToken()
	st, _ := auth.NewStaticTokens([]auth.StaticToken{{Subject: "a", Role: auth.RoleViewer, SHA256: hash}})
	a := &auth.Authenticator{Static: st}
	f.Add("Bearer " + tok)
	f.Add("Bearer eyJhbGciOiJub25lIn0.e30.")
	f.Add("Bearer a.b.c")
	f.Fuzz(func(t *testing.T, header string) {
		if _, err := a.Authenticate(context.Background(), header); err == nil && header != "Bearer "+tok && header != "Bearer "+tok+" " {
			t.Fatalf("%q authenticated", header)
		}
	})
}

func TestRules(t *testing.T) {
	viewer := auth.Principal{Subject: "v", Role: auth.RoleViewer, Scope: auth.AllMigrations}
	if ok, _ := auth.Allowed("/loom.v1.RunService/StartRun", viewer); ok {
		t.Error("a viewer may start Runs")
	}
	mig := auth.Principal{Subject: "m", Role: auth.RoleMigrator, Scope: auth.Scope{IDs: []string{"x"}}}
	if ok, owned := auth.Allowed("/loom.v1.RunService/GetRun", mig); !ok || !owned {
		t.Error("a migrator reads its own Runs only")
	}
	admin := auth.Principal{Subject: "a", Role: auth.RoleAdmin, Scope: auth.AllMigrations}
	if ok, _ := auth.Allowed("/loom.v1.Unknown/Call", admin); !ok {
		t.Error("admins may call everything")
	}
	if ok, _ := auth.Allowed("/loom.v1.Unknown/Call", auth.Principal{Role: auth.RoleOperator}); ok {
		t.Error("an unknown procedure is open")
	}
}

// Previewing is a permission of its own: viewers may preview only where
// the Migration allows it (the API checks the Migration), and that never
// lets them start, nor any other role anything more.
func TestViewersPreviewOnlyWhereTheMigrationAllows(t *testing.T) {
	const preview, start = "/loom.v1.RunService/PreviewRun", "/loom.v1.RunService/StartRun"
	for role, want := range map[auth.Role][2]bool{
		// Allowed outright, allowed where the Migration allows.
		auth.RoleViewer:   {false, true},
		auth.RoleOperator: {true, false},
		auth.RoleMigrator: {false, false},
		auth.RoleAdmin:    {true, false},
	} {
		p := auth.Principal{Subject: "s", Role: role, Scope: auth.AllMigrations}
		if ok, _ := auth.Allowed(preview, p); ok != want[0] {
			t.Errorf("%s may preview: %v, want %v", role, ok, want[0])
		}
		if got := auth.AllowedIfMigrationAllows(preview, p); got != want[1] {
			t.Errorf("%s may preview where the Migration allows: %v, want %v", role, got, want[1])
		}
		if auth.AllowedIfMigrationAllows(start, p) {
			t.Errorf("%s may start where the Migration allows", role)
		}
	}
	for proc, r := range auth.Rules {
		if len(r.IfMigrationAllows) > 0 && proc != preview {
			t.Errorf("%s is allowed where the Migration allows: the API checks that for PreviewRun only", proc)
		}
	}
}

// Bulk actions are operators' (and admins'): viewers see their results, a
// Migrator never acts on many Runs at once.
func TestBulkActionsAreForOperators(t *testing.T) {
	for _, proc := range []string{
		"/loom.v1.RunService/BulkRetrySteps",
		"/loom.v1.RunService/BulkCancelRuns",
		"/loom.v1.RunService/BulkFinishReviews",
		"/loom.v1.RunService/BulkMarkStepsMerged",
		"/loom.v1.DiscoveryService/BulkUpdateCandidateInputs",
	} {
		for role, want := range map[auth.Role]bool{auth.RoleViewer: false, auth.RoleMigrator: false, auth.RoleOperator: true, auth.RoleAdmin: true} {
			p := auth.Principal{Subject: "s", Role: role, Scope: auth.AllMigrations}
			if ok, owned := auth.Allowed(proc, p); ok != want || owned {
				t.Errorf("%s may call %s: %v (owned only %v), want %v", role, proc, ok, owned, want)
			}
		}
	}
}

func TestJWT(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: string(jose.EdDSA), Use: "sig"}}}
	b, _ := json.Marshal(jwks)
	srv := httptest.NewServer(httpJSON(b))
	defer srv.Close()
	v, err := auth.NewJWTVerifier(context.Background(), auth.JWTConfig{Issuer: "https://idp.example", Audience: "loom", JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: "k1"}}, nil)
	mint := func(mut func(*jwt.Claims, map[string]any)) string {
		c := jwt.Claims{Issuer: "https://idp.example", Subject: "bob", Audience: jwt.Audience{"loom"},
			Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour)), IssuedAt: jwt.NewNumericDate(time.Now())}
		extra := map[string]any{"loom_role": "migrator", "loom_migrations": []string{"go-upgrade", "helm-*"}}
		if mut != nil {
			mut(&c, extra)
		}
		tok, err := jwt.Signed(signer).Claims(c).Claims(extra).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	a := &auth.Authenticator{JWT: v}
	p, err := a.Authenticate(context.Background(), "Bearer "+mint(nil))
	if err != nil || p.Subject != "bob" || p.Role != auth.RoleMigrator || !p.Scope.Owns("go-upgrade") || !p.Scope.Owns("helm-3") || p.Scope.Owns("go-1-24") {
		t.Fatalf("valid token: %+v %v", p, err)
	}
	for name, mut := range map[string]func(*jwt.Claims, map[string]any){
		"expired":      func(c *jwt.Claims, _ map[string]any) { c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Hour)) },
		"no expiry":    func(c *jwt.Claims, _ map[string]any) { c.Expiry = nil },
		"other issuer": func(c *jwt.Claims, _ map[string]any) { c.Issuer = "https://evil.example" },
		"other audience": func(c *jwt.Claims, _ map[string]any) {
			c.Audience = jwt.Audience{"other"}
		},
		"no role": func(_ *jwt.Claims, e map[string]any) { delete(e, "loom_role") },
	} {
		if _, err := a.Authenticate(context.Background(), "Bearer "+mint(mut)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A token signed by another key.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	forger, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: other, KeyID: "k1"}}, nil)
	forged, _ := jwt.Signed(forger).Claims(jwt.Claims{Issuer: "https://idp.example", Audience: jwt.Audience{"loom"},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Claims(map[string]any{"loom_role": "admin"}).Serialize()
	if _, err := a.Authenticate(context.Background(), "Bearer "+forged); err == nil {
		t.Error("forged JWT accepted")
	}
}

func TestSignerPublishesKeysUntilTheyRetire(t *testing.T) {
	_, cur, _ := ed25519.GenerateKey(rand.Reader)
	_, old, _ := ed25519.GenerateKey(rand.Reader)
	_, gone, _ := ed25519.GenerateKey(rand.Reader)
	s, err := auth.NewSigner(
		auth.SigningKey{ID: "cur", Private: cur},
		auth.SigningKey{ID: "old", Private: old, RetireTime: time.Now().Add(time.Hour)},
		auth.SigningKey{ID: "gone", Private: gone, RetireTime: time.Now().Add(-time.Hour)},
	)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range s.PublicKeys() {
		ids = append(ids, k.ID)
	}
	if strings.Join(ids, ",") != "cur,old" {
		t.Fatalf("published %v", ids)
	}
}

type httpJSON []byte

func (b httpJSON) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// A tokens file is reread when it changes: tokens added or removed take
// effect without a restart, and a file that cannot be used leaves the
// tokens as they were.
func TestATokensFileIsReloadedWhenItChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	aliceTok, aliceHash, _ := auth.NewToken()
	bobTok, bobHash, _ := auth.NewToken()
	alice := auth.StaticToken{Subject: "alice", Role: auth.RoleOperator, SHA256: aliceHash}
	bob := auth.StaticToken{Subject: "bob", Role: auth.RoleViewer, SHA256: bobHash}
	// Written as `loom tokens create -add-to` writes it: a new file renamed
	// over the old one.
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	writeTokens := func(tokens ...auth.StaticToken) {
		t.Helper()
		b, err := json.Marshal(auth.TokensFile{Tokens: tokens})
		if err != nil {
			t.Fatal(err)
		}
		write(string(b))
	}
	reload := func(f *auth.FileTokens, wantChanged, wantErr bool) {
		t.Helper()
		changed, err := f.Reload()
		if changed != wantChanged || (err != nil) != wantErr {
			t.Fatalf("reload: changed=%v err=%v; want changed=%v, an error: %v", changed, err, wantChanged, wantErr)
		}
	}
	who := func(f *auth.FileTokens) string {
		t.Helper()
		a := &auth.Authenticator{Static: f}
		var in []string
		for _, tok := range []string{aliceTok, bobTok} {
			if p, err := a.Authenticate(context.Background(), "Bearer "+tok); err == nil {
				in = append(in, p.Subject)
			}
		}
		return strings.Join(in, ",")
	}

	write("{not json")
	if _, err := auth.OpenTokensFile(path); err == nil {
		t.Fatal("a tokens file that does not parse was opened")
	}
	writeTokens(alice)
	f, err := auth.OpenTokensFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := who(f); got != "alice" {
		t.Fatalf("at start: %s", got)
	}
	reload(f, false, false)

	writeTokens(alice, bob)
	reload(f, true, false)
	if got := who(f); got != "alice,bob" || f.Len() != 2 {
		t.Fatalf("after bob was added: %s (%d tokens)", got, f.Len())
	}

	// Broken: the tokens stay, and the error is said once.
	write(`{"tokens": [{"subject": "carol", "role": "root"`)
	reload(f, false, true)
	reload(f, false, false)
	if got := who(f); got != "alice,bob" {
		t.Fatalf("after a broken edit: %s", got)
	}
	writeTokens(alice, bob, auth.StaticToken{Subject: "mallory", Role: "root", SHA256: strings.Repeat("ab", 32)})
	reload(f, false, true)
	if got := who(f); got != "alice,bob" {
		t.Fatalf("after an edit that does not check: %s", got)
	}

	// Fixed, with bob revoked.
	writeTokens(alice)
	reload(f, true, false)
	if got := who(f); got != "alice" {
		t.Fatalf("after bob was removed: %s", got)
	}

	// Gone: the tokens stay.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	reload(f, false, true)
	if got := who(f); got != "alice" {
		t.Fatalf("after the file was removed: %s", got)
	}
}
