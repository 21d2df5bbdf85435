package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The binary production runs carries no Temporal server, nor what only the
// server needs (Kubernetes client libraries, SQL drivers): those are
// loom-dev's, which embeds one. An import that pulls them back in fails
// here rather than in the size of the image.
func TestLoomCarriesNoTemporalServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 100 {
		t.Fatalf("go list -deps listed %d packages: not loom's", len(pkgs))
	}
	for _, p := range pkgs {
		for _, banned := range []string{"go.temporal.io/server", "k8s.io/", "modernc.org/sqlite", "github.com/loomhq/loom/internal/devenv"} {
			if strings.HasPrefix(p, banned) {
				t.Errorf("loom imports %s: only loom-dev may", p)
			}
		}
	}
}
