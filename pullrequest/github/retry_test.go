package github_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/pullrequest"
	"github.com/loomhq/loom/pullrequest/github"
	"github.com/loomhq/loom/pullrequest/github/githubtest"
)

const (
	routeRepo     = "GET /repos/{owner}/{repo}"
	routeContents = "GET /repos/{owner}/{repo}/contents/{path...}"
	routeTrees    = "POST /repos/{owner}/{repo}/git/trees"
	routeBlobs    = "POST /repos/{owner}/{repo}/git/blobs"
	routeGetRef   = "GET /repos/{owner}/{repo}/git/ref/{ref...}"
	routeNewRef   = "POST /repos/{owner}/{repo}/git/refs"
	routeMoveRef  = "PATCH /repos/{owner}/{repo}/git/refs/{ref...}"
)

// retrying is a Host on fake that retries fast: waits of a few ms.
func retrying(t *testing.T, fake *githubtest.Server, budget time.Duration) *github.Host {
	t.Helper()
	host, err := github.New(github.Options{BaseURL: fake.URL(), Token: fake.Token(),
		Retry: github.RetryPolicy{Budget: budget, FirstDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return host
}

func newRetryFake(t *testing.T) *githubtest.Server {
	t.Helper()
	fake := githubtest.New(t)
	if err := fake.CreateRepo("acme/svc", map[string]string{"README.md": "# svc\n"}); err != nil {
		t.Fatal(err)
	}
	return fake
}

func fault(status int) githubtest.Fault { return githubtest.Fault{Status: status} }

func readmeChange() pullrequest.Change {
	return pullrequest.Change{Repo: "acme/svc", Branch: "loom/edit", Title: "Edit", Files: map[string]*string{
		"README.md": str("# svc\n\nMigrated.\n"), "new.txt": str("new\n")}}
}

func TestRetryThroughServerErrors(t *testing.T) {
	ctx := context.Background()
	fake := newRetryFake(t)
	host := retrying(t, fake, 5*time.Second)

	// Reads.
	fake.Fail(routeRepo, 2, fault(http.StatusBadGateway))
	fake.Fail(routeContents, 1, fault(http.StatusServiceUnavailable))
	if got, ok, err := host.Read(ctx, "acme/svc", "README.md"); err != nil || !ok || got != "# svc\n" {
		t.Fatalf("read %q %v %v", got, ok, err)
	}
	if a, b := fake.Requests(routeRepo), fake.Requests(routeContents); a != 3 || b != 2 {
		t.Fatalf("requests: repository %d (want 3), contents %d (want 2)", a, b)
	}

	// Writes: refused, reset, and done with the answer lost.
	fake.Fail(routeGetRef, 1, fault(http.StatusInternalServerError))
	fake.Fail(routeBlobs, 1, githubtest.Fault{After: true}) // created, then the connection closed
	fake.Fail(routeTrees, 2, fault(http.StatusBadGateway))
	fake.Fail(routeCommits, 1, githubtest.Fault{Status: http.StatusGatewayTimeout, After: true})
	fake.Fail(routeNewRef, 1, githubtest.Fault{Status: http.StatusBadGateway, After: true})
	fake.Fail(routeEdit, 1, fault(http.StatusBadGateway))
	pr, err := host.Publish(ctx, readmeChange())
	if err != nil {
		t.Fatal(err)
	}
	if head, _ := fake.Branch("acme/svc", "loom/edit"); head != pr.Commit {
		t.Fatalf("branch at %s, published %s", head, pr.Commit)
	}
	if got, _ := fake.File("acme/svc", "loom/edit", "README.md"); got != "# svc\n\nMigrated.\n" {
		t.Fatalf("README.md on the branch: %q", got)
	}
	if pulls := fake.Pulls("acme/svc"); len(pulls) != 1 || pulls[0].HeadSHA != pr.Commit || pr.Number != 1 {
		t.Fatalf("pull requests %+v, published %+v", pulls, pr)
	}
	// The branch created, its answer lost: created again, refused as
	// existing, moved to the same commit.
	for route, want := range map[string]int{routeTrees: 3, routeCommits: 2, routeNewRef: 2, routeMoveRef: 1, routeBlobs: 3} {
		if n := fake.Requests(route); n != want {
			t.Errorf("%s: %d requests, want %d", route, n, want)
		}
	}

	// An edit of the pull request through a 502.
	c := readmeChange()
	c.Title = "Edit, retitled"
	if _, err := host.Publish(ctx, c); err != nil {
		t.Fatal(err)
	}
	if pulls := fake.Pulls("acme/svc"); len(pulls) != 1 || pulls[0].Title != "Edit, retitled" || fake.Requests(routeEdit) != 2 {
		t.Fatalf("pull requests %+v after %d edits", pulls, fake.Requests(routeEdit))
	}
}

// GitHub opened the pull request but its answer was lost: the retry is
// refused ("A pull request already exists"), and Publish finds the one
// opened.
func TestRetryLostPullRequestAnswerOpensOne(t *testing.T) {
	fake := newRetryFake(t)
	host := retrying(t, fake, 5*time.Second)
	fake.Fail(routePulls, 1, githubtest.Fault{Status: http.StatusBadGateway, After: true})
	pr, err := host.Publish(context.Background(), readmeChange())
	if err != nil {
		t.Fatal(err)
	}
	pulls := fake.Pulls("acme/svc")
	if len(pulls) != 1 || pulls[0].Number != pr.Number || pulls[0].URL != pr.URL || pulls[0].State != "open" {
		t.Fatalf("pull requests %+v, published %+v", pulls, pr)
	}
	if n := fake.Requests(routePulls); n != 2 {
		t.Fatalf("%d creates, want 2 (the lost one, the refused one)", n)
	}
}

func TestRetryHonoursRateLimits(t *testing.T) {
	ctx := context.Background()
	fake := newRetryFake(t)
	host := retrying(t, fake, 5*time.Second)

	// A secondary rate limit: Retry-After in seconds.
	fake.Fail(routeRepo, 1, githubtest.Fault{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"1"}}})
	start := time.Now()
	if _, _, err := host.Read(ctx, "acme/svc", "README.md"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second || took > 2*time.Second {
		t.Fatalf("took %s, Retry-After asked 1s", took)
	}

	// The primary one spent: a 403 with the reset time.
	reset := time.Now().Truncate(time.Second).Add(time.Second)
	fake.Fail(routeContents, 1, githubtest.Fault{Status: http.StatusForbidden, Message: "API rate limit exceeded", Header: http.Header{
		"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {strconv.FormatInt(reset.Unix(), 10)}}})
	if _, _, err := host.Read(ctx, "acme/svc", "README.md"); err != nil {
		t.Fatal(err)
	}
	if now := time.Now(); now.Before(reset) || now.After(reset.Add(time.Second)) {
		t.Fatalf("retried at %s, the limit reset at %s", now, reset)
	}

	// A wait past the budget is not made: the call fails at once.
	fake.Fail(routeContents, 1, githubtest.Fault{Status: http.StatusTooManyRequests, Message: "You have exceeded a secondary rate limit",
		Header: http.Header{"Retry-After": {"120"}}})
	start = time.Now()
	_, _, err := host.Read(ctx, "acme/svc", "README.md")
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("read: %v after %s", err, time.Since(start))
	}
	for _, want := range []string{"gave up after 1 attempt ", "GitHub asked to wait 2m0s, past the 5s retry budget", "429 Too Many Requests: You have exceeded a secondary rate limit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestRetryNotForFinalAnswers(t *testing.T) {
	ctx := context.Background()
	fake := newRetryFake(t)
	host := retrying(t, fake, 5*time.Second)

	fake.Fail(routeContents, 1, fault(http.StatusNotFound))
	if _, ok, err := host.Read(ctx, "acme/svc", "README.md"); err != nil || ok {
		t.Fatalf("read through a 404: %v %v", ok, err)
	}
	fake.Fail(routeContents, 1, githubtest.Fault{Status: http.StatusForbidden, Message: "Resource not accessible by integration"})
	if _, _, err := host.Read(ctx, "acme/svc", "README.md"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("read through a 403 that is no rate limit: %v", err)
	}
	fake.Fail(routeContents, 1, fault(http.StatusUnauthorized))
	if _, _, err := host.Read(ctx, "acme/svc", "README.md"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("read through a 401: %v", err)
	}
	if n := fake.Requests(routeContents); n != 3 {
		t.Fatalf("%d reads, want 3: one each", n)
	}

	fake.Fail(routePulls, 1, githubtest.Fault{Status: http.StatusUnprocessableEntity, Message: "Validation Failed"})
	if _, err := host.Publish(ctx, readmeChange()); err == nil || !strings.Contains(err.Error(), "422") {
		t.Fatalf("publish through a 422: %v", err)
	}
	if n := fake.Requests(routePulls); n != 1 {
		t.Fatalf("%d creates, want 1", n)
	}
}

func TestRetryEnds(t *testing.T) {
	fake := newRetryFake(t)

	// At the budget, saying how often and what GitHub said last.
	fake.Fail(routeRepo, 1000, githubtest.Fault{Status: http.StatusBadGateway, Message: "Server Error"})
	host, err := github.New(github.Options{BaseURL: fake.URL(), Token: fake.Token(),
		Retry: github.RetryPolicy{Budget: 200 * time.Millisecond, FirstDelay: 10 * time.Millisecond, MaxDelay: 40 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err = host.Read(context.Background(), "acme/svc", "README.md")
	took := time.Since(start)
	n := fake.Requests(routeRepo)
	if err == nil || took > 400*time.Millisecond || n < 4 {
		t.Fatalf("read: %v after %s and %d attempts", err, took, n)
	}
	for _, want := range []string{"gave up after " + strconv.Itoa(n) + " attempts", "past the 200ms retry budget", "last 502 Bad Gateway: Server Error"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// At the context's deadline, sooner than the budget.
	slow := retryingSlow(t, fake, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, _, err = slow.Read(ctx, "acme/svc", "README.md")
	// Under load the deadline may come during an attempt rather than
	// before a wait: then the context's error is the answer.
	if err == nil || !(strings.Contains(err.Error(), "past the context's deadline") || errors.Is(err, context.DeadlineExceeded)) ||
		time.Since(start) > 400*time.Millisecond {
		t.Fatalf("read: %v after %s", err, time.Since(start))
	}

	// At once when the context is cancelled.
	slow = retryingSlow(t, fake, 10*time.Second)
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	_, _, err = slow.Read(ctx, "acme/svc", "README.md")
	if !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Fatalf("read: %v after %s", err, time.Since(start))
	}

	// Not at all when off.
	fake.Fail(routeRepo, 1, fault(http.StatusBadGateway))
	off, err := github.New(github.Options{BaseURL: fake.URL(), Token: fake.Token(), Retry: github.RetryPolicy{Off: true}})
	if err != nil {
		t.Fatal(err)
	}
	before := fake.Requests(routeRepo)
	if _, _, err := off.Read(context.Background(), "acme/svc", "README.md"); err == nil || strings.Contains(err.Error(), "gave up") {
		t.Fatalf("read: %v", err)
	}
	if n := fake.Requests(routeRepo) - before; n != 1 {
		t.Fatalf("%d attempts with retries off", n)
	}
}

// retryingSlow waits firstDelay before its second attempt and has a
// minute's budget.
func retryingSlow(t *testing.T, fake *githubtest.Server, firstDelay time.Duration) *github.Host {
	t.Helper()
	host, err := github.New(github.Options{BaseURL: fake.URL(), Token: fake.Token(), Retry: github.RetryPolicy{FirstDelay: firstDelay}})
	if err != nil {
		t.Fatal(err)
	}
	return host
}

// No server at all: the connection is refused every time, and every
// request, a write too, is tried again.
func TestRetryConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	host, err := github.New(github.Options{BaseURL: "http://" + addr + "/api/v3/", Token: "t",
		Retry: github.RetryPolicy{Budget: 100 * time.Millisecond, FirstDelay: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = host.Read(context.Background(), "acme/svc", "README.md")
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "gave up after") {
		t.Fatalf("read: %v", err)
	}
}
