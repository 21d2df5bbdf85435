package githubtest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/loomhq/loom/pullrequest/github/githubtest"
)

func call(t *testing.T, fake *githubtest.Server, method, path, body string) (*http.Response, string, error) {
	t.Helper()
	req, _ := http.NewRequest(method, fake.URL()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+fake.Token())
	// A connection of its own: Go's client would send a GET again by itself
	// when a reused connection is closed on it.
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

func TestFail(t *testing.T) {
	fake := githubtest.New(t)
	if err := fake.CreateRepo("acme/svc", map[string]string{"README.md": "# svc\n"}); err != nil {
		t.Fatal(err)
	}
	const get = "GET /repos/{owner}/{repo}"
	fake.Fail(get, 2, githubtest.Fault{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"7"}}})
	for i := range 2 {
		resp, body, err := call(t, fake, "GET", "repos/acme/svc", "")
		if err != nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || !strings.Contains(body, `"message":"Too Many Requests"`) {
			t.Fatalf("request %d: %v %v %s", i+1, resp, err, body)
		}
	}
	if resp, _, err := call(t, fake, "GET", "repos/acme/svc", ""); err != nil || resp.StatusCode != 200 {
		t.Fatalf("third request: %v %v", resp, err)
	}
	if n := fake.Requests(get); n != 3 {
		t.Fatalf("Requests counted %d, want 3", n)
	}

	// A closed connection.
	fake.Fail(get, 1, githubtest.Fault{})
	if _, _, err := call(t, fake, "GET", "repos/acme/svc", ""); err == nil {
		t.Fatal("the connection was not closed")
	}

	// The answer lost after the pull request was created.
	if _, err := fake.Push("acme/svc", "feature", map[string]*string{"a.txt": new("a\n")}, "a"); err != nil {
		t.Fatal(err)
	}
	fake.Fail("POST /repos/{owner}/{repo}/pulls", 1, githubtest.Fault{Status: http.StatusBadGateway, Message: "Server Error", After: true})
	resp, body, err := call(t, fake, "POST", "repos/acme/svc/pulls", `{"title":"A","head":"feature","base":"main"}`)
	if err != nil || resp.StatusCode != 502 || !strings.Contains(body, "Server Error") {
		t.Fatalf("create: %v %v %s", resp, err, body)
	}
	if pulls := fake.Pulls("acme/svc"); len(pulls) != 1 || pulls[0].Head != "feature" {
		t.Fatalf("pull requests %+v", pulls)
	}

	// Cleared.
	fake.Fail(get, 5, githubtest.Fault{Status: 503})
	fake.Fail(get, 0, githubtest.Fault{})
	if resp, _, err := call(t, fake, "GET", "repos/acme/svc", ""); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after clearing: %v %v", resp, err)
	}
}
