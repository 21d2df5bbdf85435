package devenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// cert.go makes `loom dev -tls`'s certificate: self-signed, for 127.0.0.1,
// ::1 and localhost, made on the first start in the data directory and
// reused after (a browser that was told to trust it keeps trusting it).
// Over TLS a browser speaks HTTP/2 with Loom (ALPN h2), with no limit of 6
// connections per host: every tab's live streams fit.

// devCertValidity is how long a certificate made by loom dev is valid; one
// within devCertRenewBefore of its end is made again at start.
const (
	devCertValidity    = 365 * 24 * time.Hour
	devCertRenewBefore = 7 * 24 * time.Hour
)

// devCertHosts are the names the certificate is valid for.
var devCertHosts = []string{"127.0.0.1", "::1", "localhost"}

// ensureDevCert returns the certificate and key files under dir/tls, making
// them when missing, unreadable, or about to expire.
func ensureDevCert(dir string, now time.Time) (certFile, keyFile string, err error) {
	tdir := filepath.Join(dir, "tls")
	certFile, keyFile = filepath.Join(tdir, "cert.pem"), filepath.Join(tdir, "key.pem")
	if pair, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil && pair.Leaf != nil &&
		now.Add(devCertRenewBefore).Before(pair.Leaf.NotAfter) {
		return certFile, keyFile, nil
	}
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "loom dev (localhost)", Organization: []string{"loom dev"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(devCertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range devCertHosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("make the development certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	// The key first: a certificate without its key is never left behind
	// as if complete.
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// devCertPool is a pool holding the certificate of certFile, for loom dev's
// own clients of the API (the example Migrator).
func devCertPool(certFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", certFile)
	}
	return pool, nil
}
