package devenv

import (
	"bytes"
	"crypto/tls"
	"os"
	"testing"
	"time"
)

// loom dev -tls makes its certificate once and reuses it (a browser told
// to trust it keeps trusting it), for every local name; one about to
// expire is made again.
func TestTheDevCertificateIsMadeOnceForLocalNames(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	certFile, keyFile, err := ensureDevCert(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(certFile)
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := pair.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if _, _, err := ensureDevCert(dir, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(certFile)
	if !bytes.Equal(first, again) {
		t.Error("a second start made a new certificate")
	}
	if _, _, err := ensureDevCert(dir, now.Add(devCertValidity-time.Hour)); err != nil {
		t.Fatal(err)
	}
	renewed, _ := os.ReadFile(certFile)
	if bytes.Equal(first, renewed) {
		t.Error("a certificate about to expire was kept")
	}
}
