package store

import (
	"strconv"
	"strings"
	"testing"
)

// hashTag is the part of key Redis Cluster hashes: the text between the
// first '{' and the next '}', when not empty; else the whole key.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return key
	}
	return key[i+1 : i+1+j]
}

func TestKeysOfAMigrationShareItsHashTag(t *testing.T) {
	const m, c = "helm-upgrade", "acme/payments.v1_x-y"
	keys := map[string]string{
		"migration":       migrationKey(m),
		"candidate":       candidateKey(m, c),
		"status×kind":     statusKindIndexKey(m, "running", "service"),
		"kinds":           kindsKey(m),
		"candidate pfx":   candidateKeyPrefix(m),
		"status×kind pfx": statusKindIndexPrefix(m),
		"step order":      stepOrderKey(m),
		"change order":    changeIndexKey(m),
		"step name index": currentStepIndexKey(m, "bump"),
		"step name pfx":   currentStepIndexPrefix(m),
		"step names":      stepNamesKey(m),
		"metadata index":  metadataIndexKey(m),
		"list scratch":    listTempKey(m),
	}
	for name, k := range keys {
		if !strings.HasPrefix(k, "loom:") {
			t.Errorf("%s key %q lacks the loom: prefix", name, k)
		}
		if got := hashTag(k); got != m {
			t.Errorf("%s key %q hashes on %q, want %q", name, k, got, m)
		}
	}
	if hashTag(migrationsKey()) == m {
		t.Errorf("the global index must not be tied to one migration")
	}
}

// The scripts build keys from prefixes: the prefixes must agree with the
// key functions.
func TestPrefixesMatchKeyFunctions(t *testing.T) {
	const m = "mig-1"
	for _, tc := range []struct{ key, fromPrefix string }{
		{candidateKey(m, "org/repo"), candidateKeyPrefix(m) + "org/repo"},
		{statusKindIndexKey(m, "completed", "topic"), statusKindIndexPrefix(m) + "completed" + ":" + "topic"},
		{currentStepIndexKey(m, "bump-go"), currentStepIndexPrefix(m) + "bump-go"},
	} {
		if tc.key != tc.fromPrefix {
			t.Errorf("key %q, built from prefix %q", tc.key, tc.fromPrefix)
		}
	}
}

func TestKeysAreDistinct(t *testing.T) {
	const m = "m"
	// Candidate ids that look like other keys' suffixes must not collide.
	seen := map[string]string{}
	for name, k := range map[string]string{
		"migration":        migrationKey(m),
		"kinds":            kindsKey(m),
		"candidate cands":  candidateKey(m, "cands"),
		"candidate kinds":  candidateKey(m, "kinds"),
		"candidate migr":   candidateKey(m, "migration"),
		"sk running:a":     statusKindIndexKey(m, "running", "a"),
		"candidate x":      candidateKey(m, "x"),
		"candidate c:x":    candidateKey(m, "c:x"),
		"step order":       stepOrderKey(m),
		"change order":     changeIndexKey(m),
		"step names":       stepNamesKey(m),
		"list scratch":     listTempKey(m),
		"step by":          currentStepIndexKey(m, "by"),
		"step status":      currentStepIndexKey(m, "status"),
		"metadata":         metadataIndexKey(m),
		"candidate snames": candidateKey(m, "snames"),
		"candidate metas":  candidateKey(m, "metas"),
	} {
		if other, ok := seen[k]; ok {
			t.Errorf("%s and %s are both %q", name, other, k)
		}
		seen[k] = name
	}
}

// A metadata pair's members of the metadata index are a range of their own:
// no member of another pair, whatever the key and value hold, and whatever
// the id, starts with the same bytes.
func TestMetadataRangesAreDisjoint(t *testing.T) {
	pairs := [][2]string{{"a", "b"}, {"a", "b\x00"}, {"a", "bc"}, {"a", "b1:a=b"}, {"ab", ""}, {"a", ""}, {"", "a"}, {"1", "0:"}}
	ids := []string{"x", "1:a=b", "b", "\xff", "0"}
	for _, p := range pairs {
		pre := metadataRangePrefix(metadataPair(p[0], p[1]))
		for _, q := range pairs {
			if q == p {
				continue
			}
			for _, id := range ids {
				if mb := metadataMember(metadataPair(q[0], q[1]), id); strings.HasPrefix(mb, pre) {
					t.Errorf("%q's member for %q is in %q's range", q, id, p)
				}
			}
		}
	}
}

// Metadata pairs are named unambiguously, whatever the key and the value
// hold.
func TestMetadataPairIsUnambiguous(t *testing.T) {
	seen := map[string][2]string{}
	for _, kv := range [][2]string{{"a", "b=c"}, {"a=b", "c"}, {"a", "=b=c"}, {"1:a", "b"}, {"1", ":a=b"}, {"", "1:a=b"}, {"a:b", ""}} {
		p := metadataPair(kv[0], kv[1])
		if other, ok := seen[p]; ok {
			t.Errorf("%q and %q are both %q", kv, other, p)
		}
		seen[p] = kv
	}
}

func TestTheFleetChannelsCutNamesTheMigration(t *testing.T) {
	// string.sub(key, tagStart, -eventsSuffix) in Lua, 1-based, inclusive.
	key := eventsKey("go-upgrade")
	from, _ := strconv.Atoi(tagStart)
	back, _ := strconv.Atoi(eventsSuffix)
	if got := key[from-1 : len(key)-back+1]; got != "go-upgrade" {
		t.Fatalf("the fleet channel would name %q", got)
	}
}
