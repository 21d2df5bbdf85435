package devenv

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loomhq/loom/server/auth"
)

func readTokens(t *testing.T, path string) auth.TokensFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f auth.TokensFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// rolesOf maps each token of c to the role tokens.json gives its hash.
func rolesOf(t *testing.T, c credentials) map[string]auth.Role {
	t.Helper()
	byHash := map[string]auth.Role{}
	for _, st := range readTokens(t, c.tokensFile).Tokens {
		byHash[st.SHA256] = st.Role
	}
	return map[string]auth.Role{
		"operator": byHash[auth.HashToken(c.operator)],
		"migrator": byHash[auth.HashToken(c.migrator)],
		"admin":    byHash[auth.HashToken(c.admin)],
	}
}

// loom dev makes an operator, a Migrator and an admin token on its first
// start, keeps them across restarts, and adds the admin token to a data
// directory made before it had one, keeping every token already there.
func TestLoomDevMakesAnAdminTokenToo(t *testing.T) {
	dir := t.TempDir()
	c, err := ensureCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]auth.Role{"operator": auth.RoleOperator, "migrator": auth.RoleMigrator, "admin": auth.RoleAdmin}
	if got := rolesOf(t, c); len(got) != 3 || got["operator"] != want["operator"] || got["migrator"] != want["migrator"] || got["admin"] != want["admin"] {
		t.Fatalf("roles %v", got)
	}
	if fi, err := os.Stat(c.adminFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v %v", fi, err)
	}

	again, err := ensureCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.operator != c.operator || again.migrator != c.migrator || again.admin != c.admin {
		t.Fatal("a restart made new tokens")
	}

	// A data directory of an older loom dev: no admin token, and one token
	// added by hand.
	f := readTokens(t, c.tokensFile)
	var kept []auth.StaticToken
	for _, st := range f.Tokens {
		if st.Role != auth.RoleAdmin {
			kept = append(kept, st)
		}
	}
	kept = append(kept, auth.StaticToken{Subject: "ada", Role: auth.RoleViewer, SHA256: auth.HashToken("ada's token")})
	if err := writeSecret(c.tokensFile, auth.TokensFile{Tokens: kept}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(c.adminFile); err != nil {
		t.Fatal(err)
	}
	upgraded, err := ensureCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	if upgraded.operator != c.operator || upgraded.migrator != c.migrator || upgraded.admin == "" || upgraded.admin == c.admin {
		t.Fatal("the upgrade did not keep the tokens and add a new admin token")
	}
	if got := rolesOf(t, upgraded); got["admin"] != auth.RoleAdmin || got["operator"] != auth.RoleOperator {
		t.Fatalf("roles after the upgrade %v", got)
	}
	if n := len(readTokens(t, c.tokensFile).Tokens); n != 4 {
		t.Fatalf("%d tokens after the upgrade, want the 3 kept and the admin's", n)
	}

	// A tokens.json that does not parse is not overwritten.
	if err := os.Remove(c.adminFile); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.tokensFile, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ensureCredentials(dir); err == nil || !strings.Contains(err.Error(), filepath.Base(c.tokensFile)) {
		t.Fatalf("a broken tokens.json: %v", err)
	}
	if b, _ := os.ReadFile(c.tokensFile); string(b) != "{broken" {
		t.Fatal("a broken tokens.json was overwritten")
	}
}
