package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/loomhq/loom/server"
)

// The console is served at / beside the API, and -console=false
// (Config.NoConsole) takes it away without touching the API.
func TestTheConsoleIsServedBesideTheAPIUnlessTurnedOff(t *testing.T) {
	w := newWorld(t)
	on := w.startLoom()
	if code, body := get(t, on.url+"/m/go-upgrade/c/acme/billing"); code != http.StatusOK || !strings.Contains(body, `<div id="root">`) {
		t.Fatalf("console: %d %.80s", code, body)
	}
	on.setup(t, w.migrator.url, "acme/billing")
	on.stop()

	w.configure = func(c *server.Config) { c.NoConsole = true }
	off := w.startLoom()
	if code, _ := get(t, off.url+"/"); code != http.StatusNotFound {
		t.Fatalf("console turned off: / answers %d", code)
	}
	if c := off.candidate(t, "acme/billing"); c.GetId() != "acme/billing" {
		t.Fatalf("the API without the console: %v", c)
	}
}
