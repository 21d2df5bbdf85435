package githubtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const docs = "https://docs.github.com/rest"

// maxContent is the largest file whose content the contents API includes.
const maxContent = 1 << 20

func (s *Server) routes(mux *http.ServeMux) {
	route := func(pattern string, auth bool, h func(w http.ResponseWriter, r *http.Request)) {
		method, p, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" /api/v3"+p, func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			defer s.unlock()
			s.requests[pattern]++
			f, faulty := s.fault(pattern)
			out := w
			if faulty {
				if !f.After {
					f.answer(w)
					return
				}
				// Served with all its effects, but its answer is lost and
				// the fault's sent instead.
				out = discard{header: http.Header{}}
			}
			if !auth || s.authorized(out, r) {
				h(out, r)
			}
			if faulty {
				f.answer(w)
			}
		})
	}
	route("POST /app/installations/{installation_id}/access_tokens", false, s.accessToken)
	route("GET /repos/{owner}/{repo}", true, s.getRepo)
	route("GET /orgs/{org}/repos", true, s.listRepos("org"))
	route("GET /users/{username}/repos", true, s.listRepos("username"))
	route("GET /repos/{owner}/{repo}/contents/{path...}", true, s.getContents)
	route("GET /repos/{owner}/{repo}/git/blobs/{file_sha}", true, s.getBlob)
	route("POST /repos/{owner}/{repo}/git/blobs", true, s.createBlob)
	route("GET /repos/{owner}/{repo}/git/trees/{tree_sha}", true, s.getTree)
	route("POST /repos/{owner}/{repo}/git/trees", true, s.createTree)
	route("GET /repos/{owner}/{repo}/git/commits/{commit_sha}", true, s.getCommit)
	route("POST /repos/{owner}/{repo}/git/commits", true, s.createCommit)
	route("GET /repos/{owner}/{repo}/git/ref/{ref...}", true, s.getRef)
	route("POST /repos/{owner}/{repo}/git/refs", true, s.createRef)
	route("PATCH /repos/{owner}/{repo}/git/refs/{ref...}", true, s.updateRef)
	route("DELETE /repos/{owner}/{repo}/git/refs/{ref...}", true, s.deleteRef)
	route("GET /repos/{owner}/{repo}/pulls", true, s.listPulls)
	route("POST /repos/{owner}/{repo}/pulls", true, s.createPull)
	route("GET /repos/{owner}/{repo}/pulls/{pull_number}", true, s.getPull)
	route("PATCH /repos/{owner}/{repo}/pulls/{pull_number}", true, s.updatePull)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fail(w, http.StatusNotFound, "Not Found") })
}

// --- responses -------------------------------------------------------------

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-GitHub-Api-Version-Selected", "2022-11-28")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fail answers with GitHub's error shape.
func fail(w http.ResponseWriter, status int, message string) {
	reply(w, status, map[string]any{"message": message, "documentation_url": docs, "status": strconv.Itoa(status)})
}

// invalid answers 422 Validation Failed with one error, as GitHub does for
// a request whose fields are wrong.
func invalid(w http.ResponseWriter, e map[string]any) {
	reply(w, http.StatusUnprocessableEntity, map[string]any{"message": "Validation Failed", "errors": []any{e},
		"documentation_url": docs, "status": "422"})
}

// authorized checks the call's token, answering 401 when it is missing or
// not one the Server knows.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := bearer(r)
	if !ok {
		fail(w, http.StatusUnauthorized, "Requires authentication")
		return false
	}
	if tok == s.token {
		return true
	}
	if exp, ok := s.tokens[tok]; ok && now().Before(exp) {
		return true
	}
	fail(w, http.StatusUnauthorized, "Bad credentials")
	return false
}

func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || tok == "" || (!strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "token")) {
		return "", false
	}
	return tok, true
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 100<<20)).Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "Problems parsing JSON")
		return false
	}
	return true
}

