package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"

	"github.com/loomhq/loom/server/auth"
)

// Policy says which Migrator URLs Loom may call. It is checked when a
// Migration is announced and again on every connection, against the address
// actually dialled, so a host name that later resolves elsewhere (DNS
// rebinding) gains nothing.
//
// Refused unless allowed explicitly: loopback, link-local (which holds the
// cloud metadata address 169.254.169.254), other cloud metadata addresses,
// unspecified and multicast addresses.
type Policy struct {
	// Schemes allowed; default http and https.
	Schemes []string
	// Hosts, when not empty, are the only host names allowed; "*.example"
	// allows every name under example.
	Hosts []string
	// AllowNets are networks allowed even when refused by default, e.g.
	// 127.0.0.0/8 for Migrators on the same machine.
	AllowNets []*net.IPNet
}

// ErrRefusedAddress says a Migrator URL or address is not allowed.
var ErrRefusedAddress = errors.New("migrator address refused")

// metadataAddrs are cloud metadata endpoints outside the link-local range.
var metadataAddrs = []net.IP{
	net.ParseIP("fd00:ec2::254"),   // AWS, IPv6
	net.ParseIP("100.100.100.200"), // Alibaba Cloud
	net.ParseIP("168.63.129.16"),   // Azure platform
}

// CheckIP reports whether the policy allows calling ip.
func (p *Policy) CheckIP(ip net.IP) error {
	for _, n := range p.AllowNets {
		if n.Contains(ip) {
			return nil
		}
	}
	why := ""
	switch {
	case ip.IsLoopback():
		why = "a loopback address"
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast():
		why = "a link-local address (where cloud metadata lives)"
	case ip.IsUnspecified():
		why = "an unspecified address"
	case ip.IsMulticast():
		why = "a multicast address"
	case slices.ContainsFunc(metadataAddrs, ip.Equal):
		why = "a cloud metadata address"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s is %s; allow its network explicitly to call it", ErrRefusedAddress, ip, why)
}

func (p *Policy) checkScheme(u *url.URL) error {
	schemes := p.Schemes
	if len(schemes) == 0 {
		schemes = []string{"http", "https"}
	}
	if !slices.Contains(schemes, u.Scheme) {
		return fmt.Errorf("%w: scheme %q is not one of %s", ErrRefusedAddress, u.Scheme, strings.Join(schemes, ", "))
	}
	return nil
}

func (p *Policy) checkHostName(host string) error {
	if len(p.Hosts) == 0 || net.ParseIP(host) != nil {
		return nil
	}
	for _, h := range p.Hosts {
		if suffix, ok := strings.CutPrefix(h, "*."); ok && strings.HasSuffix(host, "."+suffix) || h == host {
			return nil
		}
	}
	return fmt.Errorf("%w: host %q is not in the allowed hosts", ErrRefusedAddress, host)
}

// CheckURL checks a Migrator URL when it is announced: scheme, host name,
// and every address the host resolves to now. A host that does not resolve
// yet is accepted here; the dial-time check still applies.
func (p *Policy) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefusedAddress, err)
	}
	if err := p.checkScheme(u); err != nil {
		return err
	}
	host := u.Hostname()
	if err := p.checkHostName(host); err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip != nil {
		return p.CheckIP(ip)
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if err := p.CheckIP(a.IP); err != nil {
			return fmt.Errorf("%s resolves to %s: %w", host, a.IP, err)
		}
	}
	return nil
}

// control runs for every connection the dispatcher opens, on the address
// about to be dialled (after name resolution).
func (p *Policy) control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("%w: %q is not an IP address", ErrRefusedAddress, host)
	}
	return p.CheckIP(ip)
}

// guard checks a request's scheme and host name before it is sent.
type guard struct {
	base   http.RoundTripper
	policy *Policy
	signer *auth.Signer
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if g.policy != nil {
		if err := g.policy.checkScheme(req.URL); err != nil {
			return nil, err
		}
		if err := g.policy.checkHostName(req.URL.Hostname()); err != nil {
			return nil, err
		}
	}
	if g.signer == nil {
		return g.base.RoundTrip(req)
	}
	// Sign the exact bytes sent: read the body, sign, send a copy.
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		_ = req.Body.Close()
	}
	signed := req.Clone(req.Context())
	signed.Body = io.NopCloser(bytes.NewReader(body))
	signed.ContentLength = int64(len(body))
	signed.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	g.signer.Sign(signed, body)
	return g.base.RoundTrip(signed)
}
