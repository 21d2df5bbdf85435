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

// parseCandidateDef reads a def as appendCandidateDef writes it for the
// common Candidate: version, kind, metadata and files, every string of
// printable ASCII with nothing escaped. It reports false for anything else
// (steps, an escape, another order), which encoding/json then reads. A page
// of Candidates decodes one def per row: read here, a def costs a fraction
// of what encoding/json's reflection does (twice, with the version check).
func parseCandidateDef(raw string) (candidateRecord, bool) {
	var r candidateRecord
	p := defParser{s: raw}
	if !p.lit(`{"v":`) {
		return r, false
	}
	v, ok := p.int()
	if !ok {
		return r, false
	}
	r.V = v
	if p.lit(`,"kind":`) {
		if r.Kind, ok = p.str(); !ok {
			return r, false
		}
	}
	if p.lit(`,"metadata":{`) {
		r.Metadata = map[string]string{}
		for first := true; !p.lit("}"); first = false {
			if !first && !p.lit(",") {
				return r, false
			}
			k, ok := p.str()
			if !ok || !p.lit(":") {
				return r, false
			}
			if r.Metadata[k], ok = p.str(); !ok {
				return r, false
			}
		}
	}
	if p.lit(`,"files":[`) {
		r.Files = []fileGroupRecord{}
		for first := true; !p.lit("]"); first = false {
			if !first && !p.lit(",") {
				return r, false
			}
			var g fileGroupRecord
			if !p.lit(`{"name":`) {
				return r, false
			}
			if g.Name, ok = p.str(); !ok {
				return r, false
			}
			if p.lit(`,"files":[`) {
				g.Files = []fileRefRecord{}
				for first := true; !p.lit("]"); first = false {
					if !first && !p.lit(",") {
						return r, false
					}
					var f fileRefRecord
					if !p.lit(`{"path":`) {
						return r, false
					}
					if f.Path, ok = p.str(); !ok {
						return r, false
					}
					if p.lit(`,"url":`) {
						if f.URL, ok = p.str(); !ok {
							return r, false
						}
					}
					if !p.lit("}") {
						return r, false
					}
					g.Files = append(g.Files, f)
				}
			}
			if !p.lit("}") {
				return r, false
			}
			r.Files = append(r.Files, g)
		}
	}
	return r, p.lit("}") && p.i == len(p.s)
}

// defParser reads parseCandidateDef's input from i on.
type defParser struct {
	s string
	i int
}

func (p *defParser) lit(l string) bool {
	if len(p.s)-p.i >= len(l) && p.s[p.i:p.i+len(l)] == l {
		p.i += len(l)
		return true
	}
	return false
}

func (p *defParser) int() (int, bool) {
	j := p.i
	for j < len(p.s) && j-p.i < 9 && p.s[j] >= '0' && p.s[j] <= '9' {
		j++
	}
	if j == p.i {
		return 0, false
	}
	n, err := strconv.Atoi(p.s[p.i:j])
	p.i = j
	return n, err == nil
}

// str reads a quoted string of printable ASCII with no escape: what
// appendJSONString copies as it is.
func (p *defParser) str() (string, bool) {
	if !p.lit(`"`) {
		return "", false
	}
	for j := p.i; j < len(p.s); j++ {
		switch c := p.s[j]; {
		case c == '"':
			out := p.s[p.i:j]
			p.i = j + 1
			return out, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", false
		}
	}
	return "", false
}