func (s *Server) repo(w http.ResponseWriter, r *http.Request) *repository {
	rp := s.repos[r.PathValue("owner")+"/"+r.PathValue("repo")]
	if rp == nil {
		fail(w, http.StatusNotFound, "Not Found")
	}
	return rp
}

func (s *Server) repoAPI(r *repository) string {
	return s.api() + "repos/" + r.owner + "/" + r.name
}

// --- apps -------------------------------------------------------------------

// accessToken trades an App's JWT for an installation access token.
func (s *Server) accessToken(w http.ResponseWriter, r *http.Request) {
	raw, ok := bearer(r)
	if !ok {
		fail(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return
	}
	claims := jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		iss, err := t.Claims.GetIssuer()
		if err != nil {
			return nil, err
		}
		id, err := strconv.ParseInt(iss, 10, 64)
		if err != nil || s.apps[id] == nil {
			return nil, fmt.Errorf("no App %q", iss)
		}
		return s.apps[id], nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuedAt(), jwt.WithExpirationRequired(), jwt.WithLeeway(time.Minute))
	switch {
	case err != nil:
		fail(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return
	case claims.ExpiresAt.After(time.Now().Add(10*time.Minute + time.Minute)):
		fail(w, http.StatusUnauthorized, "'Expiration time' claim ('exp') is too far in the future")
		return
	}
	installation, _ := strconv.ParseInt(r.PathValue("installation_id"), 10, 64)
	if app, ok := s.installations[installation]; !ok || strconv.FormatInt(app, 10) != claims.Issuer {
		fail(w, http.StatusNotFound, "Not Found")
		return
	}
	tok := "ghs_" + randomHex(18)
	exp := now().Add(s.tokenLifetime)
	s.tokens[tok] = exp
	reply(w, http.StatusCreated, map[string]any{
		"token": tok, "expires_at": exp.Format(time.RFC3339),
		"permissions":          map[string]string{"contents": "write", "pull_requests": "write", "metadata": "read"},
		"repository_selection": "all",
	})
}

// --- repositories ------------------------------------------------------------

func userJSON(s *Server, login, kind string) map[string]any {
	return map[string]any{"login": login, "id": len(login), "node_id": "U_" + login, "type": kind,
		"url": s.api() + "users/" + login, "html_url": s.web() + login}
}

func (s *Server) repoJSON(r *repository) map[string]any {
	full := r.owner + "/" + r.name
	return map[string]any{
		"id": r.id, "node_id": fmt.Sprintf("R_%d", r.id), "name": r.name, "full_name": full, "private": false,
		"owner": userJSON(s, r.owner, "Organization"), "html_url": s.web() + full, "url": s.repoAPI(r),
		"default_branch": r.defaultBranch, "archived": false, "fork": false, "visibility": "public",
	}
}

func (s *Server) getRepo(w http.ResponseWriter, r *http.Request) {
	if rp := s.repo(w, r); rp != nil {
		reply(w, http.StatusOK, s.repoJSON(rp))
	}
}

// listRepos lists an owner's repositories (the fake makes no difference
// between organizations and users).
func (s *Server) listRepos(param string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		owner := r.PathValue(param)
		var items []any
		for _, name := range sortedKeys(s.repos) {
			if rp := s.repos[name]; rp.owner == owner {
				items = append(items, s.repoJSON(rp))
			}
		}
		if items == nil {
			fail(w, http.StatusNotFound, "Not Found")
			return
		}
		page(w, r, items)
	}
}

