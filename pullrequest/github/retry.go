package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// RetryPolicy says how the Host retries a call to GitHub that failed for a
// passing reason: no answer (a refused or reset connection, an attempt that
// timed out), 500, 502, 503, 504, 429, or a 403 that is a rate limit (with
// Retry-After, or X-RateLimit-Remaining: 0 and X-RateLimit-Reset). Other
// answers (401, 404, 409, 422, ...) are final. The zero value is the
// default policy.
type RetryPolicy struct {
	// Off makes every call once: its failure is the step's at once.
	Off bool
	// Budget bounds the time one call may take over its attempts and
	// waits, from its first attempt; default 1 minute. A wait that would
	// end past it, or past the context's deadline, is not made: the call
	// fails then, saying how many attempts were made and the last answer.
	Budget time.Duration
	// FirstDelay is the wait before the second attempt, doubled before
	// each next one up to MaxDelay; each wait is drawn between half and
	// all of it, so that many Migrators do not retry in step. Defaults
	// 500 ms and 30 s. When GitHub says how long to wait (Retry-After,
	// X-RateLimit-Reset), that is the wait.
	FirstDelay, MaxDelay time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Budget <= 0 {
		p.Budget = time.Minute
	}
	if p.FirstDelay <= 0 {
		p.FirstDelay = 500 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 30 * time.Second
	}
	if p.MaxDelay < p.FirstDelay {
		p.MaxDelay = p.FirstDelay
	}
	return p
}

// delay is the wait after the n-th attempt (n ≥ 1), with jitter.
func (p RetryPolicy) delay(n int) time.Duration {
	d := p.FirstDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	return d/2 + rand.N(d/2+1)
}

type repeatableKey struct{}

// repeatable marks the writes made with ctx as safe to send again after
// an attempt whose answer never came or was a 5xx: the request may have
// been done, and doing it again must come to the same. Without the mark a
// write (POST, PATCH, PUT, DELETE) is sent again only when it provably
// never reached GitHub (the connection was refused), or on a 429 or
// rate-limit 403, which GitHub answers without doing anything. Reads are
// always safe.
//
// The mark is per call, next to the code that makes it safe, rather than
// by retrying whole operations such as Publish: a retry then repeats one
// request, not a dozen, and each write says why it may.
func repeatable(ctx context.Context) context.Context {
	return context.WithValue(ctx, repeatableKey{}, true)
}

// retryTransport sends a request again while it fails for a passing
// reason, as its RetryPolicy says. It is the innermost transport, so that
// the installation token exchange is retried like any other call.
type retryTransport struct {
	next   http.RoundTripper
	policy RetryPolicy // with its defaults
	// attempt bounds one attempt, answer's body included (0: no bound).
	attempt time.Duration
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	start := time.Now()
	end := start.Add(t.policy.Budget)
	if d, ok := ctx.Deadline(); ok && d.Before(end) {
		end = d
	}
	read := req.Method == http.MethodGet || req.Method == http.MethodHead
	safe := read || ctx.Value(repeatableKey{}) != nil
	// A body that cannot be read again cannot be sent again.
	resendable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	for n := 1; ; n++ {
		r := req
		if n > 1 {
			r = req.Clone(ctx)
			if req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r.Body = body
			}
		}
		resp, cancel, err := t.once(r)
		transient, hint, reached := classify(resp, err)
		if !transient || !resendable || (reached && !safe) {
			if err != nil {
				cancel()
				return nil, err
			}
			resp.Body = cancelOnClose{resp.Body, cancel}
			return resp, nil
		}
		last := describe(resp, err) // reads and closes resp's body
		cancel()
		wait := hint
		if wait <= 0 {
			wait = t.policy.delay(n)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().Add(wait).After(end) {
			limit := fmt.Sprintf("the %s retry budget", t.policy.Budget)
			if d, ok := ctx.Deadline(); ok && end.Equal(d) {
				limit = "the context's deadline"
			}
			why := fmt.Sprintf("a wait of %s would end past %s", wait.Round(time.Millisecond), limit)
			if hint > 0 {
				why = fmt.Sprintf("GitHub asked to wait %s, past %s", hint.Round(time.Second), limit)
			}
			return nil, &retryError{attempts: n, elapsed: time.Since(start), why: why, last: last, err: err}
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// once makes one attempt, bounded by t.attempt; cancel ends it once its
// answer is read.
func (t *retryTransport) once(r *http.Request) (*http.Response, context.CancelFunc, error) {
	if t.attempt <= 0 {
		resp, err := t.next.RoundTrip(r)
		return resp, func() {}, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), t.attempt)
	resp, err := t.next.RoundTrip(r.WithContext(ctx))
	if err != nil && r.Context().Err() == nil && ctx.Err() != nil {
		err = attemptTimeout(t.attempt)
	}
	return resp, cancel, err
}

// attemptTimeout is an attempt that had no answer within its bound.
type attemptTimeout time.Duration

func (d attemptTimeout) Error() string {
	return fmt.Sprintf("no answer within %s", time.Duration(d))
}

// classify says whether an attempt failed for a passing reason, how long
// GitHub asked to wait before the next (0: not said), and whether the
// request may have reached GitHub and been done.
func classify(resp *http.Response, err error) (transient bool, wait time.Duration, reached bool) {
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return true, 0, false
		}
		var ne net.Error
		var timeout attemptTimeout
		transient = errors.As(err, &timeout) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
		return transient, 0, true
	}
	wait = retryAfter(resp.Header)
	switch resp.StatusCode {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, wait, true
	case http.StatusTooManyRequests:
		// A rate limit is refused before anything is done.
		return true, wait, false
	case http.StatusForbidden:
		if resp.Header.Get("Retry-After") != "" || (resp.Header.Get("X-RateLimit-Remaining") == "0" && resp.Header.Get("X-RateLimit-Reset") != "") {
			return true, wait, false
		}
	}
	return false, 0, true
}

// retryAfter is the wait GitHub asks for: Retry-After (seconds or a date),
// else, when the rate limit is spent, until X-RateLimit-Reset.
func retryAfter(h http.Header) time.Duration {
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.Atoi(v); err == nil {
			return time.Duration(s) * time.Second
		}
		if at, err := http.ParseTime(v); err == nil {
			return time.Until(at)
		}
	}
	if h.Get("X-RateLimit-Remaining") == "0" {
		if s, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return time.Until(time.Unix(s, 0))
		}
	}
	return 0
}

// describe is a failed attempt's outcome for the final error: the status
// and GitHub's message, or the error.
func describe(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct{ Message string }
	if json.Unmarshal(b, &body) == nil && body.Message != "" {
		return resp.Status + ": " + body.Message
	}
	return resp.Status
}

// retryError is a call that failed for a passing reason every time it was
// tried.
type retryError struct {
	attempts int
	elapsed  time.Duration
	why      string
	last     string
	err      error // the last attempt's, when it had no answer
}

func (e *retryError) Error() string {
	tries := "attempts"
	if e.attempts == 1 {
		tries = "attempt"
	}
	return fmt.Sprintf("gave up after %d %s in %s (%s): last %s", e.attempts, tries, e.elapsed.Round(time.Millisecond), e.why, e.last)
}

func (e *retryError) Unwrap() error { return e.err }

// cancelOnClose ends an attempt's context once its answer is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
