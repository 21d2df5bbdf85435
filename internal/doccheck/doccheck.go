// Package doccheck checks the shell commands of Loom's documentation against
// the real thing: every command of every fenced shell block of README.md and
// docs/*.md is either checked or on an explicit allowlist, and a command
// nobody classified is a problem. Code spans of the prose that call what
// Loom has (`make bench`, `go run ./cmd/loom-dev -h`, `loom reconcile`) are
// checked the same way.
//
//   - grpcurl, buf curl and curl calls of the API: the method exists in the
//     registered descriptors, its -d JSON reads into the method's request
//     (protojson), the tool has the flags used, curl calls only unary methods,
//     a call of a method that streams its answers is run in the background
//     or comes under a comment saying it follows; curl of another path: one
//     the admin server serves (server/admin.go)
//   - go run ./cmd/X …, and binaries (loom serve …): the package is a
//     command, its subcommand exists and it defines every flag used
//   - make X: the Makefile has target X; npm run X: package.json has script X
//   - go test, go vet, go build, go doc: the packages exist in the repository
//   - anything else: its name is in Allowed
//
// Shell functions of a file (loom() { grpcurl … "$@"; }) are expanded where
// they are called. The test of cmd/loom-dev runs it over the docs, with the
// flags of loom-dev and of loom's subcommands.
package doccheck

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	_ "github.com/loomhq/loom/gen/loom/v1" // the API's descriptors
)

// A Problem is a docs command that does not match the real thing.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

// Flags are the flags of a command: name → whether it is a boolean flag
// (which takes no value).
type Flags map[string]bool

// A Program is the flags of a command, by subcommand: "" for a command
// without subcommands, "tokens create" for `loom tokens create`.
type Program map[string]Flags

// Allowed are the commands checked by name only: tools of the machine,
// whose arguments say nothing about Loom.
var Allowed = map[string]bool{
	"cat": true, "echo": true, "export": true, "sed": true,
	"git":          true,
	"redis-server": true, "redis-cli": true,
	// A private PostgreSQL for Temporal, in the cluster test's recipe.
	"initdb": true, "postgres": true,
	// Shipping the image and the chart: the chart's values are checked by
	// tools/chart's test, the image by tools/image's.
	"docker": true, "crane": true, "kubectl": true, "helm": true,
}

// A Checker checks the commands of Markdown files of the repository at Root.
type Checker struct {
	Root string
	// Programs are the commands whose flags are not all defined by calls
	// of the flag package in their main package (a subcommand's FlagSet
	// built by a helper), by directory relative to Root: "cmd/loom". The
	// flags of the others are read from their source.
	Programs map[string]Program
	// Files are the API's descriptors; nil: protoregistry.GlobalFiles.
	Files *protoregistry.Files

	mu      sync.Mutex
	fromSrc map[string]Program
}

// CheckFile checks the commands of one Markdown file; name is how problems
// name it.
func (c *Checker) CheckFile(name string) ([]Command, []Problem) {
	src, err := os.ReadFile(filepath.Join(c.Root, filepath.FromSlash(name)))
	if err != nil {
		return nil, []Problem{{File: name, Msg: err.Error()}}
	}
	return c.CheckMarkdown(name, src)
}

// CheckMarkdown checks the commands of the shell blocks of a Markdown file,
// and those of its code spans that call what Loom has.
func (c *Checker) CheckMarkdown(name string, src []byte) ([]Command, []Problem) {
	cmds, problems := Commands(name, src)
	cmds = append(cmds, InlineCommands(name, src, c.inlineCommand)...)
	for _, cmd := range cmds {
		for _, msg := range c.Check(cmd) {
			problems = append(problems, Problem{File: cmd.File, Line: cmd.Line, Msg: msg})
		}
	}
	return cmds, problems
}

