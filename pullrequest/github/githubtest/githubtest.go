// Package githubtest is a fake GitHub for tests: an HTTP server that
// follows GitHub's documented REST API (version 2022-11-28) for the
// endpoints package github uses, and sends webhook deliveries as GitHub
// does, with no network.
//
// It serves, under URL() (laid out like GitHub Enterprise Server: the API
// at /api/v3/, pull request pages at /OWNER/REPO/pull/N), these routes
// (Requests counts the calls by these names):
//
//	GET    /repos/{owner}/{repo}
//	GET    /orgs/{org}/repos
//	GET    /users/{username}/repos
//	GET    /repos/{owner}/{repo}/contents/{path...}     (?ref=)
//	GET    /repos/{owner}/{repo}/git/ref/{ref...}
//	POST   /repos/{owner}/{repo}/git/refs
//	PATCH  /repos/{owner}/{repo}/git/refs/{ref...}
//	DELETE /repos/{owner}/{repo}/git/refs/{ref...}
//	GET    /repos/{owner}/{repo}/git/blobs/{file_sha}
//	POST   /repos/{owner}/{repo}/git/blobs
//	GET    /repos/{owner}/{repo}/git/trees/{tree_sha}   (?recursive=1)
//	POST   /repos/{owner}/{repo}/git/trees
//	GET    /repos/{owner}/{repo}/git/commits/{commit_sha}
//	POST   /repos/{owner}/{repo}/git/commits
//	GET    /repos/{owner}/{repo}/pulls                  (?state=&head=&base=&per_page=&page=)
//	POST   /repos/{owner}/{repo}/pulls
//	GET    /repos/{owner}/{repo}/pulls/{pull_number}
//	PATCH  /repos/{owner}/{repo}/pulls/{pull_number}
//	POST   /app/installations/{installation_id}/access_tokens
//
// Every call needs a token (Authorization: Bearer or token): the Server's
// own (Token), or an installation token an App got with a JWT signed by
// its key (AddApp). Errors have GitHub's shape ({"message", "errors",
// "documentation_url", "status"}): 401 Bad credentials, 404 Not Found, 422
// Validation Failed (a pull request that already exists, a reference that
// exists or does not, no commits between the branches). Git objects are
// hashed as git hashes them, so equal trees and commits have equal SHAs.
//
// A person's actions are methods: MergePull merges a pull request (a merge
// commit, or a conflict error) and ClosePull closes one without merge; both
// send a signed pull_request "closed" delivery to every webhook (AddWebhook),
// with GitHub's headers (X-GitHub-Event, X-GitHub-Delivery,
// X-Hub-Signature-256). Deleting a branch closes its open pull requests, as
// on GitHub. Deliveries are made before the method returns.
//
// GitHub's passing failures are injected with Fail: the next n requests
// to a route answer a Fault instead, a status with GitHub's error body and
// any headers (a 502, a 429 with Retry-After, a 403 with
// X-RateLimit-Remaining: 0), or a closed connection; with After, the
// request is served first and only its answer is lost, as when GitHub
// created a pull request but a proxy in front of it timed out.
package githubtest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a fake GitHub. Its methods are safe for concurrent use.
type Server struct {
	srv *httptest.Server

	mu            sync.Mutex
	token         string
	repos         map[string]*repository // by "owner/name"
	apps          map[int64]*rsa.PublicKey
	installations map[int64]int64 // installation → App
	tokens        map[string]time.Time
	tokenLifetime time.Duration
	hooks         []hook
	deliveries    []Delivery
	requests      map[string]int
	faults        map[string]*pendingFault // by route
	nextID        int64
	// outbox holds the deliveries to make once the lock is released.
	outbox []func()
}

type repository struct {
	owner, name   string
	id            int64
	defaultBranch string
	objects       map[string]*object
	refs          map[string]string // "refs/heads/main" → commit
	pulls         []*pull           // pulls[i].number == i+1
}

type pull struct {
	number      int
	id          int64
	user        string
	title, body string
	head, base  string // branches
	state       string // open or closed
	merged      bool
	// headSHA and baseSHA are frozen when the pull request closes.
	headSHA, baseSHA              string
	mergeCommit                   string
	created, updated, closed, mAt time.Time
}

type hook struct {
	id          int64
	url, secret string
}

// Delivery is a webhook delivery the Server made.
type Delivery struct {
	ID     string // X-GitHub-Delivery
	Event  string // X-GitHub-Event
	Action string
	URL    string
	// StatusCode is the webhook's answer (0 when none came, see Err).
	StatusCode int
	Err        error
}

