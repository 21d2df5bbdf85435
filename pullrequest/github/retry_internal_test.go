package github

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loomhq/loom/pullrequest/github/githubtest"
)

// The Host marks all its writes repeatable; a write without the mark is
// sent again only when GitHub cannot have done it.
func TestRetryUnmarkedWrite(t *testing.T) {
	fake := githubtest.New(t)
	if err := fake.CreateRepo("acme/svc", map[string]string{"README.md": "# svc\n"}); err != nil {
		t.Fatal(err)
	}
	const route = "POST /repos/{owner}/{repo}/git/blobs"
	client := &http.Client{Transport: &retryTransport{next: http.DefaultTransport,
		policy: RetryPolicy{Budget: 5 * time.Second, FirstDelay: time.Millisecond}.withDefaults()}}
	post := func(ctx context.Context) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fake.URL()+"repos/acme/svc/git/blobs", strings.NewReader(`{"content":"x","encoding":"utf-8"}`))
		req.Header.Set("Authorization", "Bearer "+fake.Token())
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for _, c := range []struct {
		fault    githubtest.Fault
		status   int // 0: an error
		attempts int
	}{
		{githubtest.Fault{}, 0, 1},                                     // reset: it may have been done
		{githubtest.Fault{Status: http.StatusBadGateway}, 502, 1},      // likewise
		{githubtest.Fault{Status: http.StatusTooManyRequests}, 201, 2}, // refused before anything was done
		{githubtest.Fault{Status: http.StatusForbidden, Header: http.Header{"Retry-After": {"0"}}}, 201, 2},
	} {
		before := fake.Requests(route)
		fake.Fail(route, 1, c.fault)
		status, err := post(context.Background())
		if status != c.status || (err == nil) != (c.status != 0) || fake.Requests(route)-before != c.attempts {
			t.Errorf("fault %+v: %d %v after %d attempts; want %d after %d", c.fault, status, err, fake.Requests(route)-before, c.status, c.attempts)
		}
		fake.Fail(route, 0, githubtest.Fault{})
	}

	// Marked, a reset write is sent again.
	before := fake.Requests(route)
	fake.Fail(route, 1, githubtest.Fault{After: true})
	if status, err := post(repeatable(context.Background())); status != 201 || err != nil || fake.Requests(route)-before != 2 {
		t.Errorf("marked: %d %v after %d attempts", status, err, fake.Requests(route)-before)
	}
}

// An attempt that gets no answer in time is abandoned and tried again.
func TestRetryAttemptTimeout(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	client := &http.Client{Transport: &retryTransport{next: http.DefaultTransport, attempt: 50 * time.Millisecond,
		policy: RetryPolicy{Budget: 5 * time.Second, FirstDelay: time.Millisecond}.withDefaults()}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" || calls.Load() != 2 {
		t.Fatalf("%q %v after %d attempts", b, err, calls.Load())
	}
}
