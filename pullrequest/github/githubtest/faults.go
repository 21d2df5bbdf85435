package githubtest

import (
	"net/http"
	"strconv"
)

// Fault is a failure the Server answers a request with, in place of its
// real answer (see Fail).
type Fault struct {
	// Status is the answer's status, with GitHub's error body. 0 closes
	// the connection without answering, as a connection reset does.
	Status int
	// Header is added to the answer: Retry-After, X-RateLimit-Remaining,
	// X-RateLimit-Reset for a rate limit.
	Header http.Header
	// Message is the error body's message; default the status's text.
	Message string
	// After serves the request first, with all its effects, and only then
	// answers with the fault: the request was done but its answer lost,
	// as when a proxy in front of GitHub times out.
	After bool
}

// Fail makes the next n requests to route (named as Requests names it,
// e.g. "POST /repos/{owner}/{repo}/pulls") answer f. Requests counts them
// like any other. A later Fail of the same route replaces this one; n 0
// clears it.
func (s *Server) Fail(route string, n int, f Fault) {
	s.mu.Lock()
	defer s.unlock()
	if n <= 0 {
		delete(s.faults, route)
		return
	}
	s.faults[route] = &pendingFault{Fault: f, left: n}
}

type pendingFault struct {
	Fault
	left int
}

// fault takes one of the route's pending faults (under the lock).
func (s *Server) fault(route string) (Fault, bool) {
	p := s.faults[route]
	if p == nil {
		return Fault{}, false
	}
	p.left--
	if p.left == 0 {
		delete(s.faults, route)
	}
	return p.Fault, true
}

func (f Fault) answer(w http.ResponseWriter) {
	if f.Status == 0 {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // closes the connection too, without a log line
	}
	for k, vs := range f.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	msg := f.Message
	if msg == "" {
		msg = http.StatusText(f.Status)
	}
	reply(w, f.Status, map[string]any{"message": msg, "documentation_url": docs, "status": strconv.Itoa(f.Status)})
}

// discard takes the real answer of a request whose answer is lost.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}
