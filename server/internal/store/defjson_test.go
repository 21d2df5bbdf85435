package store

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
)

// randomText draws strings from pieces encoding/json treats each its own
// way: printable ASCII, quotes and backslashes, HTML's <, > and &, control
// bytes, U+2028, other UTF-8, and invalid UTF-8.
func randomText(r *rand.Rand) string {
	pieces := []string{"", "a", "team-03", "git@example.com:org/x.git", " ", "~", "\"", "\\", "<", ">", "&", "\x00", "\x01", "\b",
		"\f", "\n", "\r", "\t", "\x1f", "\x7f", "é", "日本", "\u2028", "\u2029", "\xff", "\xc3", "💥", "{x}", "1:a=b", "/"}
	var b []byte
	for range r.IntN(6) {
		b = append(b, pieces[r.IntN(len(pieces))]...)
	}
	return string(b)
}

// randomRecord is a def with every optional part drawn at random, its
// strings from text: sometimes a kind, metadata (sometimes an empty map),
// file groups, a step of its own.
func randomRecord(r *rand.Rand, text func(*rand.Rand) string) candidateRecord {
	rec := candidateRecord{V: recordVersion}
	if r.IntN(4) == 0 {
		rec.Kind = text(r)
	}
	if n := r.IntN(5); n > 0 || r.IntN(2) == 0 {
		rec.Metadata = map[string]string{}
		for range n {
			rec.Metadata[text(r)] = text(r)
		}
	}
	for range r.IntN(3) {
		g := fileGroupRecord{Name: text(r)}
		for range r.IntN(3) {
			g.Files = append(g.Files, fileRefRecord{Path: text(r), URL: text(r)})
		}
		rec.Files = append(rec.Files, g)
	}
	if r.IntN(20) == 0 {
		rec.Steps = []stepRecord{{Name: "bump", Config: map[string]string{text(r): text(r)}}}
	}
	return rec
}

func TestCandidateDefIsWhatEncodingJSONWrites(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20_000 {
		rec := randomRecord(r, randomText)
		want, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendCandidateDef(nil, rec)
		if err != nil || string(got) != string(want) {
			t.Fatalf("record %d %#v:\n got %q (%v)\nwant %q", i, rec, got, err, want)
		}
	}
}

// What parseCandidateDef reads, it reads as encoding/json does; what it
// declines, encoding/json reads.
func TestParseCandidateDefReadsWhatEncodingJSONReads(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	fast := 0
	for i := range 20_000 {
		text := randomText
		if r.IntN(2) == 0 {
			// Mostly plain: the common Candidate, which the fast path reads.
			text = func(r *rand.Rand) string {
				return []string{"", "a", "team-03", "git@example.com:org/x.git", "~ /{x}"}[r.IntN(5)]
			}
		}
		rec := randomRecord(r, text)
		def, err := appendCandidateDef(nil, rec)
		if err != nil {
			t.Fatal(err)
		}
		var want candidateRecord
		if err := json.Unmarshal(def, &want); err != nil {
			t.Fatal(err)
		}
		got, ok := parseCandidateDef(string(def))
		if !ok {
			continue
		}
		fast++
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("def %d %s:\n got %#v\nwant %#v", i, def, got, want)
		}
	}
	if fast < 5_000 {
		t.Fatalf("the fast path read %d of 20,000 defs: too few", fast)
	}
	// Anything else is declined, never misread.
	for _, def := range []string{``, `{}`, `{"v":1`, `{"v":1,}`, `{"v":1,"kind":"a\"b"}`, `{"v":1,"metadata":{"a":"b",}}`,
		`{"v":1,"metadata":{"a":"b"}} `, `{"kind":"a","v":1}`, `{"v":1,"files":[{"name":"x"},]}`, `{"v":1,"files":[{"name":"x","files":[{"url":"u"}]}]}`,
		`{"v":1,"steps":[{"name":"bump"}]}`, `{"v":1,"kind":"é"}`,
		`{"v":1,"metadata":{"a":1}}`, `{"v":99999999999}`} {
		if got, ok := parseCandidateDef(def); ok {
			t.Errorf("%q read as %#v", def, got)
		}
	}
}

func BenchmarkParseCandidateDef(b *testing.B) {
	def, err := encodeCandidateDef(benchCandidate(7, "0"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, ok := parseCandidateDef(def); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var r candidateRecord
			if err := unmarshalRecord(def, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkCandidateDef(b *testing.B) {
	c := benchCandidate(7, "0")
	for b.Loop() {
		if _, err := encodeCandidateDef(c); err != nil {
			b.Fatal(err)
		}
	}
}