// Check returns what is wrong with one command.
func (c *Checker) Check(cmd Command) []string {
	var r report
	name := cmd.Args[0]
	switch {
	case name == "grpcurl":
		c.grpcurl(&r, cmd)
	case name == "buf":
		c.buf(&r, cmd, cmd.Args[1:])
	case name == "curl":
		c.curl(&r, cmd)
	case name == "go":
		c.goCommand(&r, cmd)
	case name == "make":
		c.make(&r, cmd)
	case name == "npm":
		c.npm(&r, cmd)
	case name == "cd":
		if len(cmd.Args) != 2 || !c.isDir(path.Join(cmd.Dir, cmd.Args[1])) {
			r.add("cd: no directory %s in the repository", path.Join(cmd.Dir, strings.Join(cmd.Args[1:], " ")))
		}
	case c.binary(name) != "":
		c.program(&r, c.binary(name), name, cmd.Args[1:])
	case Allowed[name]:
	default:
		r.add("%s: a command nobody checks; check it in internal/doccheck or add it to doccheck.Allowed", name)
	}
	if cmd.Via != "" {
		for i := range r {
			r[i] = "(through " + cmd.Via + ") " + r[i]
		}
	}
	return r
}

// inlineCommand reports whether a code span's command is an invocation to
// check, rather than a name in prose (`grpcurl`, `go 1.26.8`, `loom-runs`):
// go run, go test, go vet, go build or go doc of something; make of a
// target; loom, or another command of cmd/, with a subcommand or flags.
func (c *Checker) inlineCommand(cmd Command) bool {
	a := cmd.Args
	switch {
	case a[0] == "go":
		return len(a) >= 3 && (a[1] == "run" || a[1] == "test" || a[1] == "vet" || a[1] == "build" || a[1] == "doc")
	case a[0] == "make":
		return len(a) >= 2
	default:
		return len(a) >= 2 && c.binary(a[0]) != ""
	}
}

type report []string

func (r *report) add(format string, args ...any) { *r = append(*r, fmt.Sprintf(format, args...)) }

func (c *Checker) files() *protoregistry.Files {
	if c.Files != nil {
		return c.Files
	}
	return protoregistry.GlobalFiles
}

func (c *Checker) abs(rel string) string { return filepath.Join(c.Root, filepath.FromSlash(rel)) }

func (c *Checker) isDir(rel string) bool {
	fi, err := os.Stat(c.abs(rel))
	return err == nil && fi.IsDir()
}

// binary is the directory of the command a built binary of that name comes
// from (cmd/NAME), or "".
func (c *Checker) binary(name string) string {
	if strings.ContainsAny(name, "/.$") {
		return ""
	}
	if dir := "cmd/" + name; c.isDir(dir) {
		return dir
	}
	return ""
}

// --- flags -----------------------------------------------------------------

// parseFlags parses args the way the flag package does, with the flags of
// spec, and returns the positional arguments. A last argument "…" is the
// docs' elision.
func parseFlags(spec Flags, args []string) ([]string, error) {
	if n := len(args); n > 0 && (args[n-1] == "…" || args[n-1] == "...") {
		args = args[:n-1]
	}
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for name, isBool := range spec {
		if isBool {
			fs.Bool(name, false, "")
		} else {
			fs.String(name, "", "")
		}
	}
	if err := fs.Parse(args); err != nil && !errors.Is(err, flag.ErrHelp) {
		return nil, err
	}
	return fs.Args(), nil
}

// program checks a call of the command in dir (relative to Root): its
// subcommand exists, and defines every flag used.
func (c *Checker) program(r *report, dir, name string, args []string) {
	prog, ok := c.Programs[dir]
	if !ok {
		var err error
		if prog, err = c.flagsFromSource(dir); err != nil {
			r.add("%s: %v", name, err)
			return
		}
	}
	sub, best := "", -1
	for s := range prog {
		words := strings.Fields(s)
		if len(words) > best && len(words) <= len(args) && strings.Join(args[:len(words)], " ") == s {
			sub, best = s, len(words)
		}
	}
	if best < 0 {
		var subs []string
		for s := range prog {
			subs = append(subs, s)
		}
		sort.Strings(subs)
		r.add("%s: no subcommand %q (it has %s)", name, strings.Join(args[:min(1, len(args))], " "), strings.Join(subs, ", "))
		return
	}
	args = args[best:]
	label := strings.TrimSpace(name + " " + sub)
	rest, err := parseFlags(prog[sub], args)
	if err != nil {
		r.add("%s: %v", label, err)
		return
	}
	if len(rest) > 0 {
		r.add("%s: takes no arguments, given %q", label, rest)
	}
}