// New starts a fake GitHub for the test; it stops when the test ends.
func New(t testing.TB) *Server {
	s := Start()
	t.Cleanup(s.Close)
	return s
}

// Start starts a fake GitHub outside a test (in an Example, say); Close
// stops it.
func Start() *Server {
	s := &Server{
		token:         "ghp_" + randomHex(18),
		repos:         map[string]*repository{},
		apps:          map[int64]*rsa.PublicKey{},
		installations: map[int64]int64{},
		tokens:        map[string]time.Time{},
		tokenLifetime: time.Hour,
		requests:      map[string]int{},
		faults:        map[string]*pendingFault{},
		nextID:        1000,
	}
	mux := http.NewServeMux()
	s.routes(mux)
	s.srv = httptest.NewServer(mux)
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// URL is the REST API's root, for github.Options.BaseURL: ".../api/v3/".
func (s *Server) URL() string { return s.srv.URL + "/api/v3/" }

// Token is a token every call may use (a personal access token).
func (s *Server) Token() string { return s.token }

func (s *Server) api() string { return s.URL() }
func (s *Server) web() string { return s.srv.URL + "/" }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

func (s *Server) id() int64 {
	s.nextID++
	return s.nextID
}

// unlock releases the lock, then makes the deliveries queued under it.
func (s *Server) unlock() {
	out := s.outbox
	s.outbox = nil
	s.mu.Unlock()
	for _, f := range out {
		f()
	}
}

// CreateRepo creates a repository "owner/name" whose default branch, main,
// has one commit with files (slash-separated path → content).
func (s *Server) CreateRepo(fullName string, files map[string]string) error {
	owner, name, ok := strings.Cut(fullName, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("githubtest: repository %q: want owner/name", fullName)
	}
	s.mu.Lock()
	defer s.unlock()
	if s.repos[fullName] != nil {
		return fmt.Errorf("githubtest: %s exists", fullName)
	}
	r := &repository{owner: owner, name: name, id: s.id(), defaultBranch: "main", objects: map[string]*object{}, refs: map[string]string{}}
	leaves := map[string]entry{}
	for p, c := range files {
		leaves[p] = entry{mode: "100644", kind: "blob", sha: r.put(&object{kind: "blob", blob: []byte(c)})}
	}
	who := signature{Name: "Fake User", Email: "fake-user@users.noreply.github.com", Date: now()}
	r.refs["refs/heads/main"] = r.put(&object{kind: "commit", commit: &commit{tree: r.build(leaves), message: "Initial commit\n", author: who, committer: who}})
	s.repos[fullName] = r
	return nil
}

// Push commits files (nil deletes) on a branch of a repository, creating
// the branch from the default branch when it does not exist, as a person
// pushing would, and returns the commit.
func (s *Server) Push(fullName, branch string, files map[string]*string, message string) (string, error) {
	s.mu.Lock()
	defer s.unlock()
	r := s.repos[fullName]
	if r == nil {
		return "", fmt.Errorf("githubtest: no repository %s", fullName)
	}
	parent := r.refs["refs/heads/"+branch]
	if parent == "" {
		parent = r.refs["refs/heads/"+r.defaultBranch]
	}
	leaves := r.flatten(r.get(parent, "commit").commit.tree)
	for p, c := range files {
		if c == nil {
			delete(leaves, p)
			continue
		}
		leaves[p] = entry{mode: "100644", kind: "blob", sha: r.put(&object{kind: "blob", blob: []byte(*c)})}
	}
	who := signature{Name: "Fake User", Email: "fake-user@users.noreply.github.com", Date: now()}
	sha := r.put(&object{kind: "commit", commit: &commit{tree: r.build(leaves), parents: []string{parent}, message: message, author: who, committer: who}})
	r.refs["refs/heads/"+branch] = sha
	return sha, nil
}

// File returns a file's content on a branch (or at a commit).
func (s *Server) File(fullName, ref, path string) (string, bool) {
	s.mu.Lock()
	defer s.unlock()
	r := s.repos[fullName]
	if r == nil {
		return "", false
	}
	c := r.resolve(ref)
	if c == "" {
		return "", false
	}
	e, ok := r.flatten(r.get(c, "commit").commit.tree)[path]
	if !ok {
		return "", false
	}
	return string(r.get(e.sha, "blob").blob), true
}

// Branch returns the commit a branch points at.
func (s *Server) Branch(fullName, branch string) (string, bool) {
	s.mu.Lock()
	defer s.unlock()
	r := s.repos[fullName]
	if r == nil {
		return "", false
	}
	sha, ok := r.refs["refs/heads/"+branch]
	return sha, ok
}

// Parents returns a commit's parents.
func (s *Server) Parents(fullName, sha string) []string {
	s.mu.Lock()
	defer s.unlock()
	if r := s.repos[fullName]; r != nil {
		if o := r.get(sha, "commit"); o != nil {
			return append([]string(nil), o.commit.parents...)
		}
	}
	return nil
}

// Commits counts the commit objects a repository holds: a test can see
// that publishing again created none.
func (s *Server) Commits(fullName string) int {
	s.mu.Lock()
	defer s.unlock()
	n := 0
	if r := s.repos[fullName]; r != nil {
		for _, o := range r.objects {
			if o.kind == "commit" {
				n++
			}
		}
	}
	return n
}

// Pull is a pull request as the Server has it.
type Pull struct {
	Number      int
	URL         string
	Title, Body string
	Head, Base  string
	HeadSHA     string
	State       string // open or closed
	Merged      bool
}

// Pulls lists a repository's pull requests, by number.
func (s *Server) Pulls(fullName string) []Pull {
	s.mu.Lock()
	defer s.unlock()
	r := s.repos[fullName]
	if r == nil {
		return nil
	}
	out := make([]Pull, 0, len(r.pulls))
	for _, p := range r.pulls {
		out = append(out, Pull{Number: p.number, URL: s.pullURL(r, p), Title: p.title, Body: p.body, Head: p.head, Base: p.base,
			HeadSHA: r.pullHead(p), State: p.state, Merged: p.merged})
	}
	return out
}

// Requests counts the calls served by route, named as in the package's
// documentation, e.g. "POST /repos/{owner}/{repo}/git/commits".
func (s *Server) Requests(route string) int {
	s.mu.Lock()
	defer s.unlock()
	return s.requests[route]
}

// Deliveries lists the webhook deliveries made, in order.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// AddApp registers a GitHub App with one installation (on every
// repository) and returns the App's private key, PEM-encoded as GitHub
// generates it (PKCS#1).
func (s *Server) AddApp(appID, installationID int64) []byte {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.unlock()
	s.apps[appID] = &key.PublicKey
	s.installations[installationID] = appID
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// SetTokenLifetime sets how long the installation tokens issued from now
// on last (GitHub's: an hour).
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.unlock()
	s.tokenLifetime = d
}

// AddWebhook registers a webhook that gets every repository's pull_request
// events (like an organization's or an App's), signed with secret, and
// sends it GitHub's ping. It returns the ping's error or non-2xx answer.
func (s *Server) AddWebhook(url, secret string) error {
	s.mu.Lock()
	h := hook{id: s.id(), url: url, secret: secret}
	s.hooks = append(s.hooks, h)
	payload := map[string]any{
		"zen": "Keep it logically awesome.", "hook_id": h.id,
		"hook": map[string]any{"type": "Organization", "id": h.id, "name": "web", "active": true, "events": []string{"pull_request"},
			"config": map[string]any{"content_type": "json", "insecure_ssl": "0", "url": url}},
	}
	s.mu.Unlock()
	d := s.deliver(h, "ping", "", payload)
	s.mu.Lock()
	s.deliveries = append(s.deliveries, d)
	s.mu.Unlock()
	if d.Err != nil {
		return d.Err
	}
	if d.StatusCode/100 != 2 {
		return fmt.Errorf("githubtest: the webhook answered the ping with %d", d.StatusCode)
	}
	return nil
}

// queueEvent queues a pull_request delivery to every webhook (under the
// lock; sent by unlock).
func (s *Server) queueEvent(r *repository, p *pull, action string) {
	payload := map[string]any{
		"action": action, "number": p.number, "pull_request": s.pullJSON(r, p, true),
		"repository": s.repoJSON(r), "sender": userJSON(s, "fake-user", "User"),
	}
	body, _ := json.Marshal(payload)
	for _, h := range s.hooks {
		s.outbox = append(s.outbox, func() {
			d := s.deliverRaw(h, "pull_request", action, body)
			s.mu.Lock()
			s.deliveries = append(s.deliveries, d)
			s.mu.Unlock()
		})
	}
}

func (s *Server) deliver(h hook, event, action string, payload any) Delivery {
	body, _ := json.Marshal(payload)
	return s.deliverRaw(h, event, action, body)
}

// deliverRaw POSTs one delivery with GitHub's headers.
func (s *Server) deliverRaw(h hook, event, action string, body []byte) Delivery {
	d := Delivery{ID: fmt.Sprintf("%s-%s-%s-%s-%s", randomHex(4), randomHex(2), randomHex(2), randomHex(2), randomHex(6)), Event: event, Action: action, URL: h.url}
	req, err := http.NewRequest(http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		d.Err = err
		return d
	}
	sha1mac := hmac.New(sha1.New, []byte(h.secret))
	sha1mac.Write(body)
	sha256mac := hmac.New(sha256.New, []byte(h.secret))
	sha256mac.Write(body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/fake")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", d.ID)
	req.Header.Set("X-GitHub-Hook-ID", strconv.FormatInt(h.id, 10))
	req.Header.Set("X-GitHub-Hook-Installation-Target-Type", "organization")
	req.Header.Set("X-GitHub-Hook-Installation-Target-ID", "1")
	req.Header.Set("X-Hub-Signature", "sha1="+hex.EncodeToString(sha1mac.Sum(nil)))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(sha256mac.Sum(nil)))
	client := &http.Client{Timeout: 10 * time.Second} // GitHub's
	resp, err := client.Do(req)
	if err != nil {
		d.Err = err
		return d
	}
	resp.Body.Close()
	d.StatusCode = resp.StatusCode
	return d
}

