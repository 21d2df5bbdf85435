package store

import (
	"testing"

	"github.com/loomhq/loom/server/internal/migration"
)

// ListRuns without a filter merges the indexes of the three Run statuses
// (there is no index of every Run): in byte order, as one index would list
// them, whatever the ids' case and punctuation, with the exact total.
func TestListRunsMergesTheStatusesInByteOrder(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ids := []string{"Z", "a", "a-b", "a.b", "a/b", "aB", "b", "B", "0", "_"}
	setupRuns(t, s, "m", ids...)
	for i, c := range ids {
		r := newRun("m", c, 1, at(1))
		mustBegin(t, s, r)
		switch i % 3 {
		case 1:
			r.Finish(migration.RunCompleted, "", at(2))
			mustSave(t, s, r)
		case 2:
			r.Finish(migration.RunCancelled, "no", at(2))
			mustSave(t, s, r)
		}
	}
	checkRuns(t, rdb, "m", true)
	checkListings(t, s, "m", ids...)
}
