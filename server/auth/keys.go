package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// KeysFile is the server keys file of `loom serve`: the HMAC keys of
// callback tokens and the Ed25519 keys Loom signs its calls to Migrators
// with. `loom keys init` writes one; rotate by putting a new key first and
// keeping the old ones (a signing key with a retire_time stays published
// until then).
//
//	{"callback_keys": [{"id": "c1", "secret": "<base64, 32 bytes>"}],
//	 "signing_keys": [{"id": "s1", "private_key": "<base64 Ed25519 seed, 32 bytes>"}]}
type KeysFile struct {
	CallbackKeys []CallbackKeyEntry `json:"callback_keys"`
	SigningKeys  []SigningKeyEntry  `json:"signing_keys"`
}

// CallbackKeyEntry is one HMAC key of a keys file.
type CallbackKeyEntry struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// SigningKeyEntry is one Ed25519 key of a keys file.
type SigningKeyEntry struct {
	ID         string `json:"id"`
	PrivateKey string `json:"private_key"`
	// RetireTime ends a key after a rotation (RFC 3339); empty: in use.
	RetireTime string `json:"retire_time,omitempty"`
}

// NewKeysFile returns fresh keys.
func NewKeysFile() (KeysFile, error) {
	secret := make([]byte, 32)
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(secret); err != nil {
		return KeysFile{}, err
	}
	if _, err := rand.Read(seed); err != nil {
		return KeysFile{}, err
	}
	id := strconv.FormatInt(time.Now().Unix(), 36)
	return KeysFile{
		CallbackKeys: []CallbackKeyEntry{{ID: "c" + id, Secret: base64.StdEncoding.EncodeToString(secret)}},
		SigningKeys:  []SigningKeyEntry{{ID: "s" + id, PrivateKey: base64.StdEncoding.EncodeToString(seed)}},
	}, nil
}

// LoadKeys reads a keys file.
func LoadKeys(path string) (*Callbacks, *Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read keys file: %w", err)
	}
	var f KeysFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, nil, fmt.Errorf("keys file %s: %w", path, err)
	}
	return f.Keys()
}

// Keys builds the callback signer and the call signer of a keys file.
func (f KeysFile) Keys() (*Callbacks, *Signer, error) {
	var cks []CallbackKey
	for _, e := range f.CallbackKeys {
		secret, err := base64.StdEncoding.DecodeString(e.Secret)
		if err != nil {
			return nil, nil, fmt.Errorf("callback key %s: secret: %w", e.ID, err)
		}
		cks = append(cks, CallbackKey{ID: e.ID, Secret: secret})
	}
	callbacks, err := NewCallbacks(cks...)
	if err != nil {
		return nil, nil, err
	}
	var sks []SigningKey
	for _, e := range f.SigningKeys {
		seed, err := base64.StdEncoding.DecodeString(e.PrivateKey)
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, nil, fmt.Errorf("signing key %s: private_key must be a base64 Ed25519 seed of %d bytes", e.ID, ed25519.SeedSize)
		}
		k := SigningKey{ID: e.ID, Private: ed25519.NewKeyFromSeed(seed)}
		if e.RetireTime != "" {
			if k.RetireTime, err = time.Parse(time.RFC3339, e.RetireTime); err != nil {
				return nil, nil, fmt.Errorf("signing key %s: retire_time: %w", e.ID, err)
			}
		}
		sks = append(sks, k)
	}
	signer, err := NewSigner(sks...)
	if err != nil {
		return nil, nil, err
	}
	return callbacks, signer, nil
}

// SigningKey is an Ed25519 key Loom signs its calls to Migrators with.
type SigningKey struct {
	ID         string
	Private    ed25519.PrivateKey
	RetireTime time.Time
}

// Signer signs Loom's calls to Migrators.
type Signer struct {
	keys []SigningKey // keys[0] signs
	now  func() time.Time
}

// NewSigner returns a signer; the first key signs, every key is published.
func NewSigner(keys ...SigningKey) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("signing needs at least one key")
	}
	if !keys[0].RetireTime.IsZero() {
		return nil, fmt.Errorf("signing key %s: the signing key (the first) cannot be retiring", keys[0].ID)
	}
	for _, k := range keys {
		if k.ID == "" || strings.ContainsAny(k.ID, ";= ") {
			return nil, fmt.Errorf("signing key id %q: non-empty, without ';', '=' or spaces", k.ID)
		}
	}
	return &Signer{keys: keys, now: time.Now}, nil
}

// PublicKey is a published verification key.
type PublicKey struct {
	ID         string
	Public     ed25519.PublicKey
	RetireTime time.Time
}

// PublicKeys lists the keys that verify Loom's signatures now.
func (s *Signer) PublicKeys() []PublicKey {
	var out []PublicKey
	now := s.now()
	for _, k := range s.keys {
		if !k.RetireTime.IsZero() && now.After(k.RetireTime) {
			continue
		}
		out = append(out, PublicKey{ID: k.ID, Public: k.Private.Public().(ed25519.PublicKey), RetireTime: k.RetireTime})
	}
	return out
}

// SignatureHeader is the header carrying Loom's signature of a call.
const SignatureHeader = "Loom-Signature"

// SignedMessage is what a signature covers.
func SignedMessage(method, path string, unix int64, body []byte) []byte {
	sum := sha256.Sum256(body)
	return []byte("loom-signature-v1\n" + method + "\n" + path + "\n" + strconv.FormatInt(unix, 10) + "\n" + hex.EncodeToString(sum[:]))
}

// Sign sets the signature header of a request whose body is body.
func (s *Signer) Sign(req *http.Request, body []byte) {
	k := s.keys[0]
	t := s.now().Unix()
	sig := ed25519.Sign(k.Private, SignedMessage(req.Method, req.URL.Path, t, body))
	req.Header.Set(SignatureHeader, "v1;key="+k.ID+";t="+strconv.FormatInt(t, 10)+";sig="+base64.RawURLEncoding.EncodeToString(sig))
}
