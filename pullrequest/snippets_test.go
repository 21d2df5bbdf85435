package pullrequest_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The code a Migrator author reads (the Go blocks of the README and docs/, the code in the
// go doc of migratorsdk and pullrequest) is code that compiles and runs:
// each snippet appears, line for line (indentation aside), in a test or an
// example of those modules.
func TestEverySnippetIsTestedCode(t *testing.T) {
	var tested []string
	for _, root := range []string{"../migratorsdk", "."} {
		_ = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() && strings.HasSuffix(p, "_test.go") && !strings.HasSuffix(p, "snippets_test.go") {
				b, _ := os.ReadFile(p)
				tested = append(tested, normalize(string(b)))
			}
			return err
		})
	}
	var snippets []snippet
	docs, _ := filepath.Glob("../docs/*.md")
	for _, md := range append([]string{"../README.md"}, docs...) {
		snippets = append(snippets, fenced(t, md)...)
	}
	for _, root := range []string{"../migratorsdk", "."} {
		_ = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
				snippets = append(snippets, docCode(t, p)...)
			}
			return err
		})
	}
	if len(snippets) < 3 {
		t.Fatalf("found %d snippets: the extraction is broken", len(snippets))
	}
	for _, s := range snippets {
		if httpRoutes.MatchString(s.code) {
			continue // a list of REST routes, not Go
		}
		found := false
		for _, src := range tested {
			found = found || strings.Contains(src, normalize(s.code))
		}
		if !found {
			t.Errorf("%s: this snippet is not in any test or example; make it one:\n%s", s.where, s.code)
		}
	}
}

var httpRoutes = regexp.MustCompile(`^(GET|POST|PUT|PATCH|DELETE) +/`)

type snippet struct{ where, code string }

// fenced returns the ```go blocks of a Markdown file.
func fenced(t *testing.T, path string) []snippet {
	var out []snippet
	var cur []string
	in, start := false, 0
	each(t, path, func(n int, line string) {
		switch {
		case !in && strings.TrimSpace(line) == "```go":
			in, start, cur = true, n, nil
		case in && strings.TrimSpace(line) == "```":
			in = false
			out = append(out, snippet{path + ":" + itoa(start), strings.Join(cur, "\n")})
		case in:
			cur = append(cur, line)
		}
	})
	return out
}

// docCode returns the code blocks of a Go file's comments: runs of lines
// "//\t...", blank comment lines inside them included.
func docCode(t *testing.T, path string) []snippet {
	var out []snippet
	var cur []string
	start := 0
	flush := func() {
		for len(cur) > 0 && strings.TrimSpace(cur[len(cur)-1]) == "" {
			cur = cur[:len(cur)-1]
		}
		if len(cur) > 0 {
			out = append(out, snippet{path + ":" + itoa(start), strings.Join(cur, "\n")})
		}
		cur = nil
	}
	each(t, path, func(n int, line string) {
		switch {
		case strings.HasPrefix(line, "//\t"):
			if cur == nil {
				start = n
			}
			cur = append(cur, strings.TrimPrefix(line, "//\t"))
		case line == "//" && cur != nil:
			cur = append(cur, "")
		default:
			flush()
		}
	})
	flush()
	return out
}

func each(t *testing.T, path string, f func(n int, line string)) {
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for n := 1; sc.Scan(); n++ {
		f(n, sc.Text())
	}
}

// normalize drops indentation and blank lines, so that a snippet matches
// the code it was taken from at any depth.
func normalize(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return "\n" + strings.Join(out, "\n") + "\n"
}

func itoa(n int) string { return strconv.Itoa(n) }
