package server_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	migratorv1 "github.com/loomhq/loom/gen/loom/migrator/v1"
	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/migratorsdk"
	"github.com/loomhq/loom/server"
	"github.com/loomhq/loom/server/auth"
)

// credentials writes a tokens file and a keys file, and returns the tokens
// by name: operator, migrator (owns go-upgrade), stranger (a migrator of
// another Migration).
func credentials(t *testing.T) (tokensFile, keysFile string, tokens map[string]string) {
	t.Helper()
	dir := t.TempDir()
	tokens = map[string]string{}
	var f auth.TokensFile
	for _, e := range []auth.StaticToken{
		{Subject: "alice", Role: auth.RoleOperator},
		{Subject: "go-upgrader", Role: auth.RoleMigrator, Scope: auth.Scope{IDs: []string{"go-upgrade"}}},
		{Subject: "helm-upgrader", Role: auth.RoleMigrator, Scope: auth.Scope{IDs: []string{"helm-upgrade"}}},
	} {
		tok, hash, err := auth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		e.SHA256 = hash
		f.Tokens = append(f.Tokens, e)
		tokens[map[string]string{"alice": "operator", "go-upgrader": "migrator", "helm-upgrader": "stranger"}[e.Subject]] = tok
	}
	keys, err := auth.NewKeysFile()
	if err != nil {
		t.Fatal(err)
	}
	tokensFile, keysFile = filepath.Join(dir, "tokens.json"), filepath.Join(dir, "keys.json")
	for path, v := range map[string]any{tokensFile: f, keysFile: keys} {
		b, _ := jsonMarshal(v)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return tokensFile, keysFile, tokens
}

// clientsAs are the API's clients with a caller's token.
func (l *loom) as(token string) *loom {
	opt := migratorsdk.WithToken(token)
	return &loom{
		url:       l.url,
		stop:      l.stop,
		registry:  loomv1connect.NewRegistryServiceClient(http.DefaultClient, l.url, opt),
		discovery: loomv1connect.NewDiscoveryServiceClient(http.DefaultClient, l.url, opt),
		runs:      loomv1connect.NewRunServiceClient(http.DefaultClient, l.url, opt),
		events:    loomv1connect.NewEventServiceClient(http.DefaultClient, l.url, opt),
		token:     token,
	}
}

// signatures records the Loom-Signature header and body of every call the
// test Migrator gets.
type signatures struct {
	mu    sync.Mutex
	calls []signedCall
}

type signedCall struct {
	header, path string
	body         []byte
}

func (s *signatures) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.calls = append(s.calls, signedCall{r.Header.Get(auth.SignatureHeader), r.URL.Path, body})
		s.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		h.ServeHTTP(w, r)
	})
}

