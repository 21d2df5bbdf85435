package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/loomhq/loom/internal/doccheck"
)

// TestMain checks, once the tests have run, that every refusal they saw
// Loom answer is documented: each (RPC, reason) pair a test provoked must be
// named in that RPC's section of docs/api.md (generated from the RPC's
// comment in proto/). A new refusal, or one moved to another RPC, fails
// here until the .proto says so.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if missing := undocumentedRefusals(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "refusals the tests saw that docs/api.md does not list under their RPC "+
				"(write them in the RPC's comment in proto/, then make generate):\n  %s\n", strings.Join(missing, "\n  "))
			code = 1
		}
	}
	os.Exit(code)
}

// seenRefusals holds "Service.Method reason" for every refusal with a
// reason a Loom of these tests answered.
var seenRefusals sync.Map

// recordRefusals passes records at or above Warn to next, and reads the
// api package's "rpc refused" debug records into seenRefusals.
type recordRefusals struct{ next slog.Handler }

func (h recordRefusals) Enabled(ctx context.Context, l slog.Level) bool {
	return l == slog.LevelDebug || h.next.Enabled(ctx, l)
}

func (h recordRefusals) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "rpc refused" {
		var procedure, reason string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "procedure":
				procedure = a.Value.String()
			case "reason":
				reason = a.Value.String()
			}
			return true
		})
		if reason != "" {
			seenRefusals.Store(rpcName(procedure)+" "+reason, true)
		}
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h recordRefusals) WithAttrs(as []slog.Attr) slog.Handler {
	return recordRefusals{h.next.WithAttrs(as)}
}

func (h recordRefusals) WithGroup(g string) slog.Handler { return recordRefusals{h.next.WithGroup(g)} }

// rpcName turns "/loom.v1.RunService/StartRun" into "RunService.StartRun",
// the heading of its section in docs/api.md.
func rpcName(procedure string) string {
	parts := strings.Split(strings.TrimPrefix(procedure, "/"), "/")
	if len(parts) != 2 {
		return procedure
	}
	svc := parts[0][strings.LastIndex(parts[0], ".")+1:]
	return svc + "." + parts[1]
}

func undocumentedRefusals() []string {
	b, err := os.ReadFile("../docs/api.md")
	if err != nil {
		return []string{err.Error()}
	}
	// An RPC's section is the one under its "### Service.Method" heading.
	sections := doccheck.Sections(b)
	var missing []string
	seenRefusals.Range(func(k, _ any) bool {
		rpc, reason, _ := strings.Cut(k.(string), " ")
		section, ok := sections[rpc]
		if !ok || !regexp.MustCompile(`\b`+reason+`\b`).MatchString(section) {
			missing = append(missing, rpc+": "+reason)
		}
		return true
	})
	sort.Strings(missing)
	return missing
}

func TestRpcNameIsTheHeadingOfItsSection(t *testing.T) {
	if got := rpcName("/loom.v1.RunService/StartRun"); got != "RunService.StartRun" {
		t.Fatalf("got %q", got)
	}
	b, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\n### RunService.StartRun\n") {
		t.Fatal("docs/api.md has no section RunService.StartRun: the check of documented refusals reads nothing")
	}
}
