package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// keyedScripts are the scripts whose KEYS are declared by a scriptKeys,
// grouped by the scripts that share one list.
var keyedScripts = map[string][]*keyedScript{
	"put migration":           {putMigrationScript},
	"delete migration":        {deleteMigrationScript},
	"sweep deleted":           {sweepDeletedScript},
	"submit":                  {submitScript},
	"update inputs":           {updateInputsScript},
	"run views":               {beginRunScript, saveRunScript},
	"append events":           {appendEventsScript},
	"record dispatch failure": {recordDispatchFailureScript},
	"create rollout":          {createRolloutScript},
	"save rollout":            {saveRolloutScript},
	"upgrade layout":          {upgradeLayoutScript},
}

// Every script made with newKeyedScript or newHistoryScript is in
// keyedScripts, so that the tests below see it.
func TestKeyedScriptsAreAllListed(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	made := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		made += len(regexp.MustCompile(`= new(Keyed|History)Script\(`).FindAll(b, -1))
	}
	listed := 0
	for _, g := range keyedScripts {
		listed += len(g)
	}
	if made != listed {
		t.Fatalf("%d keyed scripts are made, %d listed in keyedScripts", made, listed)
	}
}

// A keyed script reads its KEYS by name only, and every key it declares is
// read by one of the scripts that share the list: caller and script cannot
// disagree on a position, and no key is passed for nothing.
func TestKeyedScriptsReadTheirKeysByName(t *testing.T) {
	for name, group := range keyedScripts {
		var src strings.Builder
		for _, k := range group {
			if !slices.EqualFunc(k.keys, group[0].keys, func(a, b scriptKey) bool { return a.name == b.name }) {
				t.Errorf("%s: the scripts of one group declare different KEYS", name)
			}
			if strings.Contains(k.src, "KEYS[") {
				t.Errorf("%s: reads KEYS by position", name)
			}
			src.WriteString(k.src)
		}
		seen := map[string]bool{}
		for _, key := range group[0].keys {
			if seen[key.name] {
				t.Errorf("%s: %s declared twice", name, key.name)
			}
			seen[key.name] = true
			if !regexp.MustCompile(`\b` + key.name + `\b`).MatchString(src.String()) {
				t.Errorf("%s: declares %s and never reads it", name, key.name)
			}
		}
	}
}

// Every key a keyed script declares is in the Migration's slot (so is every
// key built from a _prefix one), and one local name means one key in every
// script.
func TestScriptKeysShareTheMigrationSlot(t *testing.T) {
	const m, c = "helm-upgrade", "acme/payments"
	byName := map[string]string{}
	for name, group := range keyedScripts {
		keys, err := group[0].keys.build(m, c, blockOf(group[0].keys, c))
		if err != nil {
			t.Fatal(err)
		}
		for i, key := range group[0].keys.ordered() {
			if got := hashTag(keys[i]); got != m {
				t.Errorf("%s: %s = %q hashes on %q", name, key.name, keys[i], got)
			}
			if strings.HasSuffix(key.name, "_prefix") != strings.HasSuffix(keys[i], ":") {
				t.Errorf("%s: %s = %q: only the names of prefixes end in _prefix", name, key.name, keys[i])
			}
			if other, ok := byName[key.name]; ok && other != keys[i] {
				t.Errorf("%s: %s is %q here and %q elsewhere", name, key.name, keys[i], other)
			}
			byName[key.name] = keys[i]
		}
	}
}

