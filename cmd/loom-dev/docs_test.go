package main

import (
	"errors"
	"flag"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/loomhq/loom/internal/doccheck"
)

// Every command of the shell blocks of README.md and docs/*.md, and of their
// code spans, is checked against the real thing (see internal/doccheck):
// API calls against the descriptors, `loom`, `loom-dev`, `go run ./cmd/loom`
// and `go run ./cmd/loom-dev` against the flags each defines, make targets
// against the Makefile, and so on. It is loom-dev's test because loom-dev
// can see both: its own flags in this process, loom's from the binary.
func TestEveryDocsCommandIsChecked(t *testing.T) {
	c := &doccheck.Checker{Root: "../..", Programs: map[string]doccheck.Program{
		"cmd/loom":     loomProgram(t),
		"cmd/loom-dev": loomDevProgram(t),
	}}
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(docs) < 4 {
		t.Fatalf("docs/*.md: %v %v", docs, err)
	}
	files := []string{"README.md"}
	for _, d := range docs {
		files = append(files, "docs/"+filepath.Base(d))
	}
	n := 0
	for _, f := range files {
		cmds, problems := c.CheckFile(f)
		n += len(cmds)
		for _, p := range append(problems, doccheck.Links("../..", f)...) {
			t.Error(p)
		}
	}
	if n < 50 {
		t.Errorf("found %d commands in the docs: the extraction is broken", n)
	}
}

// loomDevProgram is the flags of loom-dev, read from the FlagSet it parses
// `loom-dev -h` with.
func loomDevProgram(t *testing.T) doccheck.Program {
	t.Helper()
	var fs *flag.FlagSet
	newFlagSet = func(name string) *flag.FlagSet {
		fs = flag.NewFlagSet(name, flag.ContinueOnError)
		return fs
	}
	err := run([]string{"-h"}, io.Discard)
	newFlagSet = func(name string) *flag.FlagSet { return flag.NewFlagSet(name, flag.ContinueOnError) }
	if fs == nil || !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("loom-dev -h: %v, FlagSet %v", err, fs)
	}
	flags := doccheck.Flags{}
	fs.VisitAll(func(f *flag.Flag) {
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		flags[f.Name] = ok && b.IsBoolFlag()
	})
	if flags["data-dir"] || !flags["example"] {
		t.Fatalf("read loom-dev's flags wrong: %v", flags)
	}
	return doccheck.Program{"": flags}
}

// loomProgram is the flags of each subcommand of loom's usage, read from
// what `loom SUBCOMMAND -h` prints: loom is another main package, so it is
// built and run.
func loomProgram(t *testing.T) doccheck.Program {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "loom")
	if out, err := exec.Command("go", "build", "-o", bin, "../loom").CombinedOutput(); err != nil {
		t.Fatalf("go build ../loom: %v\n%s", err, out)
	}
	help := func(args ...string) string {
		out, _ := exec.Command(bin, args...).CombinedOutput() // -h exits 2
		return string(out)
	}
	prog := doccheck.Program{}
	for _, m := range regexp.MustCompile(`(?m)^  loom ([a-z]+(?: [a-z]+)?)(?: \[|  )`).FindAllStringSubmatch(help("help"), -1) {
		sub := m[1]
		prog[sub] = doccheck.FlagsFromHelp(help(append(strings.Fields(sub), "-h")...))
	}
	if len(prog) < 4 || prog["serve"]["insecure-no-auth"] != true || prog["serve"]["addr"] != false || prog["tokens create"]["subject"] != false {
		t.Fatalf("read loom's subcommands wrong: %v", prog)
	}
	return prog
}
