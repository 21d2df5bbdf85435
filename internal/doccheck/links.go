package doccheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

// mdLink is a Markdown inline link or image: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// mdHeading is an ATX heading line.
var mdHeading = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *#*$`)

// Links checks the relative links of the Markdown file (relative to root):
// the file or directory each names exists, and a #fragment names a heading
// of the Markdown file it points into (GitHub's anchors). Links to other
// sites are not followed. Links inside fenced code blocks are not links.
func Links(root, file string) []Problem {
	src, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return []Problem{{File: file, Msg: err.Error()}}
	}
	var problems []Problem
	for i, line := range proseLines(src) {
		for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, fragment, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), path)
			}
			if _, err := os.Stat(filepath.Join(root, dest)); err != nil {
				problems = append(problems, Problem{File: file, Line: i + 1, Msg: fmt.Sprintf("link %s: %s does not exist", target, dest)})
				continue
			}
			if fragment == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			anchors, err := Anchors(filepath.Join(root, dest))
			if err != nil {
				problems = append(problems, Problem{File: file, Line: i + 1, Msg: err.Error()})
			} else if !anchors[fragment] {
				problems = append(problems, Problem{File: file, Line: i + 1, Msg: fmt.Sprintf("link %s: %s has no heading #%s", target, dest, fragment)})
			}
		}
	}
	return problems
}

// Anchors are the GitHub anchors of a Markdown file's headings (outside
// fenced code).
func Anchors(path string) (map[string]bool, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	seen := map[string]int{}
	for _, line := range proseLines(src) {
		if m := mdHeading.FindStringSubmatch(line); m != nil {
			a := Anchor(m[1])
			if n := seen[a]; n > 0 {
				out[fmt.Sprintf("%s-%d", a, n)] = true
			} else {
				out[a] = true
			}
			seen[a]++
		}
	}
	return out, nil
}

// Anchor is GitHub's anchor of a heading: lower case, Markdown marks and
// punctuation dropped, spaces as hyphens.
func Anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Sections splits a Markdown file into its sections of level 3 ("### "):
// each heading's text to the lines under it, up to the next heading of
// level 2 or 3 (outside fenced code).
func Sections(src []byte) map[string]string {
	out := map[string]string{}
	current, inFence := "", false
	for _, line := range strings.Split(string(src), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
		}
		if !inFence {
			if title, ok := strings.CutPrefix(line, "### "); ok {
				current = strings.TrimSpace(title)
				out[current] = ""
				continue
			}
			if strings.HasPrefix(line, "## ") {
				current = ""
				continue
			}
		}
		if current != "" {
			out[current] += line + "\n"
		}
	}
	return out
}

// proseLines are the lines of a Markdown file with those of fenced code
// (and the fences) blanked, so that indexes stay line numbers less one.
func proseLines(src []byte) []string {
	lines := strings.Split(string(src), "\n")
	inFence := false
	for i, line := range lines {
		fence := strings.HasPrefix(strings.TrimSpace(line), "```")
		if fence {
			inFence = !inFence
		}
		if fence || inFence {
			lines[i] = ""
		}
	}
	return lines
}