// FlagsFromHelp reads the flags of a command from what its -h printed:
// flag.PrintDefaults's lines, "  -name type" for a flag that takes a value
// and "  -name" for a boolean one. It is for a command a test cannot call
// in its own process (loom, from loom-dev's test). A boolean flag whose
// help names its value in backquotes would read as taking one: loom's do
// not.
func FlagsFromHelp(help string) Flags {
	flags := Flags{}
	for _, l := range strings.Split(help, "\n") {
		rest, ok := strings.CutPrefix(l, "  -")
		if !ok {
			continue
		}
		rest, _, _ = strings.Cut(rest, "\t") // a one-letter flag's help
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		flags[f[0]] = len(f) == 1
	}
	return flags
}

var (
	flagValueFuncs = map[string]bool{"String": true, "Int": true, "Int64": true, "Uint": true, "Uint64": true, "Float64": true, "Duration": true, "Func": true}
	flagVarFuncs   = map[string]bool{"StringVar": true, "IntVar": true, "Int64Var": true, "UintVar": true, "Uint64Var": true, "Float64Var": true, "DurationVar": true, "TextVar": true, "Var": true}
)

// flagsFromSource reads the flags a main package defines with the flag
// package (flag.String("name", …), fs.BoolVar(&v, "name", …)): enough for
// a command without subcommands whose flags are all defined in its package.
func (c *Checker) flagsFromSource(dir string) (Program, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.fromSrc[dir]; ok {
		return p, nil
	}
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, c.abs(dir), func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil || pkgs["main"] == nil {
		return nil, fmt.Errorf("%s is not a command of the repository", dir)
	}
	flags := Flags{}
	for _, f := range pkgs["main"].Files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			m, nameArg := sel.Sel.Name, -1
			switch {
			case (flagValueFuncs[m] || m == "Bool" || m == "BoolFunc") && len(call.Args) >= 3:
				nameArg = 0
			case (flagVarFuncs[m] || m == "BoolVar") && len(call.Args) >= 3:
				nameArg = 1
			}
			if nameArg < 0 {
				return true
			}
			lit, ok := call.Args[nameArg].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if name, err := strconv.Unquote(lit.Value); err == nil {
				flags[name] = m == "Bool" || m == "BoolVar" || m == "BoolFunc"
			}
			return true
		})
	}
	if c.fromSrc == nil {
		c.fromSrc = map[string]Program{}
	}
	p := Program{"": flags}
	c.fromSrc[dir] = p
	return p, nil
}

// --- the API ---------------------------------------------------------------

// method finds a method named pkg.Service/Method (or pkg.Service.Method).
func (c *Checker) method(name string) (protoreflect.MethodDescriptor, error) {
	svc, m, ok := strings.Cut(name, "/")
	if !ok {
		i := strings.LastIndexByte(name, '.')
		if i < 0 {
			return nil, fmt.Errorf("%q is not a method name (package.Service/Method)", name)
		}
		svc, m = name[:i], name[i+1:]
	}
	d, err := c.files().FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, fmt.Errorf("no service %s", svc)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(m))
	if md == nil {
		return nil, fmt.Errorf("service %s has no method %s", svc, m)
	}
	return md, nil
}

// request checks the request data of a call: JSON messages of the method's
// input type, one unless the method streams its requests.
func (c *Checker) request(md protoreflect.MethodDescriptor, data string) error {
	dec := json.NewDecoder(strings.NewReader(data))
	n := 0
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("not JSON: %v", err)
		}
		n++
		var msg proto.Message
		if mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName()); err == nil && c.Files == nil {
			msg = mt.New().Interface()
		} else {
			msg = dynamicpb.NewMessage(md.Input())
		}
		if err := protojson.Unmarshal(raw, msg); err != nil {
			return fmt.Errorf("not a %s: %v", md.Input().FullName(), err)
		}
	}
	if n > 1 && !md.IsStreamingClient() {
		return fmt.Errorf("%d messages for a method that takes one", n)
	}
	return nil
}

