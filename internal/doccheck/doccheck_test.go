package doccheck

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The shell of the docs reads as sh reads it: continuations joined, quotes
// removed (JSON over several lines included), functions expanded, $(…)
// checked as commands of their own, here-documents given to their command,
// cd followed, comments and assignments dropped.
func TestCommands(t *testing.T) {
	md := "text\n\n```sh\n" +
		"export TOKEN=$(cat .loom/operator.token)   # a comment\n" +
		"loom() { grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" \"$@\"; }\n" +
		"loom -d '{\"a\": 1,\n  \"b\": \"'$X'\"}' \\\n  localhost:8080 loom.v1.RunService/GetRun &\n" +
		"X=$(loom -d '{}' localhost:8080 loom.v1.RunService/GetRun \\\n  | sed -n 's/x/y/p')\n" +
		"loom -d @ localhost:8080 loom.v1.RegistryService/Announce <<'JSON'\n{\"migration\": {}}\nJSON\n" +
		"(cd tools && go run ./testidp -addr :1) &\n" +
		"make test\n" +
		"```\n\n```go\nfmt.Println()\n```\n\n```console\n$ go doc ./server\noutput line\n```\n"
	cmds, problems := Commands("x.md", []byte(md))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	type got struct {
		line int
		args string
		dir  string
	}
	var all []got
	for _, c := range cmds {
		all = append(all, got{c.Line, strings.Join(c.Args, "|"), c.Dir})
	}
	want := []got{
		{4, "cat|.loom/operator.token", "."},
		{4, "export|TOKEN=$(cat .loom/operator.token)", "."},
		{6, "grpcurl|-plaintext|-H|authorization: Bearer $TOKEN|-d|{\"a\": 1,\n  \"b\": \"$X\"}|localhost:8080|loom.v1.RunService/GetRun", "."},
		{9, "grpcurl|-plaintext|-H|authorization: Bearer $TOKEN|-d|{}|localhost:8080|loom.v1.RunService/GetRun", "."},
		{10, "sed|-n|s/x/y/p", "."},
		{11, "grpcurl|-plaintext|-H|authorization: Bearer $TOKEN|-d|@|localhost:8080|loom.v1.RegistryService/Announce", "."},
		{14, "cd|tools", "."},
		{14, "go|run|./testidp|-addr|:1", "tools"},
		{15, "make|test", "."},
		{23, "go|doc|./server", "."},
	}
	if !reflect.DeepEqual(all, want) {
		t.Errorf("got\n%+v\nwant\n%+v", all, want)
	}
	if cmds[5].Stdin != "{\"migration\": {}}\n" || cmds[5].Via != "loom" {
		t.Errorf("here-document %q via %q", cmds[5].Stdin, cmds[5].Via)
	}
}

