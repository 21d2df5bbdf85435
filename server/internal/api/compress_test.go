package api_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
)

// A large answer to a client that accepts gzip is compressed, at gzip's
// fastest level; a small one is sent as it is.
func TestLargeAnswersAreGzippedFast(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	c := a.clients(http.DefaultClient)
	if _, err := c.registry.Announce(ctx, connect.NewRequest(&loomv1.AnnounceRequest{Migration: sampleMigration("big")})); err != nil {
		t.Fatal(err)
	}
	var cands []*loomv1.Candidate
	for i := range 100 {
		cands = append(cands, sampleCandidate(fmt.Sprintf("svc-%03d", i), "service"))
	}
	if _, err := c.discovery.SubmitCandidates(ctx, connect.NewRequest(&loomv1.SubmitCandidatesRequest{MigrationId: "big", Candidates: cands})); err != nil {
		t.Fatal(err)
	}
	call := func(procedure, body string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, a.url+procedure, bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		// Set by hand, so that the transport leaves the answer compressed.
		req.Header.Set("Accept-Encoding", "gzip")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s %v", procedure, res.StatusCode, raw, err)
		}
		return res, raw
	}

	res, raw := call("/loom.v1.DiscoveryService/ListCandidates", `{"migration_id": "big", "page_size": 100}`)
	if enc := res.Header.Get("Content-Encoding"); enc != "gzip" {
		t.Fatalf("a page of 100 Candidates came with Content-Encoding %q, want gzip", enc)
	}
	// The gzip header's XFL byte says which level wrote it: 4 is the fastest.
	if len(raw) < 10 || raw[8] != 4 {
		t.Fatalf("gzip header %x: not written at the fastest level", raw[:min(len(raw), 10)])
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Candidates []json.RawMessage `json:"candidates"`
	}
	if err := json.NewDecoder(zr).Decode(&page); err != nil || len(page.Candidates) != 100 {
		t.Fatalf("decompressed page: %d Candidates, %v", len(page.Candidates), err)
	}

	res, raw = call("/loom.v1.DiscoveryService/GetCandidate", `{"migration_id": "big", "candidate_id": "svc-000"}`)
	if enc := res.Header.Get("Content-Encoding"); enc != "" || !json.Valid(raw) {
		t.Fatalf("a small answer came with Content-Encoding %q: %q", enc, raw)
	}
}
