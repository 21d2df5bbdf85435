package main

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/internal/cli"
	"github.com/loomhq/loom/internal/devenv"
)

func env(vars map[string]string) cli.LookupEnv {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// The welcome of loom-dev suggests calls on the example's Migration only
// when the example Migrator runs (it announces that Migration); without it,
// only calls that work on any Loom.
func TestDevWelcomeSuggestsTheExampleOnlyWhenItRuns(t *testing.T) {
	env := devenv.Env{
		APIURL: "http://127.0.0.1:8080", TemporalAddr: "127.0.0.1:7233", RedisAddr: "127.0.0.1:6380",
		DataDir: "/d", Persistent: true, OperatorTokenFile: "/d/operator.token", MigratorTokenFile: "/d/migrator.token",
		TokensFile: "/d/tokens.json",
	}
	for _, tc := range []struct {
		name     string
		fleetDir string
		want     []string
		wantNot  []string
	}{
		{"with the example", "/d/fleet",
			[]string{"go-directive", "RunService/PreviewRun", "/d/fleet", "grpcurl -plaintext 127.0.0.1:8080 list"},
			[]string{"no example Migrator"}},
		{"without the example", "",
			[]string{"RegistryService/ListMigrations", "no example Migrator", "grpcurl -plaintext 127.0.0.1:8080 list"},
			[]string{"go-directive", "svc-01", "Fleet"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := env
			e.FleetDir = tc.fleetDir
			var out bytes.Buffer
			printWelcome(&out, e)
			for _, s := range tc.want {
				if !strings.Contains(out.String(), s) {
					t.Errorf("the welcome lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tc.wantNot {
				if strings.Contains(out.String(), s) {
					t.Errorf("the welcome has %q:\n%s", s, out.String())
				}
			}
			if !strings.Contains(out.String(), "-add-to /d/tokens.json") {
				t.Errorf("the welcome does not say where tokens are added:\n%s", out.String())
			}
		})
	}
}

// loom-dev takes -cors-origins and -dispatch-window, and their variables,
// as loom serve does (both define them with the same functions of
// internal/cli).
func TestDevConfigTakesServesCORSAndDispatchWindow(t *testing.T) {
	c, err := parseDev(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.env.DispatchWindow != time.Hour || c.env.CORSOrigins != nil {
		t.Fatalf("defaults: window %v origins %v", c.env.DispatchWindow, c.env.CORSOrigins)
	}
	vars := map[string]string{"LOOM_DISPATCH_WINDOW": "30s", "LOOM_CORS_ORIGINS": "http://localhost:5173, https://app.example"}
	c, err = parseDev(nil, env(vars), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.env.DispatchWindow != 30*time.Second || !slices.Equal(c.env.CORSOrigins, []string{"http://localhost:5173", "https://app.example"}) {
		t.Fatalf("from the environment: window %v origins %v", c.env.DispatchWindow, c.env.CORSOrigins)
	}
	c, err = parseDev([]string{"-dispatch-window", "5s", "-cors-origins", "*"}, env(vars), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.env.DispatchWindow != 5*time.Second || !slices.Equal(c.env.CORSOrigins, []string{"*"}) {
		t.Fatalf("flags over the environment: window %v origins %v", c.env.DispatchWindow, c.env.CORSOrigins)
	}
	for name, tc := range map[string]struct {
		env  map[string]string
		args []string
	}{
		"a window that is no duration": {map[string]string{"LOOM_DISPATCH_WINDOW": "soon"}, nil},
		"a zero window":                {nil, []string{"-dispatch-window", "0s"}},
		"a negative window":            {nil, []string{"-dispatch-window", "-1m"}},
	} {
		if _, err := parseDev(tc.args, env(tc.env), io.Discard); err == nil || !strings.Contains(err.Error(), "DISPATCH_WINDOW") && !strings.Contains(err.Error(), "dispatch-window") {
			t.Errorf("%s: %v, want a refusal naming the dispatch window", name, err)
		}
	}
}

// With -tls the welcome prints https URLs and grpcurl calls that trust loom
// dev's certificate instead of speaking in clear.
func TestDevWelcomeWithTLS(t *testing.T) {
	var out bytes.Buffer
	printWelcome(&out, devenv.Env{APIURL: "https://127.0.0.1:8080", ConsoleURL: "https://127.0.0.1:8080/#token=x",
		CertFile: "/d/tls/cert.pem", TokensFile: "/d/tokens.json"})
	for _, s := range []string{"https://127.0.0.1:8080/#token=x", "grpcurl -cacert /d/tls/cert.pem 127.0.0.1:8080 list", "TLS        /d/tls/cert.pem"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("the welcome lacks %q:\n%s", s, out.String())
		}
	}
	if strings.Contains(out.String(), "-plaintext") {
		t.Errorf("the welcome speaks in clear to a TLS server:\n%s", out.String())
	}
}
