package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// Keys. Each script is passed, as KEYS, every key it touches that the
// caller can name: the fixed keys of the Migration, the keys of the
// Candidate it is about, the index keys of statuses it is given, and, for a
// script about several Candidates (a submission, events), one key per
// Candidate in a block (ofEachCandidate below). Where a script must reach
// keys named by data it reads (the stored status or kind of a Candidate, the
// ids of an index page, everything a delete drops), the caller cannot name
// them ahead, so the script is given the key prefix of those keys (see
// keys.go, "...Prefix" functions) and appends the variable part; each such
// script says in its doc why. Every prefix carries the Migration's hash
// tag, so every key a script builds is in the slot of its declared keys:
// the scripts run unchanged on Redis Cluster, which runs a script on the
// node that owns its declared keys' slot, where every key built this way
// lives too. No script builds a key from anything but such a prefix; the
// strings it appends to other names are Pub/Sub channels, which have no
// slot. (Redis does not check this for a script without a shebang line, as
// these are: it may reach any key of its node, so a key of another slot
// would fail only when that slot lives on another node, which the one-node
// cluster test cannot show. keys_test.go and script_test.go check instead
// that the keys and prefixes the scripts are given carry the tag.)
//
// A script with a long or shared KEYS list, and every script that records
// events, declares its KEYS as a scriptKeys: one list that both builds the
// KEYS slice the caller passes and binds each key to a named Lua local at
// the top of the script ("local k_migration = KEYS[1]"; a block is a table
// by Candidate id, "k_candidate[id]"), so the two cannot drift apart
// (script_test.go checks that such a script reads KEYS by name only, and
// every key it declares). A local ending in _prefix is a prefix as above.
// The other scripts, a few keys each, some with keys that vary per call
// (the index a filter pages through), read KEYS by position, listed in
// their doc comments.
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
	replyBeingDeleted      = 8
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
	each         bool // one key per Candidate of the call's list (ofEachCandidate)
}

// ofMigration declares a key of the Migration alone.
func ofMigration(name string, key func(m string) string) scriptKey {
	return scriptKey{name: name, key: func(m, _ string) string { return key(m) }}
}

// ofCandidate declares a key of one Candidate of the Migration.
func ofCandidate(name string, key func(m, c string) string) scriptKey {
	return scriptKey{name: name, key: key, perCandidate: true}
}

// ofEachCandidate declares a block of KEYS: one key per Candidate of the
// list the caller passes (keyedScript.run's each), in the list's order. The
// script reads the block as a Lua table by Candidate id
// (k_candidate[id]). The blocks follow the keys declared one by one, in
// their order, whatever their place in the scriptKeys, and the caller's
// list ends ARGV (run appends it), so the script knows each key's
// Candidate: the i-th key of each block is the key of the i-th of those
// ids.
func ofEachCandidate(name string, key func(m, c string) string) scriptKey {
	return scriptKey{name: name, key: key, each: true}
}

// scriptKeys declares the KEYS of a script, in order: KEYS[i] is the i-th
// key declared one by one, then come the blocks (ofEachCandidate).
type scriptKeys []scriptKey

// ordered is ks with the keys declared one by one first, then the blocks:
// the order of KEYS when the list of Candidates has one.
func (ks scriptKeys) ordered() scriptKeys {
	out := make(scriptKeys, 0, len(ks))
	for _, k := range ks {
		if !k.each {
			out = append(out, k)
		}
	}
	for _, k := range ks {
		if k.each {
			out = append(out, k)
		}
	}
	return out
}

// lua binds each key to its local: the first lines of the script. When
// there are blocks it binds two more: each_n, the number of Candidates in
// the caller's list, and argv_n, the number of ARGV before their ids.
func (ks scriptKeys) lua() string {
	var b strings.Builder
	var blocks []string
	for i, k := range ks.ordered() {
		if k.each {
			blocks = append(blocks, k.name)
			continue
		}
		fmt.Fprintf(&b, "local %s = KEYS[%d]\n", k.name, i+1)
	}
	if len(blocks) == 0 {
		return b.String()
	}
	fixed := len(ks) - len(blocks)
	fmt.Fprintf(&b, "local each_n = (#KEYS - %d) / %d\n", fixed, len(blocks))
	b.WriteString("local argv_n = #ARGV - each_n\n")
	for j, name := range blocks {
		fmt.Fprintf(&b, "local %s = {}\n", name)
		fmt.Fprintf(&b, "for i = 1, each_n do %s[ARGV[argv_n + i]] = KEYS[%d + %d * each_n + i] end\n", name, fixed, j)
	}
	return b.String()
}

// build is the KEYS slice for Migration m, Candidate c ("" when no key is
// of one Candidate) and the Candidates each of the blocks.
func (ks scriptKeys) build(m, c string, each []string) ([]string, error) {
	out := make([]string, 0, len(ks)+len(each))
	blocks := false
	for _, k := range ks.ordered() {
		switch {
		case k.each:
			blocks = true
			for _, id := range each {
				out = append(out, k.key(m, id))
			}
		case k.perCandidate && c == "":
			return nil, fmt.Errorf("script key %s needs a candidate id", k.name)
		default:
			out = append(out, k.key(m, c))
		}
	}
	if len(each) > 0 && !blocks {
		return nil, errors.New("a list of candidates for a script that declares no block of keys")
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
// Migration m, Candidate c and, for the blocks, each Candidate of each,
// whose ids it appends to args.
func (k *keyedScript) run(ctx context.Context, rdb redis.Scripter, m, c string, each []string, args ...any) *redis.Cmd {
	keys, err := k.keys.build(m, c, each)
	if err != nil {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd
	}
	if slices.ContainsFunc(k.keys, func(k scriptKey) bool { return k.each }) {
		for _, id := range each {
			args = append(args, id)
		}
	}
	return k.script.Run(ctx, rdb, keys, args...)
}

// candidateList is ids without repeats and empty ids, in first-seen order:
// the list of Candidates of a script's blocks.
func candidateList(ids ...string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}