func TestTrustEndToEnd(t *testing.T) {
	tokensFile, keysFile, tokens := credentials(t)
	w := newWorld(t)
	sigs := &signatures{}
	inner := w.migrator.handler
	w.migrator.handler = sigs.wrap(inner)
	w.configure = func(c *server.Config) {
		c.Security = server.SecurityConfig{TokensFile: tokensFile, KeysFile: keysFile, AllowMigratorNets: []string{"127.0.0.0/8"}}
	}
	l := w.startLoom()
	operator, migrator, stranger := l.as(tokens["operator"]), l.as(tokens["migrator"]), l.as(tokens["stranger"])

	// Without a token nothing works; with the wrong role neither.
	_, err := l.registry.ListMigrations(ctx, connect.NewRequest(&loomv1.ListMigrationsRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated, "")
	_, err = operator.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: &loomv1.Migration{
		Id: "go-upgrade", Name: "x", Steps: []*loomv1.StepDefinition{{Name: "s", Type: "t"}}, MigratorUrl: w.migrator.url}}))
	wantCode(t, err, connect.CodePermissionDenied, "")

	// Announced by its Migrator; a loopback Migrator is allowed here, a
	// metadata address never.
	_, err = migrator.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: &loomv1.Migration{
		Id: "go-upgrade", Name: "x", Steps: []*loomv1.StepDefinition{{Name: "s", Type: "t"}}, MigratorUrl: "http://169.254.169.254/latest"}}))
	wantCode(t, err, connect.CodeInvalidArgument, loomv1.ErrorReason_MIGRATOR_URL_REFUSED)
	migrator.setup(t, w.migrator.url, "acme/payments")
	_, err = stranger.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{
		MigrationId: "go-upgrade", Candidates: []*loomv1.Candidate{{Id: "evil", Kind: "service"}}}))
	wantCode(t, err, connect.CodePermissionDenied, "")

	if _, err := operator.runs.StartRun(ctx, connect.NewRequest(&loomv1.StartRunRequest{
		MigrationId: "go-upgrade", CandidateId: "acme/payments", Inputs: map[string]string{"target_version": "1.23"},
	})); err != nil {
		t.Fatal(err)
	}
	const runID = "go-upgrade__acme/payments"
	d := w.nextDispatch()
	if d.CallbackToken == "" {
		t.Fatal("the dispatch carries no callback token")
	}

	// The dispatch is signed with a published key.
	keys, err := migrator.registry.ListSigningKeys(ctx, connect.NewRequest(&loomv1.ListSigningKeysRequest{}))
	if err != nil || len(keys.Msg.Keys) == 0 {
		t.Fatalf("signing keys: %v %v", keys, err)
	}
	sigs.mu.Lock()
	call := sigs.calls[len(sigs.calls)-1]
	sigs.mu.Unlock()
	if !verifySignature(keys.Msg.Keys, call) {
		t.Fatalf("the dispatch's signature %q does not verify", call.header)
	}

	report := func(as *loom, d *migratorv1.ExecuteStepRequest, status loomv1.StepStatus, mutate ...func(*loomv1.ReportStepStatusRequest)) error {
		req := &loomv1.ReportStepStatusRequest{RunId: d.RunId, Execution: d.Execution, StepName: d.Step.Name, Attempt: d.Attempt,
			Status: status, CallbackToken: d.CallbackToken}
		for _, m := range mutate {
			m(req)
		}
		_, err := as.events.ReportStepStatus(ctx, connect.NewRequest(req))
		return err
	}
	// Forged, missing, or someone else's token: nothing changes.
	wantCode(t, report(migrator, d, loomv1.StepStatus_STEP_STATUS_FAILED, func(r *loomv1.ReportStepStatusRequest) {
		r.CallbackToken = "lct1." + strings.Split(d.CallbackToken, ".")[1] + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	}), connect.CodeUnauthenticated, "")
	wantCode(t, report(migrator, d, loomv1.StepStatus_STEP_STATUS_FAILED, func(r *loomv1.ReportStepStatusRequest) { r.CallbackToken = "" }),
		connect.CodeUnauthenticated, "")
	wantCode(t, report(stranger, d, loomv1.StepStatus_STEP_STATUS_FAILED), connect.CodePermissionDenied, "")
	wantCode(t, report(operator, d, loomv1.StepStatus_STEP_STATUS_FAILED), connect.CodePermissionDenied, "")
	if r := operator.getRun(t, runID); r.CurrentStepStatus != loomv1.StepStatus_STEP_STATUS_IN_PROGRESS {
		t.Fatalf("a refused report changed the step: %v", r.CurrentStepStatus)
	}

	// The Migrator reads the current callback token in its Run; operators do not.
	if r := migrator.getRun(t, runID); r.StepResults[0].CallbackToken != d.CallbackToken {
		t.Fatalf("the migrator's view of the token: %q, want %q", r.StepResults[0].CallbackToken, d.CallbackToken)
	}
	if r := operator.getRun(t, runID); r.StepResults[0].CallbackToken != "" {
		t.Fatal("an operator sees the callback token")
	}

	// The genuine token works; after a retry it is stale: failed_precondition.
	if err := report(migrator, d, loomv1.StepStatus_STEP_STATUS_FAILED); err != nil {
		t.Fatal(err)
	}
	if _, err := operator.runs.RetryStep(ctx, connect.NewRequest(&loomv1.RetryStepRequest{RunId: runID, StepName: "bump-go", Attempt: 1})); err != nil {
		t.Fatal(err)
	}
	d2 := w.nextDispatch()
	if d2.Attempt != 2 || d2.CallbackToken == d.CallbackToken {
		t.Fatalf("retry dispatch %v", d2)
	}
	wantCode(t, report(migrator, d, loomv1.StepStatus_STEP_STATUS_OPEN, func(r *loomv1.ReportStepStatusRequest) { r.PrUrl = "https://x.example/1" }),
		connect.CodeFailedPrecondition, loomv1.ErrorReason_STALE_ATTEMPT)
	// Attempt 1's token does not pass for attempt 2.
	wantCode(t, report(migrator, d2, loomv1.StepStatus_STEP_STATUS_FAILED, func(r *loomv1.ReportStepStatusRequest) { r.CallbackToken = d.CallbackToken }),
		connect.CodeUnauthenticated, "")
	if err := report(migrator, d2, loomv1.StepStatus_STEP_STATUS_OPEN, func(r *loomv1.ReportStepStatusRequest) { r.PrUrl = "https://x.example/2" }); err != nil {
		t.Fatal(err)
	}
	// Cancelled: the Run's actor is the operator's name.
	res, err := operator.runs.CancelRun(ctx, connect.NewRequest(&loomv1.CancelRunRequest{RunId: runID, Reason: "test"}))
	if err != nil || res.Msg.Run.Status != loomv1.RunStatus_RUN_STATUS_CANCELLED {
		t.Fatalf("cancel: %v %v", res, err)
	}
	if got := operator.getRun(t, runID).StepResults[0].Actor; got != "go-upgrader" {
		t.Fatalf("the last report's actor is %q, want the Migrator's subject", got)
	}
}

