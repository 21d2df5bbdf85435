package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Discovery is the part of an OpenID Provider's configuration
// (/.well-known/openid-configuration) that the console's sign-in and the
// JWT verifier use.
type Discovery struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	EndSessionEndpoint    string   `json:"end_session_endpoint"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
}

// Discover reads issuer's OpenID configuration and checks what the console's
// authorization-code flow with PKCE needs of it.
func Discover(ctx context.Context, client *http.Client, issuer string) (Discovery, error) {
	var d Discovery
	where := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
	if err != nil {
		return d, fmt.Errorf("oidc: issuer %q: %w", issuer, err)
	}
	req.Header.Set("Accept", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return d, fmt.Errorf("oidc: discovery: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return d, fmt.Errorf("oidc: discovery: GET %s: %s", where, res.Status)
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&d); err != nil {
		return d, fmt.Errorf("oidc: discovery: %s: %w", where, err)
	}
	// OpenID Connect Discovery 1.0, section 4.3: the issuer in the document
	// must be the one asked for, or tokens would be checked against another.
	if d.Issuer != issuer {
		return d, fmt.Errorf("oidc: discovery: %s names issuer %q, not %q (give -jwt-issuer exactly as the provider spells it)", where, d.Issuer, issuer)
	}
	for name, v := range map[string]string{"authorization_endpoint": d.AuthorizationEndpoint, "token_endpoint": d.TokenEndpoint, "jwks_uri": d.JWKSURI} {
		if err := checkEndpoint(v); err != nil {
			return d, fmt.Errorf("oidc: discovery: %s: %w", name, err)
		}
	}
	if d.EndSessionEndpoint != "" {
		if err := checkEndpoint(d.EndSessionEndpoint); err != nil {
			return d, fmt.Errorf("oidc: discovery: end_session_endpoint: %w", err)
		}
	}
	// Providers that list their methods must list S256; one that lists none
	// may still support it (the field is optional), so it is tried.
	if len(d.CodeChallengeMethods) > 0 && !slices.Contains(d.CodeChallengeMethods, "S256") {
		return d, fmt.Errorf("oidc: the provider does not support PKCE with S256 (it lists %v)", d.CodeChallengeMethods)
	}
	return d, nil
}

func checkEndpoint(v string) error {
	u, err := url.Parse(v)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", v)
	}
	return nil
}
