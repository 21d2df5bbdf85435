package gomigrator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/loomhq/loom/pullrequest/local"
)

// GenerateFleet creates a sample fleet of n Go services under dir, one git
// repository each, with go directives from 1.19 to 1.23 (so that a few of
// them need no change), for trying Loom offline. Repositories that already
// exist are left alone, so it is safe to call on every start.
func GenerateFleet(ctx context.Context, dir string, n int) error {
	versions := []string{"1.19", "1.20", "1.21", "1.22", "1.23"}
	teams := []string{"payments", "orders", "search", "identity", "platform"}
	for i := range n {
		name := fmt.Sprintf("svc-%02d", i+1)
		repo := filepath.Join(dir, name)
		if _, err := os.Stat(filepath.Join(repo, ".git")); err == nil {
			continue
		}
		files := map[string]string{
			"go.mod":  fmt.Sprintf("module example.com/fleet/%s\n\ngo %s\n", name, versions[i%len(versions)]),
			"main.go": fmt.Sprintf("package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(%q)\n}\n", name),
			"OWNERS":  teams[i%len(teams)] + "\n",
		}
		if err := local.Init(ctx, repo, files); err != nil {
			return fmt.Errorf("create %s: %w", repo, err)
		}
	}
	return nil
}
