package store

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

func TestMigrationDefIsCanonical(t *testing.T) {
	a := testMigration("m")
	b := testMigration("m")
	// Same content, maps built in another order, empty vs nil collections.
	b.Steps[0].Config = map[string]string{"a": "1", "b": "2"}
	b.Steps[1].Config = map[string]string{}
	b.CreateTime, b.UpdateTime = at(1), at(2) // times are not part of def
	b.Counts = migration.CandidateCounts{NotStarted: 3}
	da, err := encodeMigrationDef(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := encodeMigrationDef(b)
	if err != nil {
		t.Fatal(err)
	}
	if da != db {
		t.Errorf("same definition, different encodings:\n%s\n%s", da, db)
	}
	if !strings.HasPrefix(da, `{"v":1,`) {
		t.Errorf("def %s does not start with the version", da)
	}
	// A field's default is not written: the defs of Migrations stored
	// before it existed compare equal to their next announcement.
	if strings.Contains(da, "viewers_may_preview") {
		t.Errorf("def %s writes viewers_may_preview while false", da)
	}
}

func TestCandidateDefIsCanonical(t *testing.T) {
	a := migration.Candidate{ID: "x", Kind: "svc", Metadata: map[string]string{"z": "1", "a": "2"}}
	b := migration.Candidate{ID: "x", Kind: "svc", Metadata: map[string]string{"a": "2", "z": "1"},
		Status: migration.CandidateRunning, Inputs: map[string]string{"i": "j"}, Execution: 4} // server-kept fields ignored
	c := migration.Candidate{ID: "x", Kind: "svc", Metadata: map[string]string{}}
	d := migration.Candidate{ID: "x", Kind: "svc"}
	enc := func(c migration.Candidate) string {
		s, err := encodeCandidateDef(c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if enc(a) != enc(b) {
		t.Errorf("a and b differ: %s vs %s", enc(a), enc(b))
	}
	if enc(c) != enc(d) {
		t.Errorf("empty and nil metadata differ: %s vs %s", enc(c), enc(d))
	}
	if enc(a) == enc(d) {
		t.Errorf("metadata ignored")
	}
}

func TestMigrationRoundTrip(t *testing.T) {
	m := testMigration("m")
	def, err := encodeMigrationDef(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeMigration("m", map[string]string{
		"def": def, "ctime": "1767225600000", "utime": "1767225600123",
		"n:not_started": "3", "n:running": "2", "n:completed": "1",
	})
	if err != nil {
		t.Fatal(err)
	}
	m.CreateTime = time.UnixMilli(1767225600000).UTC()
	m.UpdateTime = time.UnixMilli(1767225600123).UTC()
	m.Counts = migration.CandidateCounts{NotStarted: 3, Running: 2, Completed: 1}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, m)
	}
	if got.CreateTime.Location() != time.UTC {
		t.Errorf("times must be UTC")
	}
}

func TestCandidateRoundTrip(t *testing.T) {
	c := migration.Candidate{
		ID:       "acme/payments",
		Kind:     "repository",
		Metadata: map[string]string{"team": "pay"},
		Files: []migration.FileGroup{{Name: "charts", Files: []migration.FileRef{
			{Path: "charts/a/Chart.yaml", URL: "https://git.example/a"}, {Path: "charts/b/Chart.yaml"},
		}}},
		Steps: []migration.StepDefinition{{Name: "only", Type: "pr", ReportTimeout: 1500 * time.Microsecond}},
	}
	def, err := encodeCandidateDef(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeCandidate("m", c.ID, map[string]string{
		"def": def, "kind": "repository", "status": "running", "inputs": `{"tag":"v2","path":"a\/b"}`,
		"exec": "3", "ctime": "1000", "utime": "2000", "gone": "1", "round": "r",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := c
	want.MigrationID = "m"
	want.Status = migration.CandidateRunning
	want.Inputs = map[string]string{"tag": "v2", "path": "a/b"}
	want.Execution = 3
	want.CreateTime = time.UnixMilli(1000).UTC()
	want.UpdateTime = time.UnixMilli(2000).UTC()
	want.NoLongerDiscovered = true
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestDecodeRefusesUnknownVersion(t *testing.T) {
	_, err := decodeMigration("m", map[string]string{"def": `{"v":2,"name":"x"}`, "ctime": "1", "utime": "1"})
	if err == nil || !strings.Contains(err.Error(), "unsupported record version 2") {
		t.Errorf("got %v, want an unsupported version error", err)
	}
	_, err = decodeCandidate("m", "c", map[string]string{"def": `{"kind":"x"}`, "status": "not_started", "ctime": "1", "utime": "1"})
	if err == nil || !strings.Contains(err.Error(), "unsupported record version 0") {
		t.Errorf("got %v, want an unsupported version error", err)
	}
}