// The check can fail: each way a docs command goes stale is reported.
func TestCheckReportsWhatIsWrong(t *testing.T) {
	c := &Checker{Root: "../..", Programs: map[string]Program{
		"cmd/loom": {"serve": {"addr": false, "insecure-no-auth": true}, "tokens create": {"subject": false}},
	}}
	for _, tc := range []struct {
		name, cmd, want string // want "": no problem
	}{
		{"a good call", `grpcurl -plaintext -d '{"run_id": "r"}' localhost:8080 loom.v1.RunService/GetRun`, ""},
		{"JSON names too", `grpcurl -d '{"runId": "r"}' localhost:8080 loom.v1.RunService/GetRun`, ""},
		{"a renamed field", `grpcurl -plaintext -d '{"run": "r"}' localhost:8080 loom.v1.RunService/GetRun`, `unknown field "run"`},
		{"a wrong enum", `grpcurl -d '{"migration_id": "m", "status": "RUNNING"}' localhost:8080 loom.v1.DiscoveryService/ListCandidates`, `invalid value for enum`},
		{"bad JSON", `grpcurl -d '{"run_id": }' localhost:8080 loom.v1.RunService/GetRun`, "not JSON"},
		{"two messages to a unary method", `grpcurl -d '{} {}' localhost:8080 loom.v1.RunService/GetRun`, "2 messages"},
		{"an unknown method", `grpcurl -plaintext localhost:8080 loom.v1.RunService/StartRunNow`, "has no method StartRunNow"},
		{"an unknown service", `grpcurl -plaintext localhost:8080 loom.v1.RunsService/GetRun`, "no service loom.v1.RunsService"},
		{"an unknown grpcurl flag", `grpcurl -plain localhost:8080 loom.v1.RunService/GetRun`, "flag provided but not defined: -plain"},
		{"grpcurl flags after the address", `grpcurl localhost:8080 loom.v1.RunService/GetRun -d '{}'`, "flags first"},
		{"a stream nobody is told about", `grpcurl -d '{"run_id": "r"}' localhost:8080 loom.v1.RunService/WatchRun`, "streams until stopped"},
		{"a stream in the background", `grpcurl -d '{"run_id": "r"}' localhost:8080 loom.v1.RunService/WatchRun &`, ""},
		{"a stream under a comment saying so", "# Follow it live\ngrpcurl -d '{\"run_id\": \"r\"}' localhost:8080 loom.v1.RunService/WatchRun", ""},
		{"grpcurl list", `grpcurl -plaintext localhost:8080 list loom.v1.RunService`, ""},
		{"grpcurl list of nothing", `grpcurl -plaintext localhost:8080 list loom.v1.RunServices`, "no such symbol"},
		{"buf curl", `buf curl -H "Authorization: Bearer $T" -d '{"run_id": "r"}' http://localhost:8080/loom.v1.RunService/GetRun`, ""},
		{"buf curl, a renamed field", `buf curl --data '{"runid": "r"}' http://localhost:8080/loom.v1.RunService/GetRun`, `unknown field "runid"`},
		{"buf curl, an unknown flag", `buf curl --plaintext http://localhost:8080/loom.v1.RunService/GetRun`, "unknown flag --plaintext"},
		{"buf curl, an unknown method", `buf curl http://localhost:8080/loom.v1.RunService/Get`, "has no method Get"},
		{"buf curl --list-methods", `buf curl --list-methods http://localhost:8080`, ""},
		{"curl of a Connect method", `curl -s -H 'Content-Type: application/json' -d '{"run_id": "r"}' http://localhost:8080/loom.v1.RunService/GetRun`, ""},
		{"curl without the content type", `curl -s -d '{"run_id": "r"}' http://localhost:8080/loom.v1.RunService/GetRun`, "Content-Type"},
		{"curl of a stream", `curl -H 'Content-Type: application/json' -d '{"run_id": "r"}' localhost:8080/loom.v1.RunService/WatchRun &`, "curl speaks Connect's unary protocol only"},
		{"curl of an admin path", `curl -s localhost:8081/readyz`, ""},
		{"curl of a path nobody serves", `curl -s localhost:8081/health`, "serves no /health"},
		{"go run with a good flag", `go run ./cmd/loom serve -addr :8080 -insecure-no-auth`, ""},
		{"an unknown flag", `go run ./cmd/loom serve -adr :8080`, "loom serve: flag provided but not defined: -adr"},
		{"a flag without its value", `go run ./cmd/loom tokens create -subject`, "flag needs an argument: -subject"},
		{"an unknown subcommand", `go run ./cmd/loom tokens delete`, `no subcommand "tokens"`},
		{"stray arguments", `go run ./cmd/loom serve extra`, "takes no arguments"},
		{"the docs' elision", `go run ./cmd/loom serve -addr :8080 …`, ""},
		{"a binary", `loom serve -adr :1`, "flag provided but not defined: -adr"},
		{"flags read from source", `go run ./cmd/loom-bench -rollout -runs 10`, ""},
		{"go -C a module's tool", `go -C tools/chart tool helm lint ../../deploy/helm/loom`, ""},
		{"go -C a directory that is not there", `go -C tools/nothing test ./...`, "no directory tools/nothing"},
		{"go -C a tool its module lacks", `go -C tools/chart tool buf lint`, "tools/chart/go.mod has no tool buf"},
		{"an unknown flag read from source", `go run ./cmd/loom-bench -rollouts`, "flag provided but not defined: -rollouts"},
		{"a package that is not there", `go run ./cmd/loom-nothing`, "no package cmd/loom-nothing"},
		{"make", `make test check`, ""},
		{"an unknown make target", `make tests`, "has no target tests"},
		{"npm", `cd console && npm run build && npm test`, ""},
		{"an unknown npm script", `cd console && npm run bild`, `no script "bild"`},
		{"go test", `go test -race -run '^$' -bench . ./server/internal/store/`, ""},
		{"go test of nothing", `go test ./server/nothing/...`, "no package server/nothing"},
		{"go doc", `go doc github.com/loomhq/loom/migratorsdk.Migrator`, ""},
		{"go doc of nothing", `go doc github.com/loomhq/loom/migratorsdks`, "no package migratorsdks"},
		{"go tool buf", `go tool -modfile=tools/go.mod buf curl --list-methods http://localhost:8080`, ""},
		{"an unknown command", `terraform apply`, "terraform: a command nobody checks"},
		{"allowed", `git -C .loom/fleet/svc-01 merge loom/bump-go`, ""},
		{"cd nowhere", `cd nowhere`, "no directory nowhere"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := c.CheckMarkdown("x.md", []byte("```sh\n"+tc.cmd+"\n```\n"))
			var msgs []string
			for _, p := range problems {
				msgs = append(msgs, p.String())
			}
			got := strings.Join(msgs, "\n")
			switch {
			case tc.want == "" && got != "":
				t.Errorf("%s\nreported %s", tc.cmd, got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("%s\nreported %q, want %q", tc.cmd, got, tc.want)
			case tc.want != "" && !strings.HasPrefix(got, "x.md:2: "):
				t.Errorf("%s\nreported %q, without its line", tc.cmd, got)
			}
		})
	}
}