// page answers one page of items (per_page, default 30, at most 100; page
// from 1) with GitHub's Link header.
func page(w http.ResponseWriter, r *http.Request, items []any) {
	q := r.URL.Query()
	per, _ := strconv.Atoi(q.Get("per_page"))
	if per <= 0 {
		per = 30
	}
	per = min(per, 100)
	n, _ := strconv.Atoi(q.Get("page"))
	n = max(n, 1)
	last := max((len(items)+per-1)/per, 1)
	from, to := min((n-1)*per, len(items)), min(n*per, len(items))
	link := func(p int, rel string) string {
		u := *r.URL
		u.Scheme, u.Host = "http", r.Host
		v := u.Query()
		v.Set("page", strconv.Itoa(p))
		u.RawQuery = v.Encode()
		return fmt.Sprintf("<%s>; rel=%q", u.String(), rel)
	}
	var links []string
	if n < last {
		links = append(links, link(n+1, "next"), link(last, "last"))
	}
	if n > 1 {
		links = append(links, link(1, "first"), link(n-1, "prev"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	out := items[from:to]
	if out == nil {
		out = []any{}
	}
	reply(w, http.StatusOK, out)
}

// --- contents -----------------------------------------------------------------

func (s *Server) getContents(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	ref := r.URL.Query().Get("ref")
	c := rp.resolve(ref)
	if c == "" {
		fail(w, http.StatusNotFound, "No commit found for the ref "+ref)
		return
	}
	if ref == "" {
		ref = rp.defaultBranch
	}
	p := strings.Trim(r.PathValue("path"), "/")
	leaves := rp.flatten(rp.get(c, "commit").commit.tree)
	item := func(p string, e entry) map[string]any {
		kind := map[string]string{"blob": "file", "tree": "dir", "commit": "submodule"}[e.kind]
		if e.mode == "120000" {
			kind = "symlink"
		}
		self := s.repoAPI(rp) + "/contents/" + p + "?ref=" + url.QueryEscape(ref)
		git := s.repoAPI(rp) + "/git/blobs/" + e.sha
		if e.kind == "tree" {
			git = s.repoAPI(rp) + "/git/trees/" + e.sha
		}
		html := s.web() + rp.owner + "/" + rp.name + "/blob/" + ref + "/" + p
		m := map[string]any{"type": kind, "name": path.Base(p), "path": p, "sha": e.sha, "size": 0,
			"url": self, "git_url": git, "html_url": html, "download_url": nil,
			"_links": map[string]string{"self": self, "git": git, "html": html}}
		if e.kind == "blob" {
			m["size"] = len(rp.get(e.sha, "blob").blob)
			m["download_url"] = s.web() + rp.owner + "/" + rp.name + "/raw/" + ref + "/" + p
		}
		return m
	}
	if e, ok := leaves[p]; ok {
		m := item(p, e)
		if e.kind == "blob" {
			b := rp.get(e.sha, "blob").blob
			m["encoding"], m["content"] = "base64", wrap(base64.StdEncoding.EncodeToString(b))
			if len(b) > maxContent {
				m["encoding"], m["content"] = "none", ""
			}
		}
		reply(w, http.StatusOK, m)
		return
	}
	// A directory: its entries.
	prefix := p + "/"
	if p == "" {
		prefix = ""
	}
	children := map[string]entry{}
	for lp, e := range leaves {
		rest, ok := strings.CutPrefix(lp, prefix)
		if !ok {
			continue
		}
		if name, _, nested := strings.Cut(rest, "/"); nested {
			children[name] = entry{kind: "tree", sha: subtree(rp, rp.get(c, "commit").commit.tree, prefix+name)}
		} else {
			children[name] = e
		}
	}
	if len(children) == 0 {
		fail(w, http.StatusNotFound, "Not Found")
		return
	}
	items := []any{}
	for _, name := range sortedKeys(children) {
		items = append(items, item(prefix+name, children[name]))
	}
	reply(w, http.StatusOK, items)
}

// subtree is the SHA of the tree at dir under root.
func subtree(rp *repository, root, dir string) string {
	sha := root
	for part := range strings.SplitSeq(dir, "/") {
		o := rp.get(sha, "tree")
		if o == nil {
			return ""
		}
		sha = ""
		for _, e := range o.entries {
			if e.name == part && e.kind == "tree" {
				sha = e.sha
			}
		}
	}
	return sha
}

// wrap breaks base64 in lines of 60 characters, as the contents API does.
func wrap(s string) string {
	var b strings.Builder
	for len(s) > 60 {
		b.WriteString(s[:60] + "\n")
		s = s[60:]
	}
	b.WriteString(s + "\n")
	return b.String()
}

// --- blobs, trees, commits -------------------------------------------------------

var shaPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	sha := r.PathValue("file_sha")
	o := rp.get(sha, "blob")
	if o == nil {
		fail(w, http.StatusNotFound, "Not Found")
		return
	}
	reply(w, http.StatusOK, map[string]any{"sha": sha, "node_id": "B_" + sha, "size": len(o.blob), "url": s.repoAPI(rp) + "/git/blobs/" + sha,
		"content": wrap(base64.StdEncoding.EncodeToString(o.blob)), "encoding": "base64"})
}

func (s *Server) createBlob(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	var in struct {
		Content  *string `json:"content"`
		Encoding string  `json:"encoding"`
	}
	if !decode(w, r, &in) {
		return
	}
	if in.Content == nil {
		invalid(w, map[string]any{"resource": "Blob", "field": "content", "code": "missing_field"})
		return
	}
	data := []byte(*in.Content)
	switch in.Encoding {
	case "", "utf-8":
	case "base64":
		b, err := base64.StdEncoding.DecodeString(*in.Content)
		if err != nil {
			invalid(w, map[string]any{"resource": "Blob", "field": "content", "code": "invalid"})
			return
		}
		data = b
	default:
		invalid(w, map[string]any{"resource": "Blob", "field": "encoding", "code": "invalid"})
		return
	}
	sha := rp.put(&object{kind: "blob", blob: data})
	reply(w, http.StatusCreated, map[string]any{"sha": sha, "url": s.repoAPI(rp) + "/git/blobs/" + sha})
}

func (s *Server) treeJSON(rp *repository, sha string, recursive bool) map[string]any {
	items := []any{}
	var walk func(sha, prefix string)
	walk = func(sha, prefix string) {
		for _, e := range rp.get(sha, "tree").entries {
			kind := map[string]string{"tree": "trees", "blob": "blobs", "commit": "commits"}[e.kind]
			m := map[string]any{"path": prefix + e.name, "mode": e.mode, "type": e.kind, "sha": e.sha, "url": s.repoAPI(rp) + "/git/" + kind + "/" + e.sha}
			if e.kind == "blob" {
				m["size"] = len(rp.get(e.sha, "blob").blob)
			}
			items = append(items, m)
			if recursive && e.kind == "tree" {
				walk(e.sha, prefix+e.name+"/")
			}
		}
	}
	walk(sha, "")
	return map[string]any{"sha": sha, "url": s.repoAPI(rp) + "/git/trees/" + sha, "tree": items, "truncated": false}
}

func (s *Server) getTree(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	sha := r.PathValue("tree_sha")
	if c := rp.resolve(sha); c != "" && rp.get(sha, "tree") == nil {
		sha = rp.get(c, "commit").commit.tree // a commit or branch names its tree
	}
	if rp.get(sha, "tree") == nil {
		fail(w, http.StatusNotFound, "Not Found")
		return
	}
	rec := r.URL.Query().Get("recursive")
	reply(w, http.StatusOK, s.treeJSON(rp, sha, rec != "" && rec != "0" && rec != "false"))
}

var modes = map[string]string{"100644": "blob", "100755": "blob", "120000": "blob", "040000": "tree", "160000": "commit"}

func (s *Server) createTree(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	var in struct {
		BaseTree string `json:"base_tree"`
		Tree     []struct {
			Path    string          `json:"path"`
			Mode    string          `json:"mode"`
			Type    string          `json:"type"`
			SHA     json.RawMessage `json:"sha"`
			Content *string         `json:"content"`
		} `json:"tree"`
	}
	if !decode(w, r, &in) {
		return
	}
	leaves := map[string]entry{}
	if in.BaseTree != "" {
		if rp.get(in.BaseTree, "tree") == nil {
			fail(w, http.StatusUnprocessableEntity, "base_tree is not a valid tree oid")
			return
		}
		leaves = rp.flatten(in.BaseTree)
	}
	for i, e := range in.Tree {
		bad := func(why string) {
			fail(w, http.StatusUnprocessableEntity, fmt.Sprintf("tree.%d %s", i, why))
		}
		kind, ok := modes[e.Mode]
		switch {
		case e.Path == "" || strings.HasPrefix(e.Path, "/") || path.Clean(e.Path) != e.Path:
			bad("contains a malformed path component")
			return
		case !ok || (e.Type != "" && e.Type != kind):
			bad("contains an invalid mode or type")
			return
		}
		var sha *string
		if len(e.SHA) > 0 && string(e.SHA) != "null" {
			if err := json.Unmarshal(e.SHA, &sha); err != nil {
				bad("sha is not a string")
				return
			}
		}
		deleting := len(e.SHA) > 0 && string(e.SHA) == "null" && e.Content == nil
		switch {
		case deleting:
			delete(leaves, e.Path)
			for p := range leaves {
				if strings.HasPrefix(p, e.Path+"/") {
					delete(leaves, p)
				}
			}
			continue
		case e.Content != nil && sha != nil:
			bad("cannot have both sha and content")
			return
		case e.Content != nil:
			s := rp.put(&object{kind: "blob", blob: []byte(*e.Content)})
			sha = &s
		case sha == nil || !shaPattern.MatchString(*sha) || (kind != "commit" && rp.get(*sha, kind) == nil):
			bad(fmt.Sprintf("is not a valid %s: sha missing or unknown", kind))
			return
		}
		if kind == "tree" {
			for p, leaf := range rp.flatten(*sha) {
				leaves[e.Path+"/"+p] = leaf
			}
			continue
		}
		for p := range leaves { // a file replaces a directory, and the reverse
			if strings.HasPrefix(p, e.Path+"/") || strings.HasPrefix(e.Path, p+"/") {
				delete(leaves, p)
			}
		}
		leaves[e.Path] = entry{mode: e.Mode, kind: kind, sha: *sha}
	}
	reply(w, http.StatusCreated, s.treeJSON(rp, rp.build(leaves), false))
}

func (s *Server) commitJSON(rp *repository, sha string) map[string]any {
	c := rp.get(sha, "commit").commit
	parents := []any{}
	for _, p := range c.parents {
		parents = append(parents, map[string]any{"sha": p, "url": s.repoAPI(rp) + "/git/commits/" + p,
			"html_url": s.web() + rp.owner + "/" + rp.name + "/commit/" + p})
	}
	return map[string]any{
		"sha": sha, "node_id": "C_" + sha, "url": s.repoAPI(rp) + "/git/commits/" + sha,
		"html_url": s.web() + rp.owner + "/" + rp.name + "/commit/" + sha,
		"author":   c.author, "committer": c.committer, "message": c.message,
		"tree":         map[string]any{"sha": c.tree, "url": s.repoAPI(rp) + "/git/trees/" + c.tree},
		"parents":      parents,
		"verification": map[string]any{"verified": false, "reason": "unsigned", "signature": nil, "payload": nil},
	}
}

func (s *Server) getCommit(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	sha := r.PathValue("commit_sha")
	if rp.get(sha, "commit") == nil {
		fail(w, http.StatusNotFound, "Not Found")
		return
	}
	reply(w, http.StatusOK, s.commitJSON(rp, sha))
}

func (s *Server) createCommit(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	var in struct {
		Message   *string    `json:"message"`
		Tree      string     `json:"tree"`
		Parents   []string   `json:"parents"`
		Author    *signature `json:"author"`
		Committer *signature `json:"committer"`
	}
	if !decode(w, r, &in) {
		return
	}
	switch {
	case in.Message == nil:
		invalid(w, map[string]any{"resource": "Commit", "field": "message", "code": "missing_field"})
		return
	case rp.get(in.Tree, "tree") == nil:
		fail(w, http.StatusUnprocessableEntity, "Tree SHA does not exist")
		return
	}
	for _, p := range in.Parents {
		if rp.get(p, "commit") == nil {
			fail(w, http.StatusUnprocessableEntity, "Parent SHA does not exist or is not a commit object")
			return
		}
	}
	author := signature{Name: "Fake User", Email: "fake-user@users.noreply.github.com", Date: now()}
	if in.Author != nil {
		author = *in.Author
		if author.Date.IsZero() {
			author.Date = now()
		}
	}
	committer := author
	if in.Committer != nil {
		committer = *in.Committer
		if committer.Date.IsZero() {
			committer.Date = now()
		}
	}
	sha := rp.put(&object{kind: "commit", commit: &commit{tree: in.Tree, parents: in.Parents, message: *in.Message, author: author, committer: committer}})
	reply(w, http.StatusCreated, s.commitJSON(rp, sha))
}

// --- references -----------------------------------------------------------------

func (s *Server) refJSON(rp *repository, ref string) map[string]any {
	sha := rp.refs[ref]
	return map[string]any{"ref": ref, "node_id": "REF_" + ref, "url": s.repoAPI(rp) + "/git/" + ref,
		"object": map[string]any{"type": "commit", "sha": sha, "url": s.repoAPI(rp) + "/git/commits/" + sha}}
}

func (s *Server) getRef(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	ref := "refs/" + r.PathValue("ref")
	if _, ok := rp.refs[ref]; !ok {
		fail(w, http.StatusNotFound, "Not Found")
		return
	}
	reply(w, http.StatusOK, s.refJSON(rp, ref))
}

func (s *Server) createRef(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	var in struct {
		Ref string `json:"ref"`
		SHA string `json:"sha"`
	}
	if !decode(w, r, &in) {
		return
	}
	switch {
	case !strings.HasPrefix(in.Ref, "refs/") || strings.Count(in.Ref, "/") < 2:
		fail(w, http.StatusUnprocessableEntity, "Reference name must start with 'refs/' and have at least two slashes.")
	case rp.get(in.SHA, "commit") == nil:
		fail(w, http.StatusUnprocessableEntity, "Object does not exist")
	case rp.refs[in.Ref] != "":
		fail(w, http.StatusUnprocessableEntity, "Reference already exists")
	default:
		rp.refs[in.Ref] = in.SHA
		reply(w, http.StatusCreated, s.refJSON(rp, in.Ref))
	}
}

func (s *Server) updateRef(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	var in struct {
		SHA   string `json:"sha"`
		Force bool   `json:"force"`
	}
	if !decode(w, r, &in) {
		return
	}
	ref := "refs/" + r.PathValue("ref")
	old, ok := rp.refs[ref]
	switch {
	case !ok:
		fail(w, http.StatusUnprocessableEntity, "Reference does not exist")
	case rp.get(in.SHA, "commit") == nil:
		fail(w, http.StatusUnprocessableEntity, "Object does not exist")
	case !in.Force && !rp.ancestors(in.SHA)[old]:
		fail(w, http.StatusUnprocessableEntity, "Update is not a fast forward")
	default:
		rp.refs[ref] = in.SHA
		reply(w, http.StatusOK, s.refJSON(rp, ref))
	}
}

// deleteRef deletes a reference; a deleted branch closes its open pull
// requests.
func (s *Server) deleteRef(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	ref := "refs/" + r.PathValue("ref")
	if _, ok := rp.refs[ref]; !ok {
		fail(w, http.StatusUnprocessableEntity, "Reference does not exist")
		return
	}
	for _, p := range rp.pulls {
		if p.state == "open" && (ref == "refs/heads/"+p.head || ref == "refs/heads/"+p.base) {
			s.closePull(rp, p)
		}
	}
	delete(rp.refs, ref)
	w.WriteHeader(http.StatusNoContent)
}

// --- pull requests ----------------------------------------------------------------

func (s *Server) pullJSON(rp *repository, p *pull, single bool) map[string]any {
	api := s.repoAPI(rp) + "/pulls/" + strconv.Itoa(p.number)
	html := s.pullURL(rp, p)
	ts := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.Format(time.RFC3339)
	}
	side := func(branch, sha string) map[string]any {
		return map[string]any{"label": rp.owner + ":" + branch, "ref": branch, "sha": sha,
			"user": userJSON(s, rp.owner, "Organization"), "repo": s.repoJSON(rp)}
	}
	head, base := rp.pullHead(p), rp.pullBase(p)
	var mergeCommit any
	if p.mergeCommit != "" {
		mergeCommit = p.mergeCommit
	}
	m := map[string]any{
		"url": api, "id": p.id, "node_id": fmt.Sprintf("PR_%d", p.id), "html_url": html,
		"diff_url": html + ".diff", "patch_url": html + ".patch", "issue_url": s.repoAPI(rp) + "/issues/" + strconv.Itoa(p.number),
		"number": p.number, "state": p.state, "locked": false, "title": p.title, "body": p.body,
		"user": userJSON(s, p.user, "User"), "created_at": ts(p.created), "updated_at": ts(p.updated),
		"closed_at": ts(p.closed), "merged_at": ts(p.mAt), "merge_commit_sha": mergeCommit, "draft": false,
		"head": side(p.head, head), "base": side(p.base, base), "author_association": "MEMBER",
	}
	if single {
		// Only the single pull request (and webhook payloads) say these.
		m["merged"] = p.merged
		m["merged_by"] = nil
		if p.merged {
			m["merged_by"] = userJSON(s, "fake-user", "User")
		}
		m["mergeable"] = nil
		if p.state == "open" && head != "" && base != "" {
			_, err := rp.mergeTrees(base, head)
			m["mergeable"] = err == nil
		}
		commits := 0
		if head != "" {
			inBase := rp.ancestors(base)
			for c := range rp.ancestors(head) {
				if !inBase[c] {
					commits++
				}
			}
		}
		m["commits"], m["comments"], m["review_comments"] = commits, 0, 0
	}
	return m
}

func (s *Server) listPulls(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		state = "open"
	}
	if state != "open" && state != "closed" && state != "all" {
		invalid(w, map[string]any{"resource": "PullRequest", "field": "state", "code": "invalid"})
		return
	}
	// head filters by "owner:branch" only; anything else is ignored, as on
	// GitHub.
	headOwner, headBranch, byHead := strings.Cut(q.Get("head"), ":")
	items := []any{}
	for i := len(rp.pulls) - 1; i >= 0; i-- { // newest first
		p := rp.pulls[i]
		switch {
		case state != "all" && p.state != state:
		case byHead && (headOwner != rp.owner || headBranch != p.head):
		case q.Get("base") != "" && q.Get("base") != p.base:
		default:
			items = append(items, s.pullJSON(rp, p, false))
		}
	}
	page(w, r, items)
}

