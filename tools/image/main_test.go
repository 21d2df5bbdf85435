package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// fakeLoom builds a small static program that embeds a console of one file,
// as loom embeds its own, and returns it and that console's directory.
func fakeLoom(t *testing.T) (bin, consoleDir string) {
	t.Helper()
	dir := t.TempDir()
	consoleDir = filepath.Join(dir, "dist")
	for name, content := range map[string]string{
		"go.mod":          "module fake\n\ngo 1.26\n",
		"main.go":         "package main\n\nimport _ \"embed\"\n\n//go:embed dist/index.html\nvar index string\n\nfunc main() { println(len(index)) }\n",
		"dist/index.html": "<!doctype html><title>the console of a fake loom</title>\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin = filepath.Join(dir, "loom")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin, consoleDir
}

// The same inputs make the same image, byte for byte; it runs loom serve as
// a non-root user, with the binary, the user and the certificates in it.
func TestImageIsReproducibleAndNonRoot(t *testing.T) {
	bin, consoleDir := fakeLoom(t)
	certs := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(certs, []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{Binary: bin, ConsoleDir: consoleDir, CACerts: certs, Epoch: time.Unix(1700000000, 0).UTC(), Revision: "abc"}
	var tarballs [2][]byte
	for i := range tarballs {
		img, err := Build(o)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := tarball.Write(name.MustParseReference("loom:test"), img, &buf); err != nil {
			t.Fatal(err)
		}
		tarballs[i] = buf.Bytes()
	}
	if !bytes.Equal(tarballs[0], tarballs[1]) {
		t.Fatal("two builds of the same inputs differ")
	}

	img, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != "/usr/local/bin/loom" || strings.Join(cf.Config.Cmd, " ") != "serve" {
		t.Errorf("config: user %q entrypoint %v cmd %v", cf.Config.User, cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if !cf.Created.Time.Equal(o.Epoch) || cf.Config.Labels["org.opencontainers.image.revision"] != "abc" {
		t.Errorf("created %v labels %v", cf.Created, cf.Config.Labels)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers: %d %v", len(layers), err)
	}
	files := map[string]*tar.Header{}
	contents := map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(tr)
			files[h.Name], contents[h.Name] = h, b
			if !h.ModTime.Equal(o.Epoch) {
				t.Errorf("%s: time %v", h.Name, h.ModTime)
			}
		}
		rc.Close()
	}
	if h := files["usr/local/bin/loom"]; h == nil || h.Mode != 0o755 || h.Uid != 0 {
		t.Errorf("the binary: %+v", h)
	}
	if !strings.Contains(string(contents["etc/passwd"]), "loom:x:65532:65532:") {
		t.Errorf("/etc/passwd: %q", contents["etc/passwd"])
	}
	if files["etc/ssl/certs/ca-certificates.crt"] == nil || files["tmp/"] == nil || files["tmp/"].Mode != 0o1777 {
		t.Errorf("certificates or /tmp missing: %v", files)
	}
}

// A binary that lacks the console's build as it is now is refused, and so
// is one that is not a static linux binary.
func TestImageRefusesABinaryWithoutTheConsoleOrNotStatic(t *testing.T) {
	bin, consoleDir := fakeLoom(t)
	if err := os.WriteFile(filepath.Join(consoleDir, "index.html"), []byte("a console built after the binary"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(Options{Binary: bin, ConsoleDir: consoleDir}); err == nil || !strings.Contains(err.Error(), "does not embed the console") {
		t.Errorf("a stale console: %v", err)
	}
	script := filepath.Join(t.TempDir(), "loom")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(Options{Binary: script, ConsoleDir: consoleDir}); err == nil || !strings.Contains(err.Error(), "not a linux binary") {
		t.Errorf("a script: %v", err)
	}
	if _, err := os.Stat("/bin/ls"); err == nil { // a dynamic binary of the machine
		if _, err := Build(Options{Binary: "/bin/ls", ConsoleDir: consoleDir}); err == nil || !strings.Contains(err.Error(), "dynamically") {
			t.Errorf("a dynamic binary: %v", err)
		}
	}
}
