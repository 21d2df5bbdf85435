package github_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loomhq/loom/pullrequest"
	"github.com/loomhq/loom/pullrequest/github"
)

// events collects the webhook's callbacks.
type events struct {
	mu    sync.Mutex
	calls [][]github.ClosedEvent
	got   chan struct{}
}

func newEvents() *events { return &events{got: make(chan struct{}, 100)} }

func (e *events) onClosed(_ context.Context, batch []github.ClosedEvent) {
	e.mu.Lock()
	e.calls = append(e.calls, batch)
	e.mu.Unlock()
	e.got <- struct{}{}
}

// wait waits for n events in all and returns them.
func (e *events) wait(t *testing.T, n int) []github.ClosedEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		e.mu.Lock()
		var all []github.ClosedEvent
		for _, c := range e.calls {
			all = append(all, c...)
		}
		e.mu.Unlock()
		if len(all) >= n {
			return all
		}
		select {
		case <-e.got:
		case <-deadline:
			t.Fatalf("%d events after 10 s, want %d", len(all), n)
		}
	}
}

const closedPayload = `{"action":"closed","number":7,"pull_request":{"number":7,"html_url":"https://github.com/acme/svc/pull/7","state":"closed","merged":true,"head":{"ref":"loom/edit","sha":"abc"}},"repository":{"full_name":"acme/svc"},"sender":{"login":"octocat"}}`

func TestWebhookChecksSignatures(t *testing.T) {
	ev := newEvents()
	hook, err := github.NewWebhook("s3cret", ev.onClosed)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	post := func(event, contentType, body, signature string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", "d-1")
		if signature != "" {
			req.Header.Set("X-Hub-Signature-256", signature)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const js = "application/json"
	for name, sig := range map[string]string{
		"no signature":           "",
		"another secret's":       github.Sign("other", []byte(closedPayload)),
		"another body's":         github.Sign("s3cret", []byte(closedPayload+" ")),
		"sha1 only":              "sha1=0123456789abcdef0123456789abcdef01234567",
		"not hex":                "sha256=zz",
		"the signature, mangled": strings.ToUpper(github.Sign("s3cret", []byte(closedPayload))),
	} {
		if code := post("pull_request", js, closedPayload, sig); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	if code := post("ping", js, `{"zen":"Design for failure."}`, github.Sign("s3cret", []byte(`{"zen":"Design for failure."}`))); code != http.StatusOK {
		t.Errorf("ping: %d", code)
	}
	opened := strings.Replace(closedPayload, `"closed"`, `"opened"`, 1)
	if code := post("pull_request", js, opened, github.Sign("s3cret", []byte(opened))); code != http.StatusNoContent {
		t.Errorf("opened: %d", code)
	}
	if code := post("push", js, `{}`, github.Sign("s3cret", []byte(`{}`))); code != http.StatusNoContent {
		t.Errorf("push: %d", code)
	}
	if code := post("pull_request", js, `{`, github.Sign("s3cret", []byte(`{`))); code != http.StatusBadRequest {
		t.Errorf("bad JSON: %d", code)
	}
	if code := post("pull_request", js, closedPayload, github.Sign("s3cret", []byte(closedPayload))); code != http.StatusAccepted {
		t.Fatalf("closed: %d", code)
	}
	// Form-encoded deliveries are signed as sent.
	form := "payload=" + url.QueryEscape(strings.Replace(closedPayload, `"merged":true`, `"merged":false`, 1))
	if code := post("pull_request", "application/x-www-form-urlencoded", form, github.Sign("s3cret", []byte(form))); code != http.StatusAccepted {
		t.Fatalf("closed, form-encoded: %d", code)
	}
	got := ev.wait(t, 2)
	want := github.ClosedEvent{Delivery: "d-1", Repo: "acme/svc", Number: 7, URL: "https://github.com/acme/svc/pull/7", Branch: "loom/edit", Merged: true}
	if len(got) != 2 || got[0] != want || got[1].Merged {
		t.Fatalf("events %+v", got)
	}
	if resp, err := http.Get(srv.URL); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %v %v", resp, err)
	}
	if _, err := github.NewWebhook("", ev.onClosed); err == nil {
		t.Fatal("a webhook without secret")
	}
}

// A burst of deliveries makes few calls, none lost.
func TestWebhookCoalescesBursts(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var calls, total int
	hook, err := github.NewWebhook("s", func(_ context.Context, batch []github.ClosedEvent) {
		<-release
		mu.Lock()
		calls++
		total += len(batch)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(closedPayload))
		req.Header.Set("X-GitHub-Event", "pull_request")
		req.Header.Set("X-Hub-Signature-256", github.Sign("s", []byte(closedPayload)))
		rec := httptest.NewRecorder()
		hook.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("delivery: %d", rec.Code)
		}
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		c, n := calls, total
		mu.Unlock()
		if n == 20 {
			if c > 2 {
				t.Fatalf("%d calls for a burst of 20", c)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 20 events reached the callback", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The fake's deliveries pass the webhook's checks: merging and closing on
// the fake reach the callback.
func TestTheFakesDeliveriesReachTheWebhook(t *testing.T) {
	ctx := context.Background()
	fake, host := newFake(t)
	ev := newEvents()
	hook, err := github.NewWebhook("s3cret", ev.onClosed)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	if err := fake.AddWebhook(srv.URL, "s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := fake.AddWebhook(srv.URL, "wrong"); err == nil {
		t.Fatal("a ping signed with another secret was accepted")
	}
	a, err := host.Publish(ctx, pullrequest.Change{Repo: "acme/svc", Branch: "loom/a", Title: "a", Files: map[string]*string{"a": str("a")}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := host.Publish(ctx, pullrequest.Change{Repo: "acme/svc", Branch: "loom/b", Title: "b", Files: map[string]*string{"b": str("b")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.MergePull("acme/svc", a.Number); err != nil {
		t.Fatal(err)
	}
	if err := fake.ClosePull("acme/svc", b.Number); err != nil {
		t.Fatal(err)
	}
	got := ev.wait(t, 2)
	if len(got) != 2 || got[0].URL != a.URL || !got[0].Merged || got[0].Branch != "loom/a" || got[0].Repo != "acme/svc" ||
		got[1].URL != b.URL || got[1].Merged || got[0].Delivery == "" {
		t.Fatalf("events %+v", got)
	}
	// Each delivery went to both webhooks; the one with the wrong secret refused them.
	var ok, refused int
	for _, d := range fake.Deliveries() {
		switch {
		case d.Event == "pull_request" && d.StatusCode == http.StatusAccepted:
			ok++
		case d.Event == "pull_request" && d.StatusCode == http.StatusUnauthorized:
			refused++
		}
	}
	if ok != 2 || refused != 2 {
		t.Fatalf("deliveries %+v", fake.Deliveries())
	}
}
