package gomigrator

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The change this Migrator makes: raise the go directive of a go.mod, and
// pin the toolchain that builds it.

var (
	goLine        = regexp.MustCompile(`(?m)^go[ \t]+(\S+)[ \t]*$`)
	toolchainLine = regexp.MustCompile(`(?m)^toolchain[ \t]+(\S+)[ \t]*\n?`)
	moduleLine    = regexp.MustCompile(`(?m)^module[ \t]+\S+[ \t]*\n`)
)

// goDirective returns the go version a go.mod declares, "" when none.
func goDirective(gomod string) string {
	if m := goLine.FindStringSubmatch(gomod); m != nil {
		return m[1]
	}
	return ""
}

// setGoDirective returns gomod declaring go version v; a go.mod that already
// declares v or a newer version is returned unchanged.
func setGoDirective(gomod, v string) string {
	cur := goDirective(gomod)
	switch {
	case cur == "":
		if loc := moduleLine.FindStringIndex(gomod); loc != nil {
			return gomod[:loc[1]] + "\ngo " + v + "\n" + gomod[loc[1]:]
		}
		return "go " + v + "\n" + gomod
	case compareVersions(cur, v) >= 0:
		return gomod
	}
	return goLine.ReplaceAllString(gomod, "go "+v)
}

// setToolchain returns gomod with a `toolchain go<v>` line right after the
// go directive, replacing any other toolchain line.
func setToolchain(gomod, v string) string {
	gomod = toolchainLine.ReplaceAllString(gomod, "")
	line := "toolchain go" + v + "\n"
	if loc := goLine.FindStringIndex(gomod); loc != nil {
		end := loc[1]
		if end < len(gomod) && gomod[end] == '\n' {
			end++
		}
		return gomod[:end] + line + gomod[end:]
	}
	return gomod + line
}

// compareVersions compares dotted Go versions ("1.21", "1.21.3"): -1, 0, 1.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// validVersion reports whether v looks like a Go version, e.g. 1.23 or 1.23.4.
func validVersion(v string) error {
	if !regexp.MustCompile(`^1\.\d+(\.\d+)?$`).MatchString(v) {
		return fmt.Errorf("%q is not a Go version like 1.23 or 1.23.4", v)
	}
	return nil
}
