package dispatch

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// protocolError says a Migrator answered with something that is no
// MigratorService answer: an HTML page, a proxy's refusal, a 404 from
// another service. Retrying cannot help (the migrator_url is wrong, or
// something in front of the Migrator refuses Loom): the step fails at once.
type protocolError struct {
	status      int
	contentType string
	body        string
}

func (e *protocolError) Error() string {
	msg := fmt.Sprintf("answered HTTP %d with %q, not a MigratorService answer", e.status, e.contentType)
	if e.body != "" {
		msg += ": " + e.body
	}
	return msg + " (check the Migration's migrator_url and what stands in front of the Migrator)"
}

// connectOnly refuses answers that are not MigratorService's: a Connect
// answer is application/proto or application/json (errors are JSON), and a
// gRPC one application/grpc. Server errors (5xx), timeouts (408) and rate
// limits (429) pass, whatever their form: they are worth a retry.
type connectOnly struct {
	base http.RoundTripper
}

func (c connectOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := c.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode >= 500 || res.StatusCode == http.StatusRequestTimeout || res.StatusCode == http.StatusTooManyRequests {
		return res, nil
	}
	ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	switch {
	case ct == "application/proto" || ct == "application/json" || strings.HasPrefix(ct, "application/grpc") || strings.HasPrefix(ct, "application/connect+"):
		return res, nil
	}
	b, _ := io.ReadAll(io.LimitReader(res.Body, 200))
	_ = res.Body.Close()
	return nil, &protocolError{status: res.StatusCode, contentType: res.Header.Get("Content-Type"), body: strings.TrimSpace(string(b))}
}