func TestScriptKeysOfACandidateNeedItsID(t *testing.T) {
	if _, err := updateInputsScript.keys.build("m", "", nil); err == nil {
		t.Fatal("built the KEYS of a Candidate's script without its id")
	}
	if _, err := submitScript.keys.build("m", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := keysOfABlockNotDeclared(); err == nil {
		t.Fatal("built a block of KEYS for a script that declares none")
	}
}

func keysOfABlockNotDeclared() ([]string, error) {
	return scriptKeys{ofMigration("k_migration", migrationKey)}.build("m", "", []string{"c"})
}

// A block of KEYS (ofEachCandidate) has one key per Candidate of the
// caller's list, in its order, after the keys declared one by one; the
// script reads it as a table by Candidate id, and its own ARGV are intact.
// Every script that records events declares the Candidate streams as a
// block, and no keyed script builds a Candidate's hash or stream from a
// prefix.
func TestScriptKeyBlocksBindByCandidate(t *testing.T) {
	t.Parallel()
	_, rdb := newStore(t)
	ctx := context.Background()
	const m = "mig-1"
	ids := []string{"org/a", "org/b", "org/c"}
	ks := scriptKeys{
		ofEachCandidate("k_first", candidateKey),
		ofMigration("k_migration", migrationKey),
		ofEachCandidate("k_second", candidateEventsKey),
	}
	probe := newKeyedScript(ks, `
local out = {k_migration, tostring(argv_n), tostring(each_n), ARGV[1], ARGV[2]}
for i = 1, each_n do
  local id = ARGV[argv_n + i]
  out[#out + 1] = k_first[id]
  out[#out + 1] = k_second[id]
end
return out`)
	got, err := probe.run(ctx, rdb, m, "", ids, "own 1", "own 2").StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{migrationKey(m), "2", "3", "own 1", "own 2"}
	for _, id := range ids {
		want = append(want, candidateKey(m, id), candidateEventsKey(m, id))
	}
	if !slices.Equal(got, want) {
		t.Errorf("the blocks bind\n%q\nwant\n%q", got, want)
	}

	for name, group := range keyedScripts {
		records := slices.ContainsFunc(group[0].keys, func(k scriptKey) bool { return k.name == "k_events" })
		if records && !slices.ContainsFunc(group[0].keys, func(k scriptKey) bool { return k.name == "k_candidate_events" && k.each }) {
			t.Errorf("%s: the Candidate streams are not a block", name)
		}
		// The sweep of a deleted Migration and the upgrade of a layout read
		// which Candidates it has.
		for _, k := range group[0].keys {
			if k.name == "k_candidate_prefix" && name != "sweep deleted" && name != "upgrade layout" {
				t.Errorf("%s: builds a Candidate's hash from a prefix", name)
			}
			if k.name == "k_candidate_events_prefix" && name != "sweep deleted" {
				t.Errorf("%s: builds a Candidate's stream from a prefix", name)
			}
		}
	}
}

// What Redis runs binds each local to the key the caller put at its place,
// and the history ARGV to the values withHistoryArgs appends.
func TestScriptKeysBindInOrder(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := context.Background()
	const m, c = "mig-1", "org/c"
	for name, group := range keyedScripts {
		ks := group[0].keys
		names := make([]string, len(ks))
		for i, k := range ks.ordered() {
			names[i] = k.name
			if k.each {
				names[i] += "['" + c + "']"
			}
		}
		probe := newKeyedScript(ks, "return {"+strings.Join(names, ", ")+"}")
		got, err := probe.run(ctx, rdb, m, c, blockOf(ks, c)).StringSlice()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, _ := ks.build(m, c, blockOf(ks, c))
		if !slices.Equal(got, want) {
			t.Errorf("%s: the script binds\n%q\nthe caller passes\n%q", name, got, want)
		}
	}

	argv := s.historyArgv("alice", at(5))
	names := make([]string, len(argv))
	want := []string{"alice"}
	for i, a := range argv {
		names[i] = a.name
		if i > 0 {
			want = append(want, fmt.Sprint(a.value))
		}
	}
	probe := newHistoryScript(nil, "return {"+strings.Join(names, ", ")+", tostring(own_argc)}")
	got, err := probe.run(ctx, rdb, m, "", []string{c}, s.historyArgsAs("alice", at(5), "own 1", "own 2")...).StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	if want = append(want, "2"); !slices.Equal(got, want) {
		t.Errorf("the history ARGV bind as %q, want %q", got, want)
	}
}

// blockOf is the Candidate list to build ks with: c, when ks declares a
// block of keys per Candidate.
func blockOf(ks scriptKeys, c string) []string {
	if slices.ContainsFunc(ks, func(k scriptKey) bool { return k.each }) {
		return []string{c}
	}
	return nil
}
