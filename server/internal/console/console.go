// Package console serves Loom's browser console: the static assets that
// `npm run build` in console/ writes into dist/ (committed, like gen/, so the
// Go binary needs no Node to build). The console talks to the server only
// through the Connect API.
package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"html"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
)

//go:embed all:dist
var dist embed.FS

// OIDC is what the console needs to sign people in at an OpenID Provider
// with the authorization-code flow and PKCE. It is published in index.html
// (a meta tag: the page must know it before anyone is signed in, and the
// Content-Security-Policy forbids inline scripts).
type OIDC struct {
	Issuer                string   `json:"issuer"`
	ClientID              string   `json:"clientId"`
	AuthorizationEndpoint string   `json:"authorizationEndpoint"`
	TokenEndpoint         string   `json:"tokenEndpoint"`
	EndSessionEndpoint    string   `json:"endSessionEndpoint,omitempty"`
	Scopes                []string `json:"scopes"`
	UseIDToken            bool     `json:"useIdToken,omitempty"`
}

// Options configure the console.
type Options struct {
	// OIDC, when set, offers sign-in at the provider besides a pasted token.
	OIDC *OIDC
}

// Handler serves the console: a file of dist/ by its path, and index.html
// for every other GET, so that client-side routes (/m/go-upgrade/c/...) can
// be linked and reloaded. It answers only GET and HEAD: the API is POST (and
// Connect GETs carry ?connect=v1), so an unknown procedure still gets a 404
// from here, never a page of HTML.
func Handler(o Options) http.Handler {
	root, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded at build time: it exists.
	}
	index, err := fs.ReadFile(root, "index.html")
	if err != nil {
		panic("console: dist/index.html is missing: run `npm run build` in console/")
	}
	// The console loads nothing from elsewhere and is never framed.
	// Inline styles are allowed for the style attributes React sets; the
	// browser exchanges a sign-in code at the provider's token endpoint.
	connect := "'self'"
	if o.OIDC != nil {
		meta, err := json.Marshal(o.OIDC)
		if err != nil {
			panic(err) // strings and a bool always marshal
		}
		tag := `<meta name="loom-oidc" content="` + html.EscapeString(string(meta)) + `" />`
		index = bytes.Replace(index, []byte("</head>"), []byte(tag+"</head>"), 1)
		if u, err := url.Parse(o.OIDC.TokenEndpoint); err == nil && u.Host != "" {
			connect += " " + u.Scheme + "://" + u.Host
		}
	}
	csp := "default-src 'self'; connect-src " + connect + "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
	files := http.FileServerFS(root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method != http.MethodGet && r.Method != http.MethodHead) || r.URL.Query().Has("connect") {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", csp)
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if name != "" && name != "index.html" {
			if st, err := fs.Stat(root, name); err == nil && !st.IsDir() {
				if strings.HasPrefix(name, "assets/") {
					// Vite names every asset by its content hash.
					h.Set("Cache-Control", "public, max-age=31536000, immutable")
				}
				files.ServeHTTP(w, r)
				return
			}
			if strings.HasPrefix(name, "assets/") {
				http.NotFound(w, r)
				return
			}
		}
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Type", "text/html; charset=utf-8")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(index)
	})
}