// call checks a call of a method with its request data; stdin is the
// command's here-document, for data "@" or "@-".
func (c *Checker) call(r *report, tool, method string, data *string, cmd Command) protoreflect.MethodDescriptor {
	md, err := c.method(method)
	if err != nil {
		r.add("%s: %v", tool, err)
		return nil
	}
	if md.IsStreamingServer() && !cmd.Background && !saysItFollows.MatchString(cmd.Comment) {
		r.add("%s: %s streams until stopped: run it in the background (&), or say so in a comment above it (live, follow, watch)", tool, method)
	}
	if data == nil {
		return md
	}
	body := *data
	switch {
	case body == "@" || body == "@-":
		if !cmd.HasStdin {
			return md // piped: nothing to read here
		}
		body = cmd.Stdin
	case strings.HasPrefix(body, "@"):
		return md // a file
	}
	if err := c.request(md, body); err != nil {
		r.add("%s: %s: -d: %v", tool, method, err)
	}
	return md
}

// saysItFollows matches a comment that tells the reader a call goes on.
var saysItFollows = regexp.MustCompile(`(?i)\b(live|follow|watch)`)

// grpcurlFlags are grpcurl's (v1.9), the boolean ones true.
var grpcurlFlags = Flags{
	"help": true, "version": true, "plaintext": true, "insecure": true, "cacert": false, "cert": false, "key": false,
	"protoset": false, "protoset-out": false, "proto": false, "proto-out-dir": false, "import-path": false,
	"H": false, "rpc-header": false, "reflect-header": false, "expand-headers": true, "authority": false,
	"user-agent": false, "d": false, "format": false, "allow-unknown-fields": true, "connect-timeout": false,
	"format-error": true, "keepalive-time": false, "max-time": false, "max-msg-sz": false, "emit-defaults": true,
	"msg-template": true, "v": true, "vv": true, "servername": false, "unix": true, "alts": true,
	"alts-handshaker-service": false, "alts-target-service-account": false, "use-reflection": true,
}

func (c *Checker) grpcurl(r *report, cmd Command) {
	// grpcurl parses its flags with the flag package: they come before the address.
	var data *string
	for i := 1; i < len(cmd.Args); i++ {
		a := cmd.Args[i]
		if a == "-d" || a == "--d" {
			if i+1 < len(cmd.Args) {
				data = &cmd.Args[i+1]
			}
		} else if v, ok := strings.CutPrefix(a, "-d="); ok {
			data = &v
		}
		if !strings.HasPrefix(a, "-") {
			break
		}
		if n := strings.TrimLeft(a, "-"); !strings.Contains(n, "=") && !grpcurlFlags[n] {
			i++ // its value
		}
	}
	pos, err := parseFlags(grpcurlFlags, cmd.Args[1:])
	if err != nil {
		r.add("grpcurl: %v", err)
		return
	}
	switch {
	case len(pos) == 0:
		r.add("grpcurl: no address")
	case len(pos) >= 2 && (pos[1] == "list" || pos[1] == "describe"):
		if len(pos) > 3 {
			r.add("grpcurl: too many arguments: %q", pos)
		} else if len(pos) == 3 {
			if _, err := c.files().FindDescriptorByName(protoreflect.FullName(strings.Replace(pos[2], "/", ".", 1))); err != nil {
				r.add("grpcurl: %s %s: no such symbol", pos[1], pos[2])
			}
		}
	case len(pos) == 2:
		c.call(r, "grpcurl", pos[1], data, cmd)
	default:
		r.add("grpcurl: want [flags] address method (flags first), got %q", pos)
	}
}

// bufCurlFlags are buf curl's, by long name (shorthands below), the boolean
// ones true.
var (
	bufCurlFlags = Flags{
		"schema": false, "reflect": true, "reflect-header": false, "reflect-protocol": false,
		"header": false, "data": false, "output": false, "protocol": false, "http2-prior-knowledge": true,
		"user-agent": false, "timeout": false, "connect-timeout": false, "keepalive-time": false, "no-keepalive": true,
		"unix-socket": false, "insecure": true, "cacert": false, "cert": false, "key": false, "servername": false,
		"verbose": true, "emit-defaults": true, "list-services": true, "list-methods": true, "netrc": true,
		"netrc-file": false, "help": true, "debug": true, "log-format": false, "timeout-seconds": false,
	}
	bufCurlShort = map[string]string{"H": "header", "d": "data", "o": "output", "A": "user-agent", "k": "insecure", "E": "cert", "v": "verbose", "n": "netrc", "h": "help"}
)

