package main

import (
	"errors"
	"flag"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/loomhq/loom/internal/doccheck"
)

// Every command of the shell blocks of README.md and docs/*.md, and of their
// code spans, is checked against the real thing (see internal/doccheck):
// API calls against the descriptors, `loom` and `go run ./cmd/loom` against
// the flags each subcommand defines, make targets against the Makefile, and
// so on.
func TestEveryDocsCommandIsChecked(t *testing.T) {
	c := &doccheck.Checker{Root: "../..", Programs: map[string]doccheck.Program{"cmd/loom": loomProgram(t)}}
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

// loomProgram is the flags of each subcommand of loom's usage, read from
// the FlagSet it parses `loom SUBCOMMAND -h` with.
func loomProgram(t *testing.T) doccheck.Program {
	t.Helper()
	prog := doccheck.Program{}
	for _, m := range regexp.MustCompile(`(?m)^  loom ([a-z]+(?: [a-z]+)?)(?: \[|  )`).FindAllStringSubmatch(usage, -1) {
		sub := m[1]
		var fs *flag.FlagSet
		newFlagSet = func(name string) *flag.FlagSet {
			fs = flag.NewFlagSet(name, flag.ContinueOnError)
			return fs
		}
		err := run(append(strings.Fields(sub), "-h"), io.Discard)
		newFlagSet = func(name string) *flag.FlagSet { return flag.NewFlagSet(name, flag.ContinueOnError) }
		if fs == nil || !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("loom %s -h: %v, FlagSet %v", sub, err, fs)
		}
		flags := doccheck.Flags{}
		fs.VisitAll(func(f *flag.Flag) {
			b, ok := f.Value.(interface{ IsBoolFlag() bool })
			flags[f.Name] = ok && b.IsBoolFlag()
		})
		prog[sub] = flags
	}
	if len(prog) < 5 || prog["serve"]["insecure-no-auth"] != true || prog["tokens create"]["subject"] != false {
		t.Fatalf("read loom's subcommands wrong: %v", prog)
	}
	return prog
}
