// Command image writes the container image of loom (the production binary)
// as a tarball that `docker load`, `podman load`, `crane push` and
// `skopeo copy docker-archive:` take, with no Docker daemon and nothing
// downloaded: there is no base image. The image is the binary, /etc/passwd
// and /etc/group naming a non-root user, the machine's CA certificates (for
// https:// Migrators, a JWT issuer, GitHub) and an empty /tmp.
//
//	go -C tools run ./image -binary ../out/loom -console ../server/internal/console/dist -o ../out/loom-image.tar
//
// (`make image` builds the binary and runs it.) The same binary and
// certificates give the same image, byte for byte: every time in it is
// -epoch, every file is owned by root and listed in order, the layers are
// gzipped by the standard library. It refuses a binary that is not static
// or lacks the console, so an image cannot ship either by mistake.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The user loom runs as: not root, and the uid distroless images use, so a
// cluster's policies written for those fit.
const (
	uid  = 65532
	user = "loom"
)

// Options are what an image is made of.
type Options struct {
	Binary     string    // the loom binary: static, linux
	ConsoleDir string    // the console's built assets, which the binary must embed
	CACerts    string    // a PEM bundle of CA certificates; empty: none
	Epoch      time.Time // every timestamp of the image
	Revision   string    // the source revision, as a label; empty: none
}

func main() {
	var o Options
	var out, tag string
	var epoch int64
	flag.StringVar(&o.Binary, "binary", "../out/loom", "the loom binary (CGO_ENABLED=0 GOOS=linux)")
	flag.StringVar(&o.ConsoleDir, "console", "../server/internal/console/dist", "the console's assets, which the binary must embed")
	flag.StringVar(&o.CACerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA certificates to put in the image; empty: none")
	flag.Int64Var(&epoch, "epoch", 0, "every timestamp in the image, in seconds since 1970 (SOURCE_DATE_EPOCH)")
	flag.StringVar(&o.Revision, "revision", "", "the source revision, recorded as the label org.opencontainers.image.revision")
	flag.StringVar(&out, "o", "../out/loom-image.tar", "the tarball to write")
	flag.StringVar(&tag, "tag", "loom:dev", "the image's name in the tarball")
	flag.Parse()
	o.Epoch = time.Unix(epoch, 0).UTC()
	if err := run(o, out, tag); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(o Options, out, tag string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	img, err := Build(o)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s\n", d, out)
	return nil
}

// Build makes the image.
func Build(o Options) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, err
	}
	if err := checkStatic(o.Binary); err != nil {
		return nil, err
	}
	if err := checkConsole(bin, o.ConsoleDir); err != nil {
		return nil, err
	}
	// Two layers: the one that changes with every build last, so that a
	// registry keeps the first.
	base := []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:\n%s:x:%d:\n", user, uid))},
		{name: "etc/passwd", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:/home/%s:/sbin/nologin\n", user, uid, uid, user, user))},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/" + user + "/", mode: 0o700, dir: true, uid: uid},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
	if o.CACerts != "" {
		certs, err := os.ReadFile(o.CACerts)
		if err != nil {
			return nil, err
		}
		base = append(base,
			file{name: "etc/ssl/", mode: 0o755, dir: true},
			file{name: "etc/ssl/certs/", mode: 0o755, dir: true},
			file{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: certs})
	}
	app := []file{
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/local/", mode: 0o755, dir: true},
		{name: "usr/local/bin/", mode: 0o755, dir: true},
		{name: "usr/local/bin/loom", mode: 0o755, data: bin},
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range []struct {
		files []file
		what  string
	}{{base, "a non-root user, CA certificates, /tmp"}, {app, "loom"}} {
		layer, err := newLayer(l.files, o.Epoch)
		if err != nil {
			return nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
			Created: v1.Time{Time: o.Epoch}, CreatedBy: "tools/image: " + l.what, Comment: "loom",
		}})
		if err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: o.Epoch}
	labels := map[string]string{
		"org.opencontainers.image.title":  "loom",
		"org.opencontainers.image.source": "https://github.com/loomhq/loom",
	}
	if o.Revision != "" {
		labels["org.opencontainers.image.revision"] = o.Revision
	}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint: []string{"/usr/local/bin/loom"},
		Cmd:        []string{"serve"},
		// loom serve listens on loopback by default: in a container the API
		// and the admin port (probes, metrics) must be reachable from
		// outside it. The admin port is for the cluster's eyes only: a
		// Service must not expose it (see deploy/helm/loom).
		Env: []string{
			"PATH=/usr/local/bin",
			"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
			"LOOM_ADDR=:8080",
			"LOOM_ADMIN_ADDR=:8081",
		},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		WorkingDir:   "/home/" + user,
		Labels:       labels,
	}
	return mutate.ConfigFile(img, cf)
}

// A file is an entry of a layer.
type file struct {
	name string
	mode int64
	dir  bool
	uid  int
	data []byte
}

// newLayer is a gzipped tar of files, in their order, every time epoch.
func newLayer(files []file, epoch time.Time) (v1.Layer, error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: epoch, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.DefaultCompression) // no name, no time in its header
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	blob := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(blob)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// checkStatic refuses a binary that needs a dynamic loader or shared
// libraries: the image has neither.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not a linux binary: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is linked dynamically (build it with CGO_ENABLED=0)", path)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("%s needs shared libraries %v (build it with CGO_ENABLED=0)", path, libs)
	}
	return nil
}

// checkConsole refuses a binary that does not hold every file of the
// console's build as it is now: //go:embed keeps them whole, so a binary
// built before `make console` or without the assets is found out.
func checkConsole(bin []byte, dir string) error {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if len(b) > 0 && !bytes.Contains(bin, b) {
			return fmt.Errorf("the binary does not embed the console's %s: rebuild it after the console", path)
		}
		n++
		return nil
	})
	if err == nil && n == 0 {
		err = errors.New("no console assets in " + dir)
	}
	return err
}