// bufCommands are the buf commands docs may use besides curl.
var bufCommands = map[string]bool{"generate": true, "lint": true, "breaking": true, "format": true, "build": true, "dep": true}

func (c *Checker) buf(r *report, cmd Command, args []string) {
	if len(args) == 0 {
		r.add("buf: no command")
		return
	}
	if args[0] != "curl" {
		if !bufCommands[args[0]] {
			r.add("buf %s: a buf command nobody checks", args[0])
		}
		return
	}
	// pflag: --name, --name=value, -X value
	var (
		pos  []string
		data *string
		set  = map[string]bool{}
	)
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") {
			long, ok := bufCurlShort[name]
			if !ok {
				r.add("buf curl: unknown shorthand flag -%s", name)
				return
			}
			name = long
		}
		isBool, ok := bufCurlFlags[name]
		if !ok {
			r.add("buf curl: unknown flag --%s", name)
			return
		}
		set[name] = true
		if !isBool && !hasValue {
			if i+1 >= len(args) {
				r.add("buf curl: flag --%s needs a value", name)
				return
			}
			i++
			value = args[i]
		}
		if name == "data" {
			v := value
			data = &v
		}
	}
	if len(pos) != 1 {
		r.add("buf curl: want one URL, got %q", pos)
		return
	}
	u, err := url.Parse(pos[0])
	if err != nil || u.Host == "" {
		r.add("buf curl: %q is not a URL", pos[0])
		return
	}
	if set["list-methods"] || set["list-services"] {
		if strings.Trim(u.Path, "/") != "" {
			r.add("buf curl: --list-methods and --list-services take the server's base URL, not %s", u.Path)
		}
		return
	}
	c.call(r, "buf curl", strings.TrimPrefix(u.Path, "/"), data, cmd)
}

// curlFlags are the curl flags docs may use, the boolean ones true; short
// boolean flags may be combined (-sS).
var curlFlags = Flags{
	"s": true, "S": true, "f": true, "i": true, "v": true, "L": true, "k": true, "N": true,
	"silent": true, "show-error": true, "fail": true, "include": true, "verbose": true, "location": true,
	"insecure": true, "no-buffer": true, "http2-prior-knowledge": true, "http2": true,
	"H": false, "header": false, "d": false, "data": false, "data-raw": false, "data-binary": false,
	"X": false, "request": false, "o": false, "output": false, "m": false, "max-time": false,
	"connect-timeout": false, "w": false, "write-out": false, "A": false, "user-agent": false,
	"cacert": false, "cert": false, "key": false, "u": false, "user": false,
}