func (s *Server) pullParam(w http.ResponseWriter, r *http.Request) (*repository, *pull) {
	rp := s.repo(w, r)
	if rp == nil {
		return nil, nil
	}
	n, err := strconv.Atoi(r.PathValue("pull_number"))
	if err != nil || n < 1 || n > len(rp.pulls) {
		fail(w, http.StatusNotFound, "Not Found")
		return nil, nil
	}
	return rp, rp.pulls[n-1]
}

func (s *Server) getPull(w http.ResponseWriter, r *http.Request) {
	if rp, p := s.pullParam(w, r); p != nil {
		reply(w, http.StatusOK, s.pullJSON(rp, p, true))
	}
}

func (s *Server) createPull(w http.ResponseWriter, r *http.Request) {
	rp := s.repo(w, r)
	if rp == nil {
		return
	}
	var in struct {
		Title string `json:"title"`
		Head  string `json:"head"`
		Base  string `json:"base"`
		Body  string `json:"body"`
	}
	if !decode(w, r, &in) {
		return
	}
	head := in.Head
	if owner, branch, ok := strings.Cut(in.Head, ":"); ok {
		if owner != rp.owner {
			invalid(w, map[string]any{"resource": "PullRequest", "field": "head", "code": "invalid"})
			return
		}
		head = branch
	}
	headSHA, baseSHA := rp.refs["refs/heads/"+head], rp.refs["refs/heads/"+in.Base]
	switch {
	case in.Title == "":
		invalid(w, map[string]any{"resource": "PullRequest", "field": "title", "code": "missing_field"})
		return
	case headSHA == "":
		invalid(w, map[string]any{"resource": "PullRequest", "field": "head", "code": "invalid"})
		return
	case baseSHA == "":
		invalid(w, map[string]any{"resource": "PullRequest", "field": "base", "code": "invalid"})
		return
	}
	for _, p := range rp.pulls {
		if p.state == "open" && p.head == head && p.base == in.Base {
			invalid(w, map[string]any{"resource": "PullRequest", "code": "custom",
				"message": fmt.Sprintf("A pull request already exists for %s:%s.", rp.owner, head)})
			return
		}
	}
	if rp.ancestors(baseSHA)[headSHA] {
		invalid(w, map[string]any{"resource": "PullRequest", "code": "custom",
			"message": fmt.Sprintf("No commits between %s and %s", in.Base, head)})
		return
	}
	user := "fake-user"
	if tok, _ := bearer(r); strings.HasPrefix(tok, "ghs_") {
		user = "fake-app[bot]"
	}
	t := now()
	p := &pull{number: len(rp.pulls) + 1, id: s.id(), user: user, title: in.Title, body: in.Body, head: head, base: in.Base,
		state: "open", created: t, updated: t}
	rp.pulls = append(rp.pulls, p)
	w.Header().Set("Location", s.repoAPI(rp)+"/pulls/"+strconv.Itoa(p.number))
	reply(w, http.StatusCreated, s.pullJSON(rp, p, true))
}