func verifySignature(keys []*loomv1.SigningKey, c signedCall) bool {
	f := map[string]string{}
	for _, p := range strings.Split(c.header, ";")[1:] {
		k, v, _ := strings.Cut(p, "=")
		f[k] = v
	}
	ts, _ := strconv.ParseInt(f["t"], 10, 64)
	sig, _ := base64.RawURLEncoding.DecodeString(f["sig"])
	for _, k := range keys {
		if k.Id == f["key"] && ed25519.Verify(k.PublicKey, auth.SignedMessage(http.MethodPost, c.path, ts, c.body), sig) {
			return true
		}
	}
	return false
}

// TestTLS serves the API over TLS and calls it over Connect and gRPC.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	w := newWorld(t)
	cfg := server.DefaultConfig()
	cfg.Redis.Addrs = []string{w.redis.Addr()}
	cfg.Temporal.HostPort = w.temporal.GetFrontendHostPort()
	cfg.Temporal.Namespace = w.temporal.GetDefaultNamespace()
	cfg.Security.Insecure = true
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	// Mutual TLS: a client certificate, when given, must come from this CA.
	clientCA, clientCert := clientCertificates(t, dir)
	cfg.TLS.ClientCAFile = clientCA
	srv, err := server.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := contextWithCancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, l, nil) }()
	defer func() { cancel(); <-done }()

	url := "https://" + l.Addr().String()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	for name, opts := range map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}} {
		c := loomv1connect.NewRegistryServiceClient(hc, url, opts...)
		if _, err := c.ListMigrations(ctx, connect.NewRequest(&loomv1.ListMigrationsRequest{})); err != nil {
			t.Fatalf("%s over TLS: %v", name, err)
		}
	}
	// A client that does not trust the certificate is refused.
	c := loomv1connect.NewRegistryServiceClient(http.DefaultClient, url)
	if _, err := c.ListMigrations(ctx, connect.NewRequest(&loomv1.ListMigrationsRequest{})); err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
	// A client certificate of the CA passes; one of another CA is refused.
	_, stranger := clientCertificates(t, t.TempDir())
	for name, tc := range map[string]struct {
		cert tls.Certificate
		ok   bool
	}{"trusted client": {clientCert, true}, "unknown client": {stranger, false}} {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{tc.cert}}, ForceAttemptHTTP2: true}}
		_, err := loomv1connect.NewRegistryServiceClient(hc, url).ListMigrations(ctx, connect.NewRequest(&loomv1.ListMigrationsRequest{}))
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// clientCertificates writes a CA and returns it with a client certificate
// it signed.
func clientCertificates(t *testing.T, dir string) (caFile string, cert tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "migrators-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "go-upgrader"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "client-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// selfSigned writes a certificate for 127.0.0.1 and returns a pool trusting it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "loom-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
