package store

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
)

// defjson.go writes a Candidate's def, the canonical JSON a discovery is
// compared by, without reflection: byte for byte what encoding/json writes
// for the same candidateRecord (defjson_test.go checks it on random
// records), since any other byte would make every stored Candidate differ
// from its next discovery. A discovery encodes one per Candidate.

// appendCandidateDef appends json.Marshal(r) to b. Records with steps of
// their own (rare) go through encoding/json.
func appendCandidateDef(b []byte, r candidateRecord) ([]byte, error) {
	if len(r.Steps) > 0 {
		out, err := json.Marshal(r)
		return append(b, out...), err
	}
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(r.V), 10)
	if r.Kind != "" {
		b = append(b, `,"kind":`...)
		b = appendJSONString(b, r.Kind)
	}
	if len(r.Metadata) > 0 {
		b = append(b, `,"metadata":{`...)
		for i, k := range slices.Sorted(maps.Keys(r.Metadata)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, r.Metadata[k])
		}
		b = append(b, '}')
	}
	if len(r.Files) > 0 {
		b = append(b, `,"files":[`...)
		for i, g := range r.Files {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = appendJSONString(b, g.Name)
			if len(g.Files) > 0 {
				b = append(b, `,"files":[`...)
				for j, f := range g.Files {
					if j > 0 {
						b = append(b, ',')
					}
					b = append(b, `{"path":`...)
					b = appendJSONString(b, f.Path)
					if f.URL != "" {
						b = append(b, `,"url":`...)
						b = appendJSONString(b, f.URL)
					}
					b = append(b, '}')
				}
				b = append(b, ']')
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as encoding/json writes it. Strings of
// printable ASCII that encoding/json leaves as they are (no quote,
// backslash or HTML-escaped <, > and &) are copied; any other goes through
// encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			out, _ := json.Marshal(s) // a string always encodes
			return append(b, out...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
