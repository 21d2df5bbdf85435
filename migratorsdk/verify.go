package migratorsdk

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Loom signs every call it makes to a Migrator (the Loom-Signature header,
// see loom.migrator.v1.MigratorService), and publishes its public keys.
// The SDK fetches the keys from the Loom it announces to and refuses calls
// that are not signed by one of them, or that are older than maxSkew: a
// Migrator obeys only its Loom. When that Loom publishes no keys (it does
// not authenticate callers, as in tests) nothing is checked.

const (
	signatureHeader = "Loom-Signature"
	maxSkew         = 5 * time.Minute
	maxBody         = 32 << 20
)

type verifier struct {
	client *Client
	now    func() time.Time

	mu      sync.Mutex
	loaded  bool              // the key set was fetched once
	keys    map[string][]byte // nil or empty: Loom does not sign
	fetched time.Time
}

// load fetches Loom's keys.
func (v *verifier) load(ctx context.Context) error {
	keys, err := v.client.SigningKeys(ctx)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.keys, v.loaded, v.fetched = keys, true, v.now()
	v.mu.Unlock()
	return nil
}

// key returns the key id names, reloading the set (at most every 10 s) when
// Loom has rotated to a key not seen yet.
func (v *verifier) key(ctx context.Context, id string) (ed25519.PublicKey, bool) {
	v.mu.Lock()
	k, ok := v.keys[id]
	stale := v.now().Sub(v.fetched) > 10*time.Second
	v.mu.Unlock()
	if ok || !stale {
		return k, ok
	}
	if err := v.load(ctx); err != nil {
		return nil, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	k, ok = v.keys[id]
	return k, ok
}

var errBadSignature = errors.New("not signed by this Migrator's Loom")

// wrap checks the signature of every call before h sees it.
func (v *verifier) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v.mu.Lock()
		loaded, signs := v.loaded, len(v.keys) > 0
		v.mu.Unlock()
		if !loaded {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			err := v.load(ctx)
			cancel()
			if err != nil {
				// Loom retries on Unavailable; the keys will be there then.
				http.Error(w, "cannot fetch Loom's signing keys yet: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			v.mu.Lock()
			signs = len(v.keys) > 0
			v.mu.Unlock()
		}
		if !signs {
			h.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := v.check(r, body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	})
}

// check verifies a call's Loom-Signature header over its body.
func (v *verifier) check(r *http.Request, body []byte) error {
	fields := map[string]string{}
	parts := strings.Split(r.Header.Get(signatureHeader), ";")
	if parts[0] != "v1" {
		return errBadSignature
	}
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			return errBadSignature
		}
		fields[k] = val
	}
	t, err := strconv.ParseInt(fields["t"], 10, 64)
	if err != nil {
		return errBadSignature
	}
	if skew := v.now().Sub(time.Unix(t, 0)); skew > maxSkew || skew < -maxSkew {
		return errors.New("signature too old or from the future: check the clocks")
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(fields["sig"])
	if err != nil {
		return errBadSignature
	}
	key, ok := v.key(r.Context(), fields["key"])
	if !ok || len(key) != ed25519.PublicKeySize {
		return errBadSignature
	}
	sum := sha256.Sum256(body)
	msg := "loom-signature-v1\n" + r.Method + "\n" + r.URL.Path + "\n" + fields["t"] + "\n" + hex.EncodeToString(sum[:])
	if !ed25519.Verify(key, []byte(msg), sig) {
		return errBadSignature
	}
	return nil
}
