package api

import (
	"encoding/base64"
	"encoding/json"

	"github.com/loomhq/loom/server/internal/migration"
)

// A page token is opaque to clients: base64url of the last key returned and
// of the filters the listing was made with, so a token replayed with other
// filters is refused instead of silently listing something else.
type pageToken struct {
	After  string `json:"a"`
	Filter string `json:"f,omitempty"`
}

func encodePageToken(after, filter string) string {
	if after == "" {
		return ""
	}
	b, _ := json.Marshal(pageToken{After: after, Filter: filter})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(token, filter string) (string, error) {
	if token == "" {
		return "", nil
	}
	bad := migration.InvalidArgument("page_token", migration.ReasonInvalidPageToken,
		"not a page token of this listing; pass next_page_token unchanged, with the same filters")
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil {
		return "", bad
	}
	var t pageToken
	if err := json.Unmarshal(b, &t); err != nil || t.After == "" || t.Filter != filter {
		return "", bad
	}
	return t.After, nil
}
