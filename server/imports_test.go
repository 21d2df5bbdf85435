package server_test

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The server's boundaries, as rules on what each package imports directly
// (the standard library is always allowed): the domain imports nothing, each
// adapter only the domain and its own technology, and nothing imports
// upwards (the composition root, the developer tools, the commands).
func TestImportRules(t *testing.T) {
	const loom = "github.com/loomhq/loom/"
	gen := loom + "gen/"
	allowed := map[string][]string{
		"server/internal/migration": {},
		"server/internal/engine": {loom + "server/internal/migration", "go.temporal.io/sdk", "go.temporal.io/api",
			"go.opentelemetry.io/otel", "github.com/google/uuid"},
		"server/internal/store":     {loom + "server/internal/migration", "github.com/redis/go-redis/"},
		"server/internal/protoconv": {loom + "server/internal/migration", gen, "google.golang.org/protobuf/"},
		"server/internal/dispatch": {loom + "server/internal/migration", loom + "server/internal/protoconv", loom + "server/auth",
			gen, "connectrpc.com/", "go.opentelemetry.io/otel"},
		"server/internal/api": {loom + "server/internal/migration", loom + "server/internal/protoconv", loom + "server/auth",
			gen, "connectrpc.com/", "github.com/rs/cors", "go.opentelemetry.io/otel", "golang.org/x/time/",
			"google.golang.org/genproto/googleapis/rpc/", "google.golang.org/protobuf/",
			// The rules of proto/ (validation.go).
			"buf.build/go/protovalidate", "buf.build/gen/go/bufbuild/protovalidate/"},
		"server/internal/console": {},
		"server/auth":             {"github.com/go-jose/go-jose/"},
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, loom+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := strings.TrimPrefix(fields[0], loom), fields[1:]
		seen[pkg] = true
		for _, imp := range imports {
			if !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
				continue // the standard library
			}
			switch {
			case strings.HasPrefix(imp, loom+"cmd/"):
				t.Errorf("%s imports %s: commands are mains, not libraries", pkg, imp)
			case strings.HasPrefix(pkg, "server") && !strings.HasSuffix(pkg, "test") && strings.HasPrefix(imp, loom+"internal/"):
				// (Test helpers such as redistest may use them.)
				t.Errorf("%s imports %s: the server does not depend on the developer tools", pkg, imp)
			case strings.HasPrefix(pkg, "server/") && imp == loom+"server":
				t.Errorf("%s imports the composition root %s", pkg, imp)
			}
			rules, ruled := allowed[pkg]
			if !ruled {
				continue
			}
			ok := false
			for _, prefix := range rules {
				ok = ok || imp == strings.TrimSuffix(prefix, "/") || strings.HasPrefix(imp, strings.TrimSuffix(prefix, "/")+"/")
			}
			if !ok {
				t.Errorf("%s imports %s, outside its boundary %v", pkg, imp, rules)
			}
		}
	}
	for pkg := range allowed {
		if !seen[pkg] {
			t.Errorf("no package %s: the rules name a package that moved", pkg)
		}
	}
}

// A reader opens a package at the file named after it: its doc comment is
// there (or in doc.go, or a command's main.go), in every module.
func TestEachPackageIsDocumentedInTheFileNamedAfterIt(t *testing.T) {
	checked := 0
	// (gen/ is left out: protoc-gen-go places its docs.)
	for _, module := range []string{"..", "../migratorsdk", "../pullrequest"} {
		out, err := exec.Command("go", "-C", module, "list", "-f", `{{.Dir}} {{.Name}} {{join .GoFiles " "}}`, "./...").CombinedOutput()
		if err != nil {
			t.Fatalf("go list in %s: %v\n%s", module, err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			fields := strings.Fields(line)
			dir, name, files := fields[0], fields[1], fields[2:]
			checked++
			var documented []string
			for _, f := range files {
				src, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				pf, err := parser.ParseFile(token.NewFileSet(), f, src, parser.PackageClauseOnly|parser.ParseComments)
				if err != nil {
					t.Fatal(err)
				}
				if pf.Doc != nil {
					documented = append(documented, f)
				}
			}
			want := map[string]bool{name + ".go": true, "doc.go": true}
			if name == "main" {
				want = map[string]bool{"main.go": true}
			}
			if len(documented) != 1 || !want[documented[0]] {
				t.Errorf("%s: the package doc is in %v; put it, once, in %s.go (or doc.go)", dir, documented, name)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked %d packages: go list found too few", checked)
	}
}