// MergePull merges an open pull request as its Merge button does (a merge
// commit on the base branch), and sends the pull_request "closed" delivery
// with merged true. It fails, changing nothing, on a conflict.
func (s *Server) MergePull(fullName string, number int) error {
	s.mu.Lock()
	defer s.unlock()
	r, p, err := s.openPull(fullName, number)
	if err != nil {
		return err
	}
	head, base := r.refs["refs/heads/"+p.head], r.refs["refs/heads/"+p.base]
	tree, err := r.mergeTrees(base, head)
	if err != nil {
		return fmt.Errorf("githubtest: pull request #%d is not mergeable: %w", number, err)
	}
	t := now()
	msg := fmt.Sprintf("Merge pull request #%d from %s/%s\n\n%s", number, r.owner, p.head, p.title)
	merge := r.put(&object{kind: "commit", commit: &commit{tree: tree, parents: []string{base, head}, message: msg,
		author: signature{Name: "Fake User", Email: "fake-user@users.noreply.github.com", Date: t}, committer: signature{Name: "GitHub", Email: "noreply@github.com", Date: t}}})
	r.refs["refs/heads/"+p.base] = merge
	p.headSHA, p.baseSHA, p.mergeCommit = head, base, merge
	p.state, p.merged, p.closed, p.mAt, p.updated = "closed", true, t, t, t
	s.queueEvent(r, p, "closed")
	return nil
}

