package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/internal/doccheck"
)

// The reasons the server sends are the API's: the domain's Reason
// constants are exactly the values of loomv1.ErrorReason (the domain
// imports no generated code, so it repeats the names, and this is what
// keeps them equal).
func TestDomainReasonsAreTheAPIs(t *testing.T) {
	domain := domainReasons(t)
	for name := range domain {
		if _, ok := loomv1.ErrorReason_value[name]; !ok {
			t.Errorf("migration declares reason %s, which loomv1.ErrorReason lacks: add it to proto/loom/v1/error_reason.proto", name)
		}
	}
	for name, n := range loomv1.ErrorReason_value {
		if n != 0 && !domain[name] {
			t.Errorf("loomv1.ErrorReason has %s, which no migration.Reason constant declares", name)
		}
	}
}

// domainReasons reads the Reason constants of the migration package's
// errors.go.
func domainReasons(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../migration/errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, id := range vs.Names {
			if strings.HasPrefix(id.Name, "Reason") && i < len(vs.Values) {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					out[v] = true
				}
			}
		}
		return false
	})
	if len(out) < 20 {
		t.Fatalf("found %d reasons in errors.go: the parsing is broken", len(out))
	}
	return out
}

// refusalBuilders are the migration functions that build a refusal, and
// the position of their reason argument.
var refusalBuilders = map[string]int{
	"NotFound": 0, "AlreadyExists": 0, "FailedPrecondition": 0, "Unavailable": 0, "InvalidArgument": 1, "refuse": 1,
}

// No refusal in the server is built with a reason spelled out as a string:
// every reason is one of the declared constants, so the test above covers
// every reason a client can receive.
func TestRefusalsNameDeclaredReasons(t *testing.T) {
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir("../..", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				name := ""
				switch fn := n.Fun.(type) {
				case *ast.Ident:
					name = fn.Name
				case *ast.SelectorExpr:
					name = fn.Sel.Name
				}
				pos, ok := refusalBuilders[name]
				if !ok || pos >= len(n.Args) {
					return true
				}
				// refuse(kind, reason, ...) in errors.go; refuse(reason, ...)
				// closures elsewhere take the reason first.
				if name == "refuse" {
					if id, ok := n.Args[0].(*ast.Ident); !ok || !strings.HasPrefix(id.Name, "Err") {
						pos = 0
					}
				}
				checked++
				if lit, ok := n.Args[pos].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					t.Errorf("%s: %s is given the reason %s: declare it in migration/errors.go (and error_reason.proto)", fset.Position(lit.Pos()), name, lit.Value)
				}
			case *ast.KeyValueExpr:
				if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Reason" {
					if lit, ok := n.Value.(*ast.BasicLit); ok && lit.Kind == token.STRING && isReasonName(lit.Value) {
						t.Errorf("%s: Reason: %s: use a declared reason constant", fset.Position(lit.Pos()), lit.Value)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked %d refusal builders: the walk is broken", checked)
	}
}

var reasonLike = regexp.MustCompile(`^"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+"$`)

func isReasonName(lit string) bool { return reasonLike.MatchString(lit) }

// Every UPPER_SNAKE name the README and docs/ put in backquotes is a name
// the API has: an error reason, an enum value, a Connect code, or an
// environment variable. A renamed reason or enum value leaves no stale name
// behind.
func TestDocsNameOnlyWhatTheAPIHas(t *testing.T) {
	known := map[string]bool{}
	protoregistry.GlobalTypes.RangeEnums(func(e protoreflect.EnumType) bool {
		vals := e.Descriptor().Values()
		for i := 0; i < vals.Len(); i++ {
			known[string(vals.Get(i).Name())] = true
		}
		return true
	})
	for c := connect.CodeCanceled; c <= connect.CodeUnauthenticated; c++ {
		known[strings.ToUpper(c.String())] = true
	}
	if !known["STEP_NOT_CURRENT"] || !known["FAILED_PRECONDITION"] || !known["STEP_STATUS_OPEN"] {
		t.Fatal("the registry lacks Loom's enums: the test is broken")
	}
	env := regexp.MustCompile(`^(LOOM|OTEL|GITHUB|GOFLAGS|GOTOOLCHAIN|GOPROXY)_?[A-Z0-9_]*$`)
	name := regexp.MustCompile("`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`")
	docs, _ := filepath.Glob("../../../docs/*.md")
	files := append([]string{"../../../README.md"}, docs...)
	var unknown []string
	seen := 0
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range name.FindAllStringSubmatch(line, -1) {
				seen++
				if !known[m[1]] && !env.MatchString(m[1]) {
					unknown = append(unknown, filepath.Base(p)+":"+strconv.Itoa(i+1)+": "+m[1])
				}
			}
		}
	}
	sort.Strings(unknown)
	for _, u := range unknown {
		t.Errorf("%s is no reason, enum value, code or environment variable of Loom's", u)
	}
	if seen < 20 {
		t.Fatalf("found %d names in the docs: the scan is broken", seen)
	}
}

// answeredByNoRPC are the reasons no RPC of this version answers, and why;
// each stays in the enum (a released name is never taken back) but names
// no RPC's section.
var answeredByNoRPC = map[string]string{
	"CANDIDATE_STATUS_CHANGED": "only store.SetCandidateStatus builds it, and no use case calls that",
}

// Every reason a client can receive is documented under an RPC that
// answers it: each non-zero value of loomv1.ErrorReason is named in the
// section of at least one loom.v1 RPC in docs/api.md (generated from the
// RPCs' comments in proto/), not only in the table of error reasons.
func TestEveryReasonIsNamedUnderAnRPC(t *testing.T) {
	b, err := os.ReadFile("../../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	services := map[string]bool{}
	for _, s := range ServiceNames {
		services[s[strings.LastIndex(s, ".")+1:]] = true
	}
	// An RPC's section is the one under its "### Service.Method" heading.
	rpcHeading := regexp.MustCompile(`^(\w+)\.\w+$`)
	sections := map[string]string{}
	for title, text := range doccheck.Sections(b) {
		if r := rpcHeading.FindStringSubmatch(title); r != nil && services[r[1]] {
			sections[title] = text
		}
	}
	if len(sections) < 40 || sections["RunService.StartRun"] == "" {
		t.Fatalf("found %d RPC sections in docs/api.md: the parsing is broken", len(sections))
	}
	for n, name := range loomv1.ErrorReason_name {
		if n == 0 {
			continue
		}
		word := regexp.MustCompile(`\b` + name + `\b`)
		var rpcs []string
		for rpc, text := range sections {
			if word.MatchString(text) {
				rpcs = append(rpcs, rpc)
			}
		}
		why, exempt := answeredByNoRPC[name]
		switch {
		case exempt && len(rpcs) > 0:
			sort.Strings(rpcs)
			t.Errorf("%s is listed as answered by no RPC (%s), yet docs/api.md names it under %s: drop it from answeredByNoRPC", name, why, strings.Join(rpcs, ", "))
		case !exempt && len(rpcs) == 0:
			t.Errorf("no RPC's section of docs/api.md names the reason %s: add it to the Errors paragraph of each RPC that answers it in proto/ (then make generate)", name)
		}
	}
}
