package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server/auth"
)

// session.go serves SessionService and authenticates calls by the session
// cookie: one sign-in per browser, kept by the server, that no script of
// the page can read (see auth.Sessions).

// SessionServer implements loomv1connect.SessionServiceHandler.
type SessionServer struct {
	// Sessions is nil when callers are not authenticated.
	Sessions *auth.Sessions
	Log      *slog.Logger
}

var _ loomv1connect.SessionServiceHandler = (*SessionServer)(nil)

// sessionProcedures are served without a credential: CreateSession takes
// its token in the request, DeleteSession checks the cookie itself (and
// only clears the cookies without one).
var sessionProcedures = map[string]bool{
	loomv1connect.SessionServiceCreateSessionProcedure: true,
	loomv1connect.SessionServiceDeleteSessionProcedure: true,
}

func (s *SessionServer) CreateSession(ctx context.Context, req *connect.Request[loomv1.CreateSessionRequest]) (*connect.Response[loomv1.CreateSessionResponse], error) {
	if s.Sessions == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			errors.New("this Loom authenticates nobody (-insecure-no-auth): there is no session to start"))
	}
	// A page of another site must not sign the browser in as someone else.
	if err := checkSameOrigin(ctx, req.Header()); err != nil {
		return nil, err
	}
	id, sess, err := s.Sessions.Create(ctx, req.Msg.GetToken())
	switch {
	case errors.Is(err, auth.ErrNoRole):
		return nil, connect.NewError(connect.CodePermissionDenied, err)
	case errors.Is(err, auth.ErrUnknownToken), errors.Is(err, auth.ErrNoToken):
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("invalid or unknown token"))
	case err != nil:
		return nil, err // Redis unreachable: unavailable, nothing made
	}
	res := connect.NewResponse(&loomv1.CreateSessionResponse{
		Subject:    sess.Principal.Subject,
		Role:       string(sess.Principal.Role),
		CsrfToken:  sess.CSRF,
		ExpireTime: timestamppb.New(sess.Expires),
	})
	secure := secureCookies(ctx)
	maxAge := int(sess.Expires.Sub(sess.Created).Seconds())
	for _, c := range []*http.Cookie{
		{Name: cookieName(auth.SessionCookie, secure), Value: id, HttpOnly: true},
		// Readable by the page's scripts, on purpose: every tab sends it
		// back in the CSRF header, which no other site can.
		{Name: cookieName(auth.CSRFCookie, secure), Value: sess.CSRF},
	} {
		c.Path, c.Secure, c.SameSite, c.MaxAge = "/", secure, http.SameSiteStrictMode, maxAge
		res.Header().Add("Set-Cookie", c.String())
	}
	if s.Log != nil {
		s.Log.InfoContext(ctx, "session started", "subject", sess.Principal.Subject, "role", string(sess.Principal.Role),
			"expires", sess.Expires)
	}
	return res, nil
}

func (s *SessionServer) DeleteSession(ctx context.Context, req *connect.Request[loomv1.DeleteSessionRequest]) (*connect.Response[loomv1.DeleteSessionResponse], error) {
	secure := secureCookies(ctx)
	if id := sessionID(req.Header(), secure); id != "" && s.Sessions != nil {
		sess, err := sessionOf(ctx, s.Sessions, req.Header(), id)
		var cerr *connect.Error
		switch {
		case errors.As(err, &cerr) && cerr.Code() == connect.CodeUnauthenticated:
			// Already ended: only the cookies are left to clear.
		case err != nil:
			return nil, err
		default:
			if err := s.Sessions.Delete(ctx, id); err != nil {
				return nil, err
			}
			if s.Log != nil {
				s.Log.InfoContext(ctx, "session ended", "subject", sess.Principal.Subject)
			}
		}
	}
	res := connect.NewResponse(&loomv1.DeleteSessionResponse{})
	for _, name := range []string{auth.SessionCookie, auth.CSRFCookie} {
		c := &http.Cookie{Name: cookieName(name, secure), Value: "", Path: "/", MaxAge: -1, Secure: secure,
			HttpOnly: name == auth.SessionCookie, SameSite: http.SameSiteStrictMode}
		res.Header().Add("Set-Cookie", c.String())
	}
	return res, nil
}

// sessionOf returns the session a call made with the session cookie id acts
// in, once the call is shown to come from Loom's own pages: same origin,
// and the session's CSRF token in its header.
func sessionOf(ctx context.Context, sessions *auth.Sessions, h http.Header, id string) (auth.Session, error) {
	if err := checkSameOrigin(ctx, h); err != nil {
		return auth.Session{}, err
	}
	sess, err := sessions.Lookup(ctx, id)
	switch {
	case errors.Is(err, auth.ErrNoSession):
		return sess, connect.NewError(connect.CodeUnauthenticated, err)
	case err != nil:
		// Redis unreachable: unavailable (mapped by errorInterceptor),
		// never unauthenticated, so a browser is not signed out by it.
		return sess, err
	}
	if err := sess.CheckCSRF(h.Get(auth.CSRFHeader)); err != nil {
		return sess, connect.NewError(connect.CodePermissionDenied, err)
	}
	return sess, nil
}

// requestInfo is what a Connect handler cannot see of its HTTP request: the
// host it was sent to and whether it came over TLS.
type requestInfo struct {
	host string
	tls  bool
}

type requestInfoKey struct{}

// withRequestInfo keeps each request's requestInfo in its context.
func withRequestInfo(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), requestInfoKey{}, requestInfo{host: r.Host, tls: r.TLS != nil})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func requestInfoOf(ctx context.Context) requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(requestInfo)
	return info
}

// secureCookies says whether the session's cookies are Secure (and named
// with the __Host- prefix): always, but for plain http to a loopback host
// (`loom dev`), where a browser would drop a Secure cookie set over http
// elsewhere than on localhost. Behind a proxy that ends TLS the request
// arrives over http with the public host name: Secure, as the browser
// talks https.
func secureCookies(ctx context.Context) bool {
	info := requestInfoOf(ctx)
	return info.tls || !loopbackHost(info.host)
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func cookieName(name string, secure bool) string {
	if secure {
		return auth.SecureCookiePrefix + name
	}
	return name
}

// sessionID is the session cookie of a call, by the name a call over this
// connection is given (a __Host- cookie over https only).
func sessionID(h http.Header, secure bool) string {
	want := cookieName(auth.SessionCookie, secure)
	for _, c := range (&http.Request{Header: h}).Cookies() {
		if c.Name == want {
			return c.Value
		}
	}
	return ""
}

// checkSameOrigin refuses a call from a page of another origin: the cookie
// authenticates Loom's own pages only. Browsers send Origin with every
// POST and Sec-Fetch-Site with every request; a client that sends neither
// is no browser (and has no cookie but one it was given). Origins allowed
// by -cors-origins still call with bearer tokens.
func checkSameOrigin(ctx context.Context, h http.Header) error {
	info := requestInfoOf(ctx)
	if site := h.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf(
			"the session cookie authenticates calls from Loom's own pages only (Sec-Fetch-Site: %s): send a bearer token", site))
	}
	if origin := h.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host != info.host || (info.tls && u.Scheme != "https") {
			return connect.NewError(connect.CodePermissionDenied, fmt.Errorf(
				"the session cookie authenticates calls from Loom's own pages only, not from %s: send a bearer token", origin))
		}
	}
	return nil
}
