package dispatch_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/loomhq/loom/gen/loom/migrator/v1/migratorv1connect"
	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/dispatch"
)

func TestPolicyRefusesInternalAddresses(t *testing.T) {
	ctx := context.Background()
	strict := &dispatch.Policy{}
	for _, u := range []string{
		"http://127.0.0.1:9090",
		"http://[::1]:9090",
		"http://169.254.169.254/latest/meta-data",
		"http://[fd00:ec2::254]/",
		"http://100.100.100.200/",
		"http://0.0.0.0:9090",
		"http://localhost:9090", // a name that resolves to loopback
		"ftp://migrator.example",
	} {
		if err := strict.CheckURL(ctx, u); !errors.Is(err, dispatch.ErrRefusedAddress) {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://10.1.2.3:9090", "https://192.168.1.10", "http://name-that-does-not-resolve.invalid:9090"} {
		if err := strict.CheckURL(ctx, u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	dev := &dispatch.Policy{AllowNets: []*net.IPNet{loopback}}
	if err := dev.CheckURL(ctx, "http://127.0.0.1:9090"); err != nil {
		t.Errorf("an allowed network is refused: %v", err)
	}
	named := &dispatch.Policy{Hosts: []string{"*.migrators.svc", "go-upgrader"}}
	for u, ok := range map[string]bool{
		"http://a.migrators.svc:80": true, "http://go-upgrader:80": true, "http://evil.example:80": false, "http://migrators.svc.evil:80": false,
	} {
		if err := named.CheckURL(ctx, u); (err == nil) != ok {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// The policy holds at dial time too: a name announced while it resolved
// elsewhere cannot later lead Loom to a refused address.
func TestDialTimeCheck(t *testing.T) {
	m := &migrator{}
	url := serve(t, m) // on 127.0.0.1
	n := dispatch.New(dispatch.Options{Policy: &dispatch.Policy{}})
	err := n.ExecuteStep(context.Background(), strings.Replace(url, "127.0.0.1", "localhost", 1), dispatchOne)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("dial to loopback: %v", err)
	}
	if m.got != nil {
		t.Fatal("the Migrator was called")
	}
}

func TestCallsAreSigned(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := auth.NewSigner(auth.SigningKey{ID: "s1", Private: priv})
	pub := signer.PublicKeys()[0].Public
	var header string
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header = r.Header.Get(auth.SignatureHeader)
		body, _ = io.ReadAll(r.Body)
		http.Error(w, "recorded", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	_ = dispatch.New(dispatch.Options{Signer: signer}).ExecuteStep(context.Background(), srv.URL, dispatchOne)

	fields := map[string]string{}
	for _, p := range strings.Split(header, ";")[1:] {
		k, v, _ := strings.Cut(p, "=")
		fields[k] = v
	}
	if !strings.HasPrefix(header, "v1;") || fields["key"] != "s1" || len(body) == 0 {
		t.Fatalf("signature header %q over %d bytes", header, len(body))
	}
	sig, err := base64.RawURLEncoding.DecodeString(fields["sig"])
	if err != nil {
		t.Fatal(err)
	}
	ts, err := strconv.ParseInt(fields["t"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	msg := auth.SignedMessage(http.MethodPost, "/"+migratorv1connect.MigratorServiceName+"/ExecuteStep", ts, body)
	if !ed25519.Verify(pub, msg, sig) {
		t.Fatal("the signature does not verify over the body sent")
	}
	tampered := append([]byte("x"), body...)
	if ed25519.Verify(pub, auth.SignedMessage(http.MethodPost, "/"+migratorv1connect.MigratorServiceName+"/ExecuteStep", ts, tampered), sig) {
		t.Fatal("the signature does not cover the body")
	}
}
