package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// A callback token binds a Migrator's reports to one dispatch: the Run
// execution, the step and the attempt. It is an HMAC-SHA256 of those, under
// a server key named in the token, so that keys can be rotated without
// breaking Runs in flight: new tokens use the newest key, the older keys keep
// verifying until they are removed. The token carries no expiry: it is valid
// exactly as long as its step and attempt are current, which the Run decides.
//
// Format: "lct1.<key id>.<base64url HMAC>".

const callbackPrefix = "lct1"

// CallbackKey is one HMAC key.
type CallbackKey struct {
	ID     string
	Secret []byte
}

// NewCallbackKey returns a random key.
func NewCallbackKey(id string) (CallbackKey, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return CallbackKey{}, err
	}
	return CallbackKey{ID: id, Secret: secret}, nil
}

// Callbacks signs and verifies callback tokens.
type Callbacks struct {
	// keys[0] signs; all verify.
	keys []CallbackKey
}

// NewCallbacks returns a signer with keys, the first one signing.
func NewCallbacks(keys ...CallbackKey) (*Callbacks, error) {
	if len(keys) == 0 {
		return nil, errors.New("callback tokens need at least one key")
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if k.ID == "" || strings.ContainsAny(k.ID, ".") || len(k.Secret) < 32 {
			return nil, fmt.Errorf("callback key %q: ids are non-empty without '.', secrets at least 32 bytes", k.ID)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("callback key %q appears twice", k.ID)
		}
		seen[k.ID] = true
	}
	return &Callbacks{keys: keys}, nil
}

// Binding is what a callback token is bound to.
type Binding struct {
	RunID     string
	Execution int64
	Step      string
	Attempt   int
}

func (b Binding) message() []byte {
	// Length-prefixed fields: no two bindings share an encoding.
	var out []byte
	for _, s := range []string{b.RunID, b.Step} {
		out = binary.BigEndian.AppendUint32(out, uint32(len(s)))
		out = append(out, s...)
	}
	out = binary.BigEndian.AppendUint64(out, uint64(b.Execution))
	out = binary.BigEndian.AppendUint64(out, uint64(b.Attempt))
	return out
}

// Sign returns the callback token of a dispatch.
func (c *Callbacks) Sign(b Binding) string {
	k := c.keys[0]
	return callbackPrefix + "." + k.ID + "." + base64.RawURLEncoding.EncodeToString(mac(k.Secret, b))
}

// ErrBadCallbackToken says a callback token is malformed, signed by no key
// this server has, or bound to something else than the report.
var ErrBadCallbackToken = errors.New("invalid callback token")

// Verify checks that token was issued by this server for exactly b.
func (c *Callbacks) Verify(token string, b Binding) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != callbackPrefix {
		return ErrBadCallbackToken
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil || len(got) != sha256.Size {
		return ErrBadCallbackToken
	}
	for _, k := range c.keys {
		if k.ID == parts[1] {
			if hmac.Equal(got, mac(k.Secret, b)) {
				return nil
			}
			return ErrBadCallbackToken
		}
	}
	return ErrBadCallbackToken
}

func mac(secret []byte, b Binding) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(b.message())
	return h.Sum(nil)
}
