package github

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v93/github"
)

// ClosedEvent is a pull request closed on GitHub, merged or not, as a
// webhook delivery tells it.
type ClosedEvent struct {
	// Delivery is the delivery's id (X-GitHub-Delivery).
	Delivery string
	// Repo is "owner/name".
	Repo   string
	Number int
	// URL is the pull request's page (PullRequest.URL).
	URL string
	// Branch is its head branch.
	Branch string
	Merged bool
}

// maxPayload is GitHub's cap on webhook payloads.
const maxPayload = 25 << 20

// Webhook is the http.Handler of a GitHub webhook (a repository's, an
// organization's or a GitHub App's) that sends pull request events,
// content type application/json (or form-encoded) and a secret. It makes a
// merge reach Loom at once instead of at the next merge check.
//
// Every delivery must carry a valid X-Hub-Signature-256 (the HMAC-SHA256 of
// the body with the secret): others are refused with 401. It answers ping,
// and queues every pull_request delivery with action "closed" for its
// callback; other events are acknowledged and ignored. The callback runs
// in the background, after GitHub has its answer, one call at a time, with
// every event queued since the previous call: a burst of merges makes a
// call or two, not one per merge. A replayed delivery only calls it again.
//
// In a Migrator, the callback runs a merge check pass, and the handler is
// mounted on the Migrator's listener:
//
//	func withWebhook(spec migratorsdk.Spec, opts migratorsdk.Options, secret string) (*migratorsdk.Migrator, error) {
//		var m *migratorsdk.Migrator
//		hook, err := github.NewWebhook(secret, func(ctx context.Context, _ []github.ClosedEvent) {
//			m.CheckMerges(ctx)
//		})
//		if err != nil {
//			return nil, err
//		}
//		opts.Routes = map[string]http.Handler{"POST /webhooks/github": hook}
//		m, err = migratorsdk.New(spec, opts)
//		return m, err
//	}
//
// then the webhook's payload URL on GitHub is the Migrator's address +
// /webhooks/github. The merge checks the SDK runs every
// Options.MergeCheckEvery go on: they catch what a lost delivery missed.
type Webhook struct {
	secret   []byte
	onClosed func(ctx context.Context, events []ClosedEvent)
	// Timeout bounds each call of the callback; default 1 minute. Set it
	// before serving.
	Timeout time.Duration

	mu      sync.Mutex
	pending []ClosedEvent
	running bool
}

// NewWebhook returns the handler of deliveries signed with secret (the
// webhook's secret on GitHub; required) that calls onClosed with the pull
// requests closed.
func NewWebhook(secret string, onClosed func(ctx context.Context, events []ClosedEvent)) (*Webhook, error) {
	if secret == "" {
		return nil, errors.New("github: a webhook needs its secret, to check the deliveries' signatures")
	}
	if onClosed == nil {
		return nil, errors.New("github: a webhook needs a callback")
	}
	return &Webhook{secret: []byte(secret), onClosed: onClosed}, nil
}

// Sign is the X-Hub-Signature-256 header GitHub sends with body: "sha256="
// and the hex HMAC-SHA256 of the body with the secret.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (w *Webhook) valid(signature string, body []byte) bool {
	got, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return false
	}
	sum, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, w.secret)
	mac.Write(body)
	return hmac.Equal(sum, mac.Sum(nil))
}

func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, maxPayload))
	if err != nil {
		http.Error(rw, "payload too large", http.StatusRequestEntityTooLarge)
		return
	}
	if !w.valid(r.Header.Get("X-Hub-Signature-256"), body) {
		http.Error(rw, "missing or invalid X-Hub-Signature-256", http.StatusUnauthorized)
		return
	}
	payload := body
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			http.Error(rw, "bad form payload", http.StatusBadRequest)
			return
		}
		payload = []byte(form.Get("payload"))
	}
	switch event := r.Header.Get("X-GitHub-Event"); event {
	case "ping":
		_, _ = io.WriteString(rw, "pong\n")
	case "pull_request":
		parsed, err := gh.ParseWebHook(event, payload)
		if err != nil {
			http.Error(rw, "bad pull_request payload", http.StatusBadRequest)
			return
		}
		e := parsed.(*gh.PullRequestEvent)
		if e.GetAction() != "closed" {
			rw.WriteHeader(http.StatusNoContent)
			return
		}
		pr := e.GetPullRequest()
		w.enqueue(ClosedEvent{
			Delivery: r.Header.Get("X-GitHub-Delivery"), Repo: e.GetRepo().GetFullName(), Number: pr.GetNumber(),
			URL: pr.GetHTMLURL(), Branch: pr.GetHead().GetRef(), Merged: pr.GetMerged(),
		})
		rw.WriteHeader(http.StatusAccepted)
	default:
		rw.WriteHeader(http.StatusNoContent)
	}
}

func (w *Webhook) enqueue(e ClosedEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = append(w.pending, e)
	if !w.running {
		w.running = true
		go w.drain()
	}
}

func (w *Webhook) drain() {
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	for {
		w.mu.Lock()
		batch := w.pending
		w.pending = nil
		if len(batch) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		w.onClosed(ctx, batch)
		cancel()
	}
}