// ClosePull closes an open pull request without merging it and sends the
// pull_request "closed" delivery with merged false.
func (s *Server) ClosePull(fullName string, number int) error {
	s.mu.Lock()
	defer s.unlock()
	r, p, err := s.openPull(fullName, number)
	if err != nil {
		return err
	}
	s.closePull(r, p)
	return nil
}

func (s *Server) closePull(r *repository, p *pull) {
	t := now()
	p.headSHA, p.baseSHA = r.pullHead(p), r.pullBase(p)
	p.state, p.closed, p.updated = "closed", t, t
	s.queueEvent(r, p, "closed")
}

func (s *Server) openPull(fullName string, number int) (*repository, *pull, error) {
	r := s.repos[fullName]
	if r == nil {
		return nil, nil, fmt.Errorf("githubtest: no repository %s", fullName)
	}
	if number < 1 || number > len(r.pulls) {
		return nil, nil, fmt.Errorf("githubtest: %s has no pull request #%d", fullName, number)
	}
	p := r.pulls[number-1]
	if p.state != "open" {
		return nil, nil, fmt.Errorf("githubtest: pull request #%d of %s is %s", number, fullName, p.state)
	}
	return r, p, nil
}

// pullHead is the head commit: the branch's while open.
func (r *repository) pullHead(p *pull) string {
	if p.state == "open" {
		return r.refs["refs/heads/"+p.head]
	}
	return p.headSHA
}

func (r *repository) pullBase(p *pull) string {
	if p.state == "open" {
		return r.refs["refs/heads/"+p.base]
	}
	return p.baseSHA
}

// resolve names a commit by branch ("main", "heads/main", "refs/heads/main")
// or SHA.
func (r *repository) resolve(ref string) string {
	if ref == "" {
		ref = r.defaultBranch
	}
	for _, name := range []string{ref, "refs/" + ref, "refs/heads/" + ref} {
		if sha, ok := r.refs[name]; ok {
			return sha
		}
	}
	if r.get(ref, "commit") != nil {
		return ref
	}
	return ""
}

func (s *Server) pullURL(r *repository, p *pull) string {
	return fmt.Sprintf("%s%s/%s/pull/%d", s.web(), r.owner, r.name, p.number)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
