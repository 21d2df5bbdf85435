package githubtest

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"
)

// The fake keeps each repository's git objects as git does, content
// addressed with git's own hashing, so that the same tree or commit gets the
// same SHA as on GitHub.

type object struct {
	kind    string // blob, tree or commit
	blob    []byte
	entries []entry // of a tree, in git's order
	commit  *commit
}

type entry struct {
	name, mode, kind, sha string
}

type commit struct {
	tree              string
	parents           []string
	message           string
	author, committer signature
}

type signature struct {
	Name  string    `json:"name"`
	Email string    `json:"email"`
	Date  time.Time `json:"date"`
}

// encode is the object's content as git hashes it.
func (o *object) encode() []byte {
	switch o.kind {
	case "blob":
		return o.blob
	case "tree":
		var b strings.Builder
		for _, e := range o.entries {
			raw, _ := hex.DecodeString(e.sha)
			mode := strings.TrimPrefix(e.mode, "0") // git writes trees as 40000
			b.WriteString(mode + " " + e.name + "\x00" + string(raw))
		}
		return []byte(b.String())
	default:
		c := o.commit
		var b strings.Builder
		fmt.Fprintf(&b, "tree %s\n", c.tree)
		for _, p := range c.parents {
			fmt.Fprintf(&b, "parent %s\n", p)
		}
		fmt.Fprintf(&b, "author %s <%s> %d +0000\n", c.author.Name, c.author.Email, c.author.Date.Unix())
		fmt.Fprintf(&b, "committer %s <%s> %d +0000\n\n%s", c.committer.Name, c.committer.Email, c.committer.Date.Unix(), c.message)
		return []byte(b.String())
	}
}

func (r *repository) put(o *object) string {
	body := o.encode()
	h := sha1.New()
	fmt.Fprintf(h, "%s %d\x00", o.kind, len(body))
	h.Write(body)
	sha := hex.EncodeToString(h.Sum(nil))
	r.objects[sha] = o
	return sha
}

func (r *repository) get(sha, kind string) *object {
	o := r.objects[sha]
	if o == nil || (kind != "" && o.kind != kind) {
		return nil
	}
	return o
}

// sortEntries orders a tree's entries as git does: by name, a tree's name
// compared as if it ended with "/".
func sortEntries(es []entry) {
	key := func(e entry) string {
		if e.kind == "tree" {
			return e.name + "/"
		}
		return e.name
	}
	sort.Slice(es, func(i, j int) bool { return key(es[i]) < key(es[j]) })
}

// flatten lists the leaves (blobs, links, submodules) of a tree by path.
func (r *repository) flatten(tree string) map[string]entry {
	out := map[string]entry{}
	var walk func(sha, prefix string)
	walk = func(sha, prefix string) {
		o := r.get(sha, "tree")
		if o == nil {
			return
		}
		for _, e := range o.entries {
			if e.kind == "tree" {
				walk(e.sha, prefix+e.name+"/")
				continue
			}
			out[prefix+e.name] = entry{name: prefix + e.name, mode: e.mode, kind: e.kind, sha: e.sha}
		}
	}
	walk(tree, "")
	return out
}

// build stores the trees of leaves by path and returns the root's SHA.
func (r *repository) build(leaves map[string]entry) string {
	here := map[string]entry{}
	sub := map[string]map[string]entry{}
	for p, e := range leaves {
		dir, rest, nested := strings.Cut(p, "/")
		if !nested {
			here[p] = entry{name: p, mode: e.mode, kind: e.kind, sha: e.sha}
			continue
		}
		if sub[dir] == nil {
			sub[dir] = map[string]entry{}
		}
		sub[dir][rest] = e
	}
	var es []entry
	for _, e := range here {
		es = append(es, e)
	}
	for dir, m := range sub {
		if _, clash := here[dir]; clash {
			continue // a file replaced the directory
		}
		es = append(es, entry{name: dir, mode: "040000", kind: "tree", sha: r.build(m)})
	}
	sortEntries(es)
	return r.put(&object{kind: "tree", entries: es})
}

// ancestors lists a commit and every commit it descends from.
func (r *repository) ancestors(sha string) map[string]bool {
	seen := map[string]bool{}
	todo := []string{sha}
	for len(todo) > 0 {
		s := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[s] {
			continue
		}
		seen[s] = true
		if o := r.get(s, "commit"); o != nil {
			todo = append(todo, o.commit.parents...)
		}
	}
	return seen
}

// mergeBase is a best common ancestor of a and b ("" when none).
func (r *repository) mergeBase(a, b string) string {
	inA := r.ancestors(a)
	// Walk b's history breadth-first: the first commit also in a's is a
	// nearest common ancestor.
	seen := map[string]bool{}
	queue := []string{b}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if seen[s] {
			continue
		}
		seen[s] = true
		if inA[s] {
			return s
		}
		if o := r.get(s, "commit"); o != nil {
			queue = append(queue, o.commit.parents...)
		}
	}
	return ""
}

// mergeTrees merges head into base, file by file from their merge base:
// the tree, or an error naming a file both changed differently.
func (r *repository) mergeTrees(base, head string) (string, error) {
	mb := r.mergeBase(base, head)
	if mb == "" {
		return "", fmt.Errorf("no common history")
	}
	treeOf := func(c string) map[string]entry { return r.flatten(r.get(c, "commit").commit.tree) }
	o, b, h := treeOf(mb), treeOf(base), treeOf(head)
	out := map[string]entry{}
	paths := map[string]bool{}
	for _, m := range []map[string]entry{o, b, h} {
		for p := range m {
			paths[p] = true
		}
	}
	for p := range paths {
		eo, inO := o[p]
		eb, inB := b[p]
		eh, inH := h[p]
		same := func(x entry, inX bool, y entry, inY bool) bool {
			return inX == inY && (!inX || (x.sha == y.sha && x.mode == y.mode))
		}
		var pick entry
		var keep bool
		switch {
		case same(eh, inH, eo, inO): // head left it: base's
			pick, keep = eb, inB
		case same(eb, inB, eo, inO), same(eb, inB, eh, inH): // base left it, or both agree: head's
			pick, keep = eh, inH
		default:
			return "", fmt.Errorf("merge conflict in %s", p)
		}
		if keep {
			out[p] = pick
		}
	}
	return r.build(out), nil
}
