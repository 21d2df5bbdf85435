package store

import (
	"reflect"
	"testing"
)

func TestParseDiscovered(t *testing.T) {
	t.Parallel()
	kind := func(s string) *string { return &s }
	for dev, want := range map[string]discoveredRecord{
		"3 loom":                            {I: "1003-0", By: "loom"},
		"-2 a b":                            {I: "998-0", By: "a b"},
		"0 ":                                {I: "1000-0", By: ""},
		`{"i":"5-1","kind":"svc","by":"x"}`: {I: "5-1", By: "x", Kind: kind("svc")},
		`{"i":"5-1","by":"x"}`:              {I: "5-1", By: "x", Kind: kind("")},
	} {
		got, err := parseDiscovered(dev, 1000)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %+v %v, want %+v", dev, got, err, want)
		}
	}
	for _, dev := range []string{"3", "x loom", "{", `{"by":"x"}`, "-2000 x"} {
		if _, err := parseDiscovered(dev, 1000); err == nil {
			t.Errorf("%q: no error", dev)
		}
	}
}