// Code spans of the prose that call what Loom has are checked too, a span
// broken over lines included; names in prose are not commands.
func TestInlineSpans(t *testing.T) {
	c := &Checker{Root: "../..", Programs: map[string]Program{"cmd/loom": {"serve": {"addr": false}}}}
	md := "Run `make tests`, then `go run ./cmd/loom\nserve -adr x` on the task queue `loom-runs`\n" +
		"(`go 1.26.8`, `grpcurl`, `go doc`, `loom`; `make check` and `loom serve -addr :1` are right).\n\n" +
		"```sh\nmake lint   # `make nothing` in a block's comment is no span\n```\n"
	_, problems := c.CheckMarkdown("x.md", []byte(md))
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	want := []string{
		"x.md:1: make: Makefile has no target tests",
		"x.md:1: go run ./cmd/loom serve: flag provided but not defined: -adr",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLinks(t *testing.T) {
	root := t.TempDir()
	write := func(name, body string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("docs/b.md", "# B\n\n## Run in production: `loom serve`\n\n## Trust — tokens, roles\n\n## Trust — tokens, roles\n")
	write("README.md", `See [b](docs/b.md#run-in-production-loom-serve), [trust](docs/b.md#trust--tokens-roles),
[again](docs/b.md#trust--tokens-roles-1), [the top](#top) and [code](cmd/).
[gone](docs/c.md), [no such heading](docs/b.md#trust), [a site](https://example.com/x#y).

# Top

`+"```sh\necho [not a link](nowhere.md)\n```\n")
	if err := os.MkdirAll(filepath.Join(root, "cmd"), 0o755); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range Links(root, "README.md") {
		got = append(got, p.String())
	}
	want := []string{
		"README.md:3: link docs/c.md: docs/c.md does not exist",
		"README.md:3: link docs/b.md#trust: docs/b.md has no heading #trust",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSections(t *testing.T) {
	got := Sections([]byte("# T\n\n## S\n\nintro\n\n### S.A\n\na text\n```\n### not a heading\n```\n### S.B\n\nb text\n\n## Other\n\nnot b's\n"))
	if len(got) != 2 || !strings.Contains(got["S.A"], "a text") || !strings.Contains(got["S.A"], "### not a heading") ||
		!strings.Contains(got["S.B"], "b text") || strings.Contains(got["S.B"], "not b's") {
		t.Fatalf("sections %q", got)
	}
}

// What flag.PrintDefaults prints reads back as the flags it lists.
func TestFlagsFromHelp(t *testing.T) {
	help := "Usage of loom serve:\n  -addr string\n    \taddress (default \"127.0.0.1:8080\")\n" +
		"  -console\n    \tserve the console (default true)\n  -x\tone letter\n  -rate-limit float\n    \tcalls\n"
	want := Flags{"addr": false, "console": true, "x": true, "rate-limit": false}
	if got := FlagsFromHelp(help); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
