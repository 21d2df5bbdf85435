package api_test

import (
	"context"
	"testing"
	"time"
)

// A viewer's PreviewRun is admitted only about a Migration that lets
// viewers preview; about any other, one that does not exist, or an id that
// is not one (the interceptor reads the Migration before the request is
// validated), it is permission_denied, never another code.
func TestViewerPreviewNeedsTheMigrationsPermission(t *testing.T) {
	a := newSecureAPI(t)
	open := migrationFromSample(sampleMigration("open"))
	open.ViewersMayPreview = true
	if _, _, _, err := a.store.PutMigration(context.Background(), open, time.Now()); err != nil {
		t.Fatal(err)
	}
	const preview = "/loom.v1.RunService/PreviewRun"
	for body, want := range map[string]string{
		`{"migration_id": "mine", "candidate_id": "c"}`:       "permission_denied", // viewers may not preview it
		`{"migration_id": "nowhere", "candidate_id": "c"}`:    "permission_denied",
		`{"migration_id": "{open}x", "candidate_id": "c"}`:    "permission_denied",
		`{"candidate_id": "c"}`:                               "permission_denied",
		`{"migration_id": "open", "candidate_id": "missing"}`: "not_found", // admitted: the Candidate is looked up
	} {
		if got := a.call(t, preview, a.tokens["viewer"], body); got != want {
			t.Errorf("viewer, %s: %q, want %q", body, got, want)
		}
	}
	// Operators are not asked the Migration's leave.
	if got := a.call(t, preview, a.tokens["operator"], `{"migration_id": "mine", "candidate_id": "missing"}`); got != "not_found" {
		t.Errorf("operator: %q", got)
	}
}
