package gomigrator

import "testing"

func TestSetGoDirective(t *testing.T) {
	for _, tc := range []struct{ in, v, want string }{
		{"module x\n\ngo 1.21\n", "1.23", "module x\n\ngo 1.23\n"},
		{"module x\n\ngo 1.24\n", "1.23", "module x\n\ngo 1.24\n"},
		{"module x\n\ngo 1.23\n\nrequire y v1\n", "1.23", "module x\n\ngo 1.23\n\nrequire y v1\n"},
		{"module x\n", "1.23", "module x\n\ngo 1.23\n"},
		{"module x\n\ngo 1.9\n", "1.23.2", "module x\n\ngo 1.23.2\n"},
	} {
		if got := setGoDirective(tc.in, tc.v); got != tc.want {
			t.Errorf("setGoDirective(%q, %s) = %q, want %q", tc.in, tc.v, got, tc.want)
		}
	}
}

func TestSetToolchain(t *testing.T) {
	for _, tc := range []struct{ in, v, want string }{
		{"module x\n\ngo 1.23\n", "1.23.4", "module x\n\ngo 1.23\ntoolchain go1.23.4\n"},
		{"module x\n\ngo 1.23\ntoolchain go1.22.1\n\nrequire y v1\n", "1.23.4", "module x\n\ngo 1.23\ntoolchain go1.23.4\n\nrequire y v1\n"},
		{"module x\n\ngo 1.23\ntoolchain go1.23.4\n", "1.23.4", "module x\n\ngo 1.23\ntoolchain go1.23.4\n"},
	} {
		if got := setToolchain(tc.in, tc.v); got != tc.want {
			t.Errorf("setToolchain(%q, %s) = %q, want %q", tc.in, tc.v, got, tc.want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	if compareVersions("1.9", "1.21") != -1 || compareVersions("1.21.0", "1.21") != 0 || compareVersions("1.23.1", "1.23") != 1 {
		t.Fatal("version order is wrong")
	}
}
