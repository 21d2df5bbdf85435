package store

import (
	"encoding/json"
	"math/rand/v2"
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

func TestCandidateDefIsWhatEncodingJSONWrites(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20_000 {
		rec := candidateRecord{V: recordVersion}
		if r.IntN(4) == 0 {
			rec.Kind = randomText(r)
		}
		if n := r.IntN(5); n > 0 || r.IntN(2) == 0 {
			rec.Metadata = map[string]string{}
			for range n {
				rec.Metadata[randomText(r)] = randomText(r)
			}
		}
		for range r.IntN(3) {
			g := fileGroupRecord{Name: randomText(r)}
			for range r.IntN(3) {
				g.Files = append(g.Files, fileRefRecord{Path: randomText(r), URL: randomText(r)})
			}
			rec.Files = append(rec.Files, g)
		}
		if r.IntN(20) == 0 {
			rec.Steps = []stepRecord{{Name: "bump", Config: map[string]string{randomText(r): randomText(r)}}}
		}
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

func BenchmarkCandidateDef(b *testing.B) {
	c := benchCandidate(7, "0")
	for b.Loop() {
		if _, err := encodeCandidateDef(c); err != nil {
			b.Fatal(err)
		}
	}
}
