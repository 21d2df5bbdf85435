package migration_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

// rolloutWorld is the Migration "m" requiring input "target", with
// Candidates, a RolloutStore in memory and an engine that fails when told.
type rolloutWorld struct {
	*bulkStore
	created []string
	saved   []migration.Rollout
	events  []migration.Event
	down    error
}

func (w *rolloutWorld) GetMigration(ctx context.Context, id string) (migration.Migration, error) {
	m, err := w.bulkStore.GetMigration(ctx, id)
	m.RequiredInputs = []migration.InputDefinition{{Name: "target"}}
	return m, err
}

func (w *rolloutWorld) CreateRollout(_ context.Context, r migration.Rollout, ids []string) (migration.Rollout, error) {
	w.created = ids
	r.Version = 1
	return r, nil
}

func (w *rolloutWorld) SaveRollout(_ context.Context, r migration.Rollout, events []migration.Event) (int64, error) {
	w.saved = append(w.saved, r)
	w.events = append(w.events, events...)
	return r.Seq, nil
}

func (w *rolloutWorld) GetRollout(context.Context, string, string) (migration.Rollout, error) {
	return migration.Rollout{}, errors.New("not used")
}
func (w *rolloutWorld) ListRollouts(context.Context, string, migration.PageRequest) ([]migration.Rollout, string, error) {
	return nil, "", nil
}
func (w *rolloutWorld) RolloutCandidates(context.Context, string, string, int, int) ([]string, error) {
	return nil, nil
}
func (w *rolloutWorld) WatchRollout(context.Context, string, string) (<-chan struct{}, error) {
	return nil, nil
}

func (w *rolloutWorld) StartRollout(context.Context, migration.Rollout) error { return w.down }
func (w *rolloutWorld) ControlRollout(context.Context, string, string, migration.RolloutControl) (migration.Controlled, error) {
	return migration.Controlled{}, nil
}

func newRolloutWorld(ids ...string) (*rolloutWorld, *migration.Rollouts) {
	w := &rolloutWorld{bulkStore: newBulkStore()}
	for _, id := range ids {
		w.add(id, nil)
	}
	return w, &migration.Rollouts{Store: w, Rollout: w, Engine: w, Now: func() time.Time { return t0 }}
}

func TestStartRolloutChecksEveryCandidatesInputsFirst(t *testing.T) {
	w, u := newRolloutWorld(ids(30)...)
	// Two Candidates have their own value; a running one is not checked.
	for _, id := range []string{"c00003", "c00007"} {
		c := w.candidates[id]
		c.Inputs = map[string]string{"target": "1.24"}
		w.candidates[id] = c
	}
	w.add("c00099", &migration.Run{Status: migration.RunRunning})
	sel := migration.Selection{MigrationID: "m", Filter: &migration.CandidateFilter{}}
	_, err := u.StartRollout(context.Background(), sel, nil, migration.RolloutSettings{MaxInFlight: 5}, "")
	var ref *migration.Refusal
	if !errors.As(err, &ref) || ref.Reason != migration.ReasonMissingInputs || ref.Metadata["count"] != "28" ||
		len(strings.Split(ref.Metadata["candidates"], ",")) != 20 || ref.Metadata["missing"] != "target" {
		t.Fatalf("start without defaults: %v %+v", err, ref)
	}
	if w.created != nil {
		t.Fatal("a refused rollout stored its Candidates")
	}
	p, err := u.PreviewSelection(context.Background(), sel, nil, 0)
	if err != nil || p.Count != 31 || p.MissingInputsCount != 28 || p.NotStartableCount != 1 || len(p.MissingInputs) != 28 {
		t.Fatalf("preview: %+v, %v", p, err)
	}
	r, err := u.StartRollout(context.Background(), sel, map[string]string{"target": "1.23"}, migration.RolloutSettings{MaxInFlight: 5, CanarySize: 2},
		"wave 1: the payments team signed off")
	if err != nil {
		t.Fatal(err)
	}
	if r.Progress.Planned != 31 || len(w.created) != 31 || r.State != migration.RolloutRunning || r.Settings.AfterCanary != migration.AfterCanaryApproval ||
		r.StateReason != "wave 1: the payments team signed off" || r.StateActor != r.CreatedBy {
		t.Fatalf("started %+v with %d ids", r, len(w.created))
	}
	_, err = u.StartRollout(context.Background(), migration.Selection{MigrationID: "m", Filter: &migration.CandidateFilter{IDPrefix: "zz"}},
		map[string]string{"target": "1.23"}, migration.RolloutSettings{MaxInFlight: 5}, "")
	if !errors.As(err, &ref) || ref.Reason != migration.ReasonEmptySelection {
		t.Fatalf("empty selection: %v", err)
	}
	_, err = u.StartRollout(context.Background(), migration.Selection{MigrationID: "m", CandidateIDs: []string{"c00001", "nope"}},
		map[string]string{"target": "1.23"}, migration.RolloutSettings{MaxInFlight: 5}, "")
	if !errors.As(err, &ref) || !errors.Is(err, migration.ErrNotFound) || ref.Field != "selection.candidate_ids[1]" {
		t.Fatalf("unknown id: %v %+v", err, ref)
	}
}

// With the engine down, the rollout is refused unavailable and its view
// ends cancelled rather than saying running with no workflow behind it.
func TestStartRolloutWithTheEngineDownLeavesNoRunningView(t *testing.T) {
	w, u := newRolloutWorld(ids(3)...)
	w.down = migration.Unavailable(migration.ReasonExecutionEngineFailure, "temporal: connection refused")
	_, err := u.StartRollout(context.Background(), migration.Selection{MigrationID: "m", Filter: &migration.CandidateFilter{}},
		map[string]string{"target": "1.23"}, migration.RolloutSettings{MaxInFlight: 5}, "")
	var ref *migration.Refusal
	if !errors.Is(err, migration.ErrUnavailable) || !errors.As(err, &ref) {
		t.Fatalf("start: %v", err)
	}
	if len(w.saved) != 1 || ref.Metadata["rollout_id"] != w.saved[0].ID {
		t.Fatalf("the refusal names rollout %q; saved %+v", ref.Metadata["rollout_id"], w.saved)
	}
	if w.saved[0].State != migration.RolloutCancelled || !strings.Contains(w.saved[0].StateReason, "connection refused") ||
		len(w.events) != 1 || w.events[0].Kind != migration.EventRolloutCancelled {
		t.Fatalf("saved %+v, events %+v", w.saved, w.events)
	}
}
