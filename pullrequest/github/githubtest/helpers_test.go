package githubtest_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/loomhq/loom/pullrequest/github/githubtest"
)

func mustGet(t *testing.T, fake *githubtest.Server, path string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fake.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+fake.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}
