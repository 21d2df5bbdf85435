package store

import (
	"errors"
	"fmt"
	"strconv"
)

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
// this way lives too.
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