func (s *Server) updatePull(w http.ResponseWriter, r *http.Request) {
	rp, p := s.pullParam(w, r)
	if p == nil {
		return
	}
	var in struct {
		Title *string `json:"title"`
		Body  *string `json:"body"`
		State *string `json:"state"`
		Base  *string `json:"base"`
	}
	if !decode(w, r, &in) {
		return
	}
	if in.State != nil && *in.State != "open" && *in.State != "closed" {
		invalid(w, map[string]any{"resource": "PullRequest", "field": "state", "code": "invalid"})
		return
	}
	if in.Base != nil && rp.refs["refs/heads/"+*in.Base] == "" {
		invalid(w, map[string]any{"resource": "PullRequest", "field": "base", "code": "invalid"})
		return
	}
	if in.State != nil && *in.State == "open" && p.state == "closed" {
		if p.merged || rp.refs["refs/heads/"+p.head] == "" {
			fail(w, http.StatusUnprocessableEntity, "state cannot be changed. The branch was deleted or the pull request merged.")
			return
		}
	}
	if in.Title != nil {
		p.title = *in.Title
	}
	if in.Body != nil {
		p.body = *in.Body
	}
	if in.Base != nil {
		p.base = *in.Base
	}
	p.updated = now()
	if in.State != nil && *in.State != p.state {
		if *in.State == "closed" {
			s.closePull(rp, p)
		} else {
			p.state, p.closed, p.headSHA, p.baseSHA = "open", time.Time{}, "", ""
		}
	}
	reply(w, http.StatusOK, s.pullJSON(rp, p, true))
}
