package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// script.go owns how the Lua scripts are written: the conventions they all
// follow, their reply codes and reply decoding, and scriptKeys, which
// declares a script's KEYS by name.

// Lua scripts: every change that touches more than one key is one script, so
// it applies whole or not at all and concurrent writers cannot interleave.
// Scripts run with redis.Script.Run (EVALSHA, falling back to EVAL). Each
// script sits beside the method that runs it, documented like a function
// (KEYS, ARGV, returns); this file holds what they all follow.
//
// Keys. Each script declares in KEYS the fixed keys it touches and, where it
// must reach keys named by data it reads (a Candidate, the index of its
// kind), the key prefix of those keys (see keys.go, "...Prefix" functions).
// The script appends the variable part to the prefix. Every prefix carries
// the Migration's hash tag, so every key a script builds is in the slot of
// its declared keys: the scripts run unchanged on Redis Cluster, which runs a
// script on the node that owns its declared keys' slot, where every key built
// this way lives too. No script builds a key from anything but such a
// prefix; the strings it appends to other names are Pub/Sub channels, which
// have no slot. (Redis does not check this for a script without a shebang
// line, as these are: it may reach any key of its node, so a key of another
// slot would fail only when that slot lives on another node, which the
// one-node cluster test cannot show. keys_test.go and script_test.go check
// instead that the keys and prefixes the scripts are given carry the tag.)
//
// A script with a long or shared KEYS list, and every script that records
// events, declares its KEYS as a scriptKeys: one list that both builds the
// KEYS slice the caller passes and binds each key to a named Lua local at
// the top of the script ("local k_migration = KEYS[1]"), so the two cannot
// drift apart (script_test.go checks that such a script reads KEYS by name
// only, and every key it declares). A local ending in _prefix is a prefix
// as above. The other scripts, a few keys each, two of them with keys that
// vary per call (the index a filter pages through), read KEYS by position,
// listed in their doc comments.
//
// Replies. Scripts that can refuse return an array whose first element is a
// reply code (reply* below), followed by the script's data. Refusals are
// data, not Redis errors, so no error string is ever parsed.
//
// Names. Scripts use the literal hash field names of keys.go and encode.go
// ("def", "status", "n:<status>", ...) and the status names "not_started",
// "running", "completed" of migration.CandidateStatus. They need Redis ≥ 6.2
// (ZRANGE ... BYLEX).

// Reply codes: the first element of a script's reply.
const (
	replyOK                = 0
	replyMigrationNotFound = 1
	replyCandidateNotFound = 2
	replyHasRunning        = 3
	replyStatusChanged     = 4
	replyCompleted         = 5
	replyStaleExecution    = 6
	replyRunNotFound       = 7
)

// Script replies, decoded. Lua integers arrive as int64, strings as string,
// tables as []any (RESP2 and RESP3 alike).

func replyCode(res []any) (int64, error) {
	if len(res) == 0 {
		return 0, errors.New("empty script reply")
	}
	return replyInt(res[0])
}

func replyIntAt(res []any, i int) (int64, error) {
	if i >= len(res) {
		return 0, fmt.Errorf("short script reply %v", res)
	}
	return replyInt(res[i])
}

func replyInt(v any) (int64, error) {
	switch n := v.(type) {
	case int64:
		return n, nil
	case string:
		return strconv.ParseInt(n, 10, 64)
	}
	return 0, fmt.Errorf("unexpected %T in script reply, want integer", v)
}

func replyString(v any) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", fmt.Errorf("unexpected %T in script reply, want string", v)
}

// replyFields turns the flat field/value array of HGETALL (as a script sees
// it) into a map.
func replyFields(v any) (map[string]string, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("unexpected %T in script reply, want array", v)
	}
	if len(a)%2 != 0 {
		return nil, errors.New("odd field list in script reply")
	}
	h := make(map[string]string, len(a)/2)
	for i := 0; i < len(a); i += 2 {
		k, err1 := replyString(a[i])
		val, err2 := replyString(a[i+1])
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		h[k] = val
	}
	return h, nil
}

// scriptKey is one of the KEYS of a script: the Lua local the script reads
// it as, and the key (or key prefix) of Migration m and, for keys of one
// Candidate, Candidate c.
type scriptKey struct {
	name         string
	key          func(m, c string) string
	perCandidate bool
}

// ofMigration declares a key of the Migration alone.
func ofMigration(name string, key func(m string) string) scriptKey {
	return scriptKey{name: name, key: func(m, _ string) string { return key(m) }}
}

// ofCandidate declares a key of one Candidate of the Migration.
func ofCandidate(name string, key func(m, c string) string) scriptKey {
	return scriptKey{name: name, key: key, perCandidate: true}
}

// scriptKeys declares the KEYS of a script, in order: KEYS[i] is the i-th.
type scriptKeys []scriptKey

// lua binds each key to its local: the first lines of the script.
func (ks scriptKeys) lua() string {
	var b strings.Builder
	for i, k := range ks {
		fmt.Fprintf(&b, "local %s = KEYS[%d]\n", k.name, i+1)
	}
	return b.String()
}

// build is the KEYS slice for Migration m and Candidate c ("" when no key
// is of one Candidate).
func (ks scriptKeys) build(m, c string) ([]string, error) {
	out := make([]string, len(ks))
	for i, k := range ks {
		if k.perCandidate && c == "" {
			return nil, fmt.Errorf("script key %s needs a candidate id", k.name)
		}
		out[i] = k.key(m, c)
	}
	return out, nil
}

// keyedScript is a Lua script whose KEYS are declared by a scriptKeys.
type keyedScript struct {
	keys   scriptKeys
	src    string // the script's text after the lines of keys.lua()
	script *redis.Script
}

// newKeyedScript is the script keys.lua() + src.
func newKeyedScript(keys scriptKeys, src string) *keyedScript {
	return &keyedScript{keys: keys, src: src, script: redis.NewScript(keys.lua() + src)}
}

// run runs the script (EVALSHA, falling back to EVAL) with the KEYS of
// Migration m and Candidate c.
func (k *keyedScript) run(ctx context.Context, rdb redis.Scripter, m, c string, args ...any) *redis.Cmd {
	keys, err := k.keys.build(m, c)
	if err != nil {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd
	}
	return k.script.Run(ctx, rdb, keys, args...)
}
