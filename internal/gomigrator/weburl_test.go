package gomigrator

import "testing"

func TestWebURL(t *testing.T) {
	for api, want := range map[string]string{
		"":                                  "https://github.com/",
		"https://api.github.com/":           "https://github.com/",
		"https://ghe.example.com/api/v3/":   "https://ghe.example.com/",
		"https://ghe.example.com/api/v3":    "https://ghe.example.com/",
		"http://127.0.0.1:8080/api/v3/":     "http://127.0.0.1:8080/",
		"https://proxy.example.com/github/": "https://proxy.example.com/github/",
	} {
		if got := webURL(api); got != want {
			t.Errorf("webURL(%q) = %q, want %q", api, got, want)
		}
	}
}
