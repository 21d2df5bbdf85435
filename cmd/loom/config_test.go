package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/internal/cli"
)

func env(vars map[string]string) cli.LookupEnv {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestServeConfigPrecedence(t *testing.T) {
	cases := []struct {
		name      string
		env       map[string]string
		args      []string
		wantAddr  string
		wantRedis []string
		wantStop  time.Duration
	}{
		{"defaults", map[string]string{"LOOM_INSECURE_NO_AUTH": "true"}, nil, "127.0.0.1:8080", []string{"127.0.0.1:6379"}, 15 * time.Second},
		{"environment over defaults", map[string]string{"LOOM_ADDR": ":9000", "LOOM_REDIS_ADDR": "a:1, b:2", "LOOM_SHUTDOWN_TIMEOUT": "3s", "LOOM_TOKENS_FILE": "t.json", "LOOM_KEYS_FILE": "k.json"}, nil,
			":9000", []string{"a:1", "b:2"}, 3 * time.Second},
		{"flags over environment", map[string]string{"LOOM_ADDR": ":9000"}, []string{"-addr", ":9100", "-redis-addr", "r:6380", "-insecure-no-auth"},
			":9100", []string{"r:6380"}, 15 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := parseServe(tc.args, env(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Addr != tc.wantAddr || !slices.Equal(cfg.Redis.Addrs, tc.wantRedis) || cfg.ShutdownTimeout != tc.wantStop {
				t.Fatalf("got addr %q redis %v stop %v", cfg.Addr, cfg.Redis.Addrs, cfg.ShutdownTimeout)
			}
		})
	}
}

func TestServeConfigRefusesNonsense(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"bad duration in env", map[string]string{"LOOM_SHUTDOWN_TIMEOUT": "soon", "LOOM_INSECURE_NO_AUTH": "1"}, nil},
		{"bad log level", nil, []string{"-insecure-no-auth", "-log-level", "loud"}},
		{"bad log format", nil, []string{"-insecure-no-auth", "-log-format", "xml"}},
		{"no redis", nil, []string{"-insecure-no-auth", "-redis-addr", ""}},
		{"addr without port", nil, []string{"-insecure-no-auth", "-addr", "localhost"}},
		{"stray argument", nil, []string{"-insecure-no-auth", "extra"}},
		{"no authentication", nil, nil},
		{"tokens without keys", nil, []string{"-tokens-file", "t.json"}},
		{"a certificate without its key", nil, []string{"-insecure-no-auth", "-tls-cert", "c.pem"}},
		{"console sign-in without an issuer", nil, []string{"-tokens-file", "t.json", "-keys-file", "k.json", "-oidc-client-id", "loom-console"}},
		{"a replica wait as long as a read", nil, []string{"-insecure-no-auth", "-redis-wait-timeout", "5s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := parseServe(tc.args, env(tc.env), io.Discard); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestServeConfigTakesTheConsolesSignIn(t *testing.T) {
	cfg, _, err := parseServe([]string{"-keys-file", "k.json", "-jwt-issuer", "https://idp.example.com", "-jwt-audience", "loom",
		"-oidc-client-id", "loom-console", "-oidc-use-id-token"}, env(map[string]string{"LOOM_OIDC_SCOPES": "openid  groups"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Security.ConsoleOIDC
	if o.ClientID != "loom-console" || !o.UseIDToken || strings.Join(o.Scopes, ",") != "openid,groups" {
		t.Errorf("console sign-in %+v", o)
	}
}

// Waiting for Redis replicas: decided by the store from the addresses
// unless set (-1), from the environment or a flag.
func TestServeConfigWaitsForRedisReplicas(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		args    []string
		want    int
		timeout time.Duration
	}{
		{map[string]string{}, nil, -1, time.Second},
		{map[string]string{"LOOM_REDIS_WAIT_REPLICAS": "2", "LOOM_REDIS_WAIT_TIMEOUT": "300ms"}, nil, 2, 300 * time.Millisecond},
		{map[string]string{"LOOM_REDIS_WAIT_REPLICAS": "2"}, []string{"-redis-wait-replicas", "0"}, 0, time.Second},
	} {
		cfg, _, err := parseServe(append([]string{"-insecure-no-auth"}, tc.args...), env(tc.env), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Redis.WaitReplicas != tc.want || cfg.Redis.WaitTimeout != tc.timeout {
			t.Errorf("%v %v: wait for %d replicas %v, want %d %v", tc.env, tc.args, cfg.Redis.WaitReplicas, cfg.Redis.WaitTimeout, tc.want, tc.timeout)
		}
	}
}