func (c *Checker) curl(r *report, cmd Command) {
	var (
		urls    []string
		data    *string
		headers []string
	)
	args := cmd.Args[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			urls = append(urls, a)
			continue
		}
		var names []string
		if strings.HasPrefix(a, "--") {
			names = []string{a[2:]}
		} else {
			for _, ch := range a[1:] {
				names = append(names, string(ch))
			}
		}
		for j, name := range names {
			isBool, ok := curlFlags[name]
			if !ok {
				r.add("curl: a flag nobody checks: %s (add it to doccheck's curlFlags)", a)
				return
			}
			if isBool {
				continue
			}
			if j != len(names)-1 || i+1 >= len(args) {
				r.add("curl: %s needs a value", a)
				return
			}
			i++
			switch name {
			case "d", "data", "data-raw", "data-binary":
				v := args[i]
				data = &v
			case "H", "header":
				headers = append(headers, strings.ToLower(args[i]))
			}
		}
	}
	if len(urls) != 1 {
		r.add("curl: want one URL, got %q", urls)
		return
	}
	raw := urls[0]
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		r.add("curl: %q is not a URL", urls[0])
		return
	}
	if strings.Count(u.Path, "/") == 2 && strings.Contains(u.Path, "Service/") {
		// Connect's unary protocol: POST of a JSON request
		md := c.call(r, "curl", strings.TrimPrefix(u.Path, "/"), data, cmd)
		if md != nil && (md.IsStreamingClient() || md.IsStreamingServer()) {
			r.add("curl: %s streams: curl speaks Connect's unary protocol only (use grpcurl or buf curl)", u.Path)
		}
		if data != nil && !contains(headers, "content-type: application/json") {
			r.add("curl: %s: a Connect call with JSON needs -H 'Content-Type: application/json'", u.Path)
		}
		return
	}
	paths, err := c.adminPaths()
	if err != nil {
		r.add("curl: %v", err)
		return
	}
	if !contains(paths, u.Path) {
		r.add("curl: the server serves no %s (admin paths: %s; API methods: /package.Service/Method)", u.Path, strings.Join(paths, " "))
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

var muxPattern = regexp.MustCompile(`mux\.Handle(?:Func)?\("(?:[A-Z]+ )?(/[^"]*)"`)

// adminPaths are the paths of the admin server's mux (server/admin.go).
func (c *Checker) adminPaths() ([]string, error) {
	src, err := os.ReadFile(c.abs("server/admin.go"))
	if err != nil {
		return nil, fmt.Errorf("the admin server's paths: %v", err)
	}
	var paths []string
	for _, m := range muxPattern.FindAllStringSubmatch(string(src), -1) {
		paths = append(paths, m[1])
	}
	if len(paths) == 0 {
		return nil, errors.New("found no mux.Handle in server/admin.go")
	}
	return paths, nil
}

// --- go, make, npm ---------------------------------------------------------

// goValueFlags are the flags of go build/run/test/vet that take a value.
var goValueFlags = map[string]bool{
	"C": true, "tags": true, "ldflags": true, "gcflags": true, "asmflags": true, "modfile": true, "mod": true,
	"o": true, "p": true, "exec": true, "pgo": true, "overlay": true, "run": true, "skip": true, "bench": true,
	"benchtime": true, "count": true, "timeout": true, "cpu": true, "parallel": true, "list": true,
	"coverprofile": true, "cpuprofile": true, "memprofile": true, "blockprofile": true, "shuffle": true,
	"fuzz": true, "fuzztime": true, "covermode": true, "coverpkg": true, "outputdir": true,
}

// goCommands are the go commands checked by name only.
var goCommands = map[string]bool{"install": true, "get": true, "work": true, "mod": true, "env": true, "version": true, "generate": true, "list": true, "clean": true}

func (c *Checker) goCommand(r *report, cmd Command) {
	// go -C dir …: the command runs in dir.
	for len(cmd.Args) >= 3 && cmd.Args[1] == "-C" {
		cmd.Dir = path.Join(cmd.Dir, cmd.Args[2])
		if !c.isDir(cmd.Dir) {
			r.add("go -C: no directory %s in the repository", cmd.Dir)
			return
		}
		cmd.Args = append([]string{"go"}, cmd.Args[3:]...)
	}
	if len(cmd.Args) < 2 {
		r.add("go: no command")
		return
	}
	args := cmd.Args[2:]
	// flags before the packages
	skipFlags := func() {
		for len(args) > 0 && strings.HasPrefix(args[0], "-") {
			name := strings.TrimLeft(args[0], "-")
			if goValueFlags[name] && len(args) > 1 {
				args = args[1:]
			}
			args = args[1:]
		}
	}
	switch sub := cmd.Args[1]; sub {
	case "run":
		skipFlags()
		if len(args) == 0 {
			r.add("go run: no package")
			return
		}
		pkg := args[0]
		if !strings.HasPrefix(pkg, ".") {
			return // a module@version
		}
		dir := path.Join(cmd.Dir, pkg)
		if !c.isDir(dir) {
			r.add("go run: no package %s in the repository", dir)
			return
		}
		c.program(r, dir, "go run "+pkg, args[1:])
	case "test", "vet", "build":
		for _, a := range args {
			if strings.HasPrefix(a, ".") {
				if dir := path.Join(cmd.Dir, strings.TrimSuffix(a, "...")); !c.isDir(dir) {
					r.add("go %s: no package %s in the repository", sub, dir)
				}
			}
		}
	case "doc":
		for _, a := range args {
			if strings.HasPrefix(a, "-") {
				continue
			}
			var dir string
			switch {
			case strings.HasPrefix(a, "."):
				dir = path.Join(cmd.Dir, a)
			case strings.HasPrefix(a, "github.com/loomhq/loom/"):
				dir = strings.TrimPrefix(a, "github.com/loomhq/loom/")
			default:
				continue // the standard library, or a symbol
			}
			// package[.Symbol[.Method]]
			last := strings.LastIndexByte(dir, '/')
			if dot := strings.IndexByte(dir[last+1:], '.'); dot >= 0 && !c.isDir(dir) {
				dir = dir[:last+1+dot]
			}
			if !c.isDir(dir) {
				r.add("go doc: no package %s in the repository", dir)
			}
			break // later arguments are symbols
		}
	case "tool":
		skipFlags()
		modfile := "go.mod"
		for _, a := range cmd.Args[2:] {
			if v, ok := strings.CutPrefix(a, "-modfile="); ok {
				modfile = v
			}
		}
		if len(args) == 0 {
			r.add("go tool: no tool")
			return
		}
		if !c.hasTool(path.Join(cmd.Dir, modfile), args[0]) {
			r.add("go tool: %s has no tool %s", path.Join(cmd.Dir, modfile), args[0])
			return
		}
		if args[0] == "buf" {
			c.buf(r, cmd, args[1:])
		}
	default:
		if !goCommands[sub] {
			r.add("go %s: a go command nobody checks", sub)
		}
	}
}

// hasTool reports whether the go.mod at modfile has a tool directive
// ending in /name.
func (c *Checker) hasTool(modfile, name string) bool {
	b, err := os.ReadFile(c.abs(modfile))
	if err != nil {
		return false
	}
	inTool := false
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "tool (":
			inTool = true
		case inTool && l == ")":
			inTool = false
		case inTool, strings.HasPrefix(l, "tool "):
			f := strings.Fields(strings.TrimPrefix(l, "tool "))
			if len(f) > 0 && strings.HasSuffix(f[0], "/"+name) {
				return true
			}
		}
	}
	return false
}

