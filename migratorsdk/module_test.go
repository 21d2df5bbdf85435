package migratorsdk_test

import (
	"archive/zip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A Migrator's own module depends on the SDK the way docs/migrators.md says: `go
// get github.com/loomhq/loom/migratorsdk@<tag>`. The test publishes this
// checkout's gen and migratorsdk modules, at the versions migratorsdk's
// go.mod names, on a file proxy (as tagging a release publishes them) and
// builds and tests a fresh module that gets the SDK from there, with the
// replace directives of this repository out of play.
func TestAFreshModuleDependsOnTheSDKWithGoGet(t *testing.T) {
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github.com/loomhq/loom/gen (v\S+)`).FindSubmatch(gomod)
	if m == nil || strings.HasPrefix(string(m[1]), "v0.0.0-") {
		t.Fatalf("migratorsdk's go.mod must require a tagged gen version, as a dependent fetches it: %q", m)
	}
	genVersion, sdkVersion := string(m[1]), "v0.1.0"
	proxy := t.TempDir()
	publish(t, proxy, "github.com/loomhq/loom/gen", genVersion, "../gen")
	publish(t, proxy, "github.com/loomhq/loom/migratorsdk", sdkVersion, ".")

	dir := t.TempDir()
	write(t, filepath.Join(dir, "go.mod"), "module example.com/mymigrator\n\ngo 1.26.0\n")
	write(t, filepath.Join(dir, "main.go"), `package main

import (
	"context"
	"log"

	"github.com/loomhq/loom/migratorsdk"
)

func main() {
	_, err := migratorsdk.New(migratorsdk.Spec{
		Migration: migratorsdk.Migration{ID: "hello", Name: "Hello", Steps: []migratorsdk.Step{{Name: "greet", Type: "greet"}}},
		Handlers: map[string]migratorsdk.StepHandler{"greet": func(ctx context.Context, d *migratorsdk.Dispatch) error {
			return d.Completed(ctx)
		}},
	}, migratorsdk.Options{LoomURL: "http://localhost:8080"})
	if err != nil {
		log.Fatal(err)
	}
}
`)
	write(t, filepath.Join(dir, "main_test.go"), `package main

import (
	"testing"

	"github.com/loomhq/loom/migratorsdk/migratortest"
)

func TestFake(t *testing.T) { migratortest.New(t) }
`)
	cache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := exec.Command("go", "env", "GOPROXY").Output()
	if err != nil {
		t.Fatal(err)
	}
	// The SDK from the file proxy; its dependencies from the module cache
	// (served the same way), so the test needs no network when the cache
	// holds them. A cache holds a module's go.mod without its zip when only
	// its requirements were read (test-only dependencies of dependencies,
	// which go mod tidy checks); those come from the configured proxy.
	goproxy := "file://" + proxy + ",file://" + filepath.Join(strings.TrimSpace(string(cache)), "cache", "download")
	if up := strings.TrimSpace(string(upstream)); up != "" && up != "off" {
		goproxy += "," + up
	}
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOSUMDB=off", "GOPROXY="+goproxy)
	for _, args := range [][]string{
		{"get", "github.com/loomhq/loom/migratorsdk@" + sdkVersion},
		{"mod", "tidy"},
		{"build", "./..."},
		{"test", "./..."},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// publish lays out module path@version from dir in GOPROXY's file format.
func publish(t *testing.T, proxy, path, version, dir string) {
	t.Helper()
	at := filepath.Join(proxy, filepath.FromSlash(path), "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(at, "list"), version+"\n")
	write(t, filepath.Join(at, version+".info"), fmt.Sprintf(`{"Version":%q}`, version))
	write(t, filepath.Join(at, version+".mod"), string(gomod))
	f, err := os.Create(filepath.Join(at, version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z := zip.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil && rel != "." {
				return filepath.SkipDir // another module
			}
			return nil
		}
		w, err := z.Create(path + "@" + version + "/" + filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	if err == nil {
		err = z.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
