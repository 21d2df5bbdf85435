package main

import (
	"io"
	"slices"
	"testing"
	"time"
)

func env(vars map[string]string) lookupEnv {
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
		{"defaults", nil, nil, "127.0.0.1:8080", []string{"127.0.0.1:6379"}, 15 * time.Second},
		{"environment over defaults", map[string]string{"LOOM_ADDR": ":9000", "LOOM_REDIS_ADDR": "a:1, b:2", "LOOM_SHUTDOWN_TIMEOUT": "3s"}, nil,
			":9000", []string{"a:1", "b:2"}, 3 * time.Second},
		{"flags over environment", map[string]string{"LOOM_ADDR": ":9000"}, []string{"-addr", ":9100", "-redis-addr", "r:6380"},
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
		{"bad duration in env", map[string]string{"LOOM_SHUTDOWN_TIMEOUT": "soon"}, nil},
		{"bad log level", nil, []string{"-log-level", "loud"}},
		{"bad log format", nil, []string{"-log-format", "xml"}},
		{"no redis", nil, []string{"-redis-addr", ""}},
		{"addr without port", nil, []string{"-addr", "localhost"}},
		{"stray argument", nil, []string{"extra"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := parseServe(tc.args, env(tc.env), io.Discard); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