var makeTarget = regexp.MustCompile(`^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:(?:[^=]|$)`)

func (c *Checker) make(r *report, cmd Command) {
	mf := path.Join(cmd.Dir, "Makefile")
	b, err := os.ReadFile(c.abs(mf))
	if err != nil {
		r.add("make: no %s", mf)
		return
	}
	targets := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if m := makeTarget.FindStringSubmatch(l); m != nil {
			for _, t := range strings.Fields(m[1]) {
				targets[t] = !strings.HasPrefix(t, ".")
			}
		}
	}
	for _, a := range cmd.Args[1:] {
		switch {
		case a == "-k" || a == "-n" || a == "-s" || strings.HasPrefix(a, "-j"):
		case strings.HasPrefix(a, "-"):
			r.add("make: a flag nobody checks: %s", a)
		case isAssignment(a):
		case !targets[a]:
			r.add("make: %s has no target %s", mf, a)
		}
	}
}

func (c *Checker) npm(r *report, cmd Command) {
	pj := path.Join(cmd.Dir, "package.json")
	b, err := os.ReadFile(c.abs(pj))
	if err != nil {
		r.add("npm: no %s", pj)
		return
	}
	var pkg struct{ Scripts map[string]string }
	if err := json.Unmarshal(b, &pkg); err != nil {
		r.add("npm: %s: %v", pj, err)
		return
	}
	if len(cmd.Args) < 2 {
		r.add("npm: no command")
		return
	}
	script := ""
	switch cmd.Args[1] {
	case "ci", "install", "i":
		return
	case "test", "start":
		script = cmd.Args[1]
	case "run":
		if len(cmd.Args) < 3 {
			r.add("npm run: no script")
			return
		}
		script = cmd.Args[2]
	default:
		r.add("npm %s: an npm command nobody checks", cmd.Args[1])
		return
	}
	if _, ok := pkg.Scripts[script]; !ok {
		r.add("npm: %s has no script %q", pj, script)
	}
}
