package migration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rollouts is the use case of starting, steering and reading rollouts.
type Rollouts struct {
	Store   MigrationStore
	Rollout RolloutStore
	Engine  RolloutEngine
	// Runs previews sampled Candidates.
	Runs *Runs
	Now  Clock
	// Heartbeat is the longest a watcher waits without a message.
	Heartbeat time.Duration
}

// SelectionPreview is what a rollout of a selection would start.
type SelectionPreview struct {
	Count              int
	MissingInputsCount int
	// MissingInputs lists the first maxMissingListed Candidates that miss
	// inputs, with the inputs.
	MissingInputs     []MissingInputs
	NotStartableCount int
	Samples           []CandidatePreview
}

// MissingInputs names the required inputs a Candidate has no value for.
type MissingInputs struct {
	CandidateID string
	Missing     []string
}

// CandidatePreview is a sampled Candidate's preview, or why there is none.
type CandidatePreview struct {
	CandidateID string
	Steps       []StepPreview
	Error       string
}

const (
	maxMissingListed     = 100
	maxMissingInRefusal  = 20
	maxSelectionSample   = 10
	selectionReadWorkers = 16
)

// scan is a resolved selection: the ids a rollout would start, in order,
// with what was found out on the way.
type scan struct {
	ids          []string
	missing      []MissingInputs
	missingCount int
	notStartable int
	// startable are the first Candidates that can start, for samples.
	startable []Candidate
}

// scanSelection resolves sel (a filter once, now) and checks each
// not-started Candidate's required inputs over defaults.
func (u *Rollouts) scanSelection(ctx context.Context, sel Selection, defaults map[string]string, keep int) (Migration, scan, error) {
	var out scan
	m, err := u.Store.GetMigration(ctx, sel.MigrationID)
	if err != nil {
		return Migration{}, out, err
	}
	look := func(c Candidate) {
		out.ids = append(out.ids, c.ID)
		if c.Status != CandidateNotStarted {
			out.notStartable++
			return
		}
		if miss := missingInputs(m, withDefaults(defaults, c.Inputs, nil), c.Inputs); len(miss) > 0 {
			out.missingCount++
			if len(out.missing) < maxMissingListed {
				out.missing = append(out.missing, MissingInputs{CandidateID: c.ID, Missing: miss})
			}
			return
		}
		if len(out.startable) < keep {
			out.startable = append(out.startable, c)
		}
	}
	if sel.Filter == nil {
		if len(sel.CandidateIDs) == 0 {
			return m, out, InvalidArgument("selection", ReasonEmptySelection, "select candidate_ids or a filter")
		}
		cands, err := u.readCandidates(ctx, sel.MigrationID, sel.CandidateIDs)
		if err != nil {
			return m, out, err
		}
		for _, c := range cands {
			look(c)
		}
		return m, out, nil
	}
	f := *sel.Filter
	f.Order, f.Descending = OrderByID, false
	if len(f.Metadata) > MaxCandidateMetadataFilters {
		return m, out, InvalidArgument("selection.filter.metadata", ReasonTooManyMetadataFilters,
			"at most %d metadata pairs, got %d", MaxCandidateMetadataFilters, len(f.Metadata))
	}
	for after := ""; ; {
		page, err := u.Store.ListCandidates(ctx, sel.MigrationID, f, PageRequest{After: after, Limit: MaxCandidatePageSize})
		if err != nil {
			return m, out, err
		}
		// (An estimated count is not a reason: the pages are.)
		if (page.Total > MaxRolloutCandidates && !page.TotalIsEstimate) || len(out.ids)+len(page.Candidates) > MaxRolloutCandidates {
			matched := max(page.Total, int64(len(out.ids)+len(page.Candidates)))
			return m, out, InvalidArgument("selection.filter", ReasonSelectionTooLarge,
				"the filter matches %d candidates; a rollout takes at most %d: narrow the filter (e.g. with id_prefix) and start one rollout per part",
				matched, MaxRolloutCandidates).
				With("matched", strconv.FormatInt(matched, 10)).With("max", strconv.Itoa(MaxRolloutCandidates))
		}
		for _, c := range page.Candidates {
			look(c)
		}
		if page.Next == "" {
			return m, out, nil
		}
		after = page.Next
	}
}

// readCandidates reads the Candidates of ids, selectionReadWorkers at a
// time, in the order of ids; an unknown id is refused naming its place.
func (u *Rollouts) readCandidates(ctx context.Context, m string, ids []string) ([]Candidate, error) {
	out := make([]Candidate, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, selectionReadWorkers)
	for i, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i], errs[i] = u.Store.GetCandidate(ctx, m, id)
		})
	}
	wg.Wait()
	for i, err := range errs {
		var ref *Refusal
		if errors.As(err, &ref) && errors.Is(err, ErrNotFound) {
			ref.Field = fmt.Sprintf("selection.candidate_ids[%d]", i)
			return nil, ref
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// missingInputs lists the required inputs of m with no value in stored
// over defaults.
func missingInputs(m Migration, defaults, stored map[string]string) []string {
	merged := maps.Clone(defaults)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, stored)
	var missing []string
	for _, in := range m.RequiredInputs {
		if strings.TrimSpace(merged[in.Name]) == "" {
			missing = append(missing, in.Name)
		}
	}
	return missing
}

// PreviewSelection says what a rollout of sel would start, with the
// Migrator's previews of up to sample Candidates that can start.
func (u *Rollouts) PreviewSelection(ctx context.Context, sel Selection, defaults map[string]string, sample int) (SelectionPreview, error) {
	sample = min(max(sample, 0), maxSelectionSample)
	_, s, err := u.scanSelection(ctx, sel, defaults, sample)
	if err != nil {
		return SelectionPreview{}, err
	}
	out := SelectionPreview{Count: len(s.ids), MissingInputsCount: s.missingCount, MissingInputs: s.missing,
		NotStartableCount: s.notStartable, Samples: make([]CandidatePreview, len(s.startable))}
	var wg sync.WaitGroup
	for i, c := range s.startable {
		wg.Go(func() {
			steps, err := u.Runs.PreviewRun(ctx, sel.MigrationID, c.ID, withDefaults(defaults, c.Inputs, nil))
			out.Samples[i] = CandidatePreview{CandidateID: c.ID, Steps: steps}
			if err != nil {
				out.Samples[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	return out, nil
}

// StartRollout resolves and checks sel, stores the rollout with the
// snapshot of its Candidates, and starts its workflow.
func (u *Rollouts) StartRollout(ctx context.Context, sel Selection, defaults map[string]string, set RolloutSettings, reason string) (Rollout, error) {
	if set.AfterCanary == "" {
		set.AfterCanary = AfterCanaryApproval
	}
	if err := set.check("settings."); err != nil {
		return Rollout{}, err
	}
	_, s, err := u.scanSelection(ctx, sel, defaults, 0)
	if err != nil {
		return Rollout{}, err
	}
	if len(s.ids) == 0 {
		return Rollout{}, FailedPrecondition(ReasonEmptySelection, "the selection matches no candidate of migration %q", sel.MigrationID)
	}
	if s.missingCount > 0 {
		names := make([]string, 0, maxMissingInRefusal)
		for _, mi := range s.missing[:min(len(s.missing), maxMissingInRefusal)] {
			names = append(names, mi.CandidateID)
		}
		return Rollout{}, FailedPrecondition(ReasonMissingInputs,
			"%d of the %d selected candidates miss required inputs (first: %s misses %s); give them as default inputs or on each candidate",
			s.missingCount, len(s.ids), s.missing[0].CandidateID, strings.Join(s.missing[0].Missing, ", ")).
			With("candidates", strings.Join(names, ",")).With("count", strconv.Itoa(s.missingCount)).
			With("missing", strings.Join(s.missing[0].Missing, ","))
	}
	now := u.Now()
	r := Rollout{
		ID:            newRolloutID(),
		MigrationID:   sel.MigrationID,
		State:         RolloutRunning,
		DefaultInputs: maps.Clone(defaults),
		Settings:      set,
		Progress:      RolloutProgress{Planned: len(s.ids)},
		CreatedBy:     ActorFrom(ctx),
		CreateTime:    now,
		UpdateTime:    now,
		Seq:           1,
	}
	if reason != "" {
		r.StateReason, r.StateActor = reason, r.CreatedBy
	}
	if sel.Filter != nil {
		f := *sel.Filter
		f.Order, f.Descending = "", false
		r.Filter = &f
	}
	if r.Settings.CanarySize >= len(s.ids) {
		// A canary of everything is no canary: nothing would follow it.
		r.Settings.CanarySize = 0
	}
	stored, err := u.Rollout.CreateRollout(ctx, r, s.ids)
	if err != nil {
		return Rollout{}, err
	}
	if err := u.Engine.StartRollout(ctx, stored); err != nil {
		// Its view must not say running with no workflow behind it: end it
		// (the operator starts another once the engine is back).
		ended := stored.Clone()
		ended.State, ended.StateReason, ended.StateActor = RolloutCancelled, "could not start: "+err.Error(), ActorLoom
		ended.EndTime, ended.UpdateTime, ended.Seq = u.Now(), u.Now(), stored.Seq+1
		ev := ended.Event(EventRolloutCancelled, ended.EndTime, ActorLoom, map[string]string{"reason": ended.StateReason})
		if _, serr := u.Rollout.SaveRollout(context.WithoutCancel(ctx), ended, []Event{ev}); serr != nil {
			err = errors.Join(err, serr)
		}
		// The refusal names the rollout it leaves cancelled, so a caller
		// can tell it from the one it starts next.
		var ref *Refusal
		if errors.As(err, &ref) {
			ref.With("rollout_id", r.ID)
		}
		return Rollout{}, fmt.Errorf("start rollout %s: %w", r.ID, err)
	}
	return stored, nil
}

// newRolloutID is "ro-" and 12 random hex digits.
func newRolloutID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "ro-" + hex.EncodeToString(b)
}

// GetRollout reads a rollout's view.
func (u *Rollouts) GetRollout(ctx context.Context, migrationID, rolloutID string) (Rollout, error) {
	return u.Rollout.GetRollout(ctx, migrationID, rolloutID)
}

// ListRollouts pages through a Migration's rollouts, newest first.
func (u *Rollouts) ListRollouts(ctx context.Context, migrationID string, page PageRequest) ([]Rollout, string, error) {
	return u.Rollout.ListRollouts(ctx, migrationID, page)
}

// Control applies an operator's action to a rollout.
func (u *Rollouts) Control(ctx context.Context, migrationID, rolloutID string, c RolloutControl) (Controlled, error) {
	if c.Kind == ControlUpdate {
		if len(c.Mask) == 0 {
			return Controlled{}, InvalidArgument("update_mask", ReasonEmptyUpdateMask, "name at least one setting to change")
		}
		for i, f := range c.Mask {
			if !slices.Contains([]string{SettingMaxInFlight, SettingMaxStartsPerMinute, SettingMaxOpenPRs, SettingPauseOnFailures}, f) {
				return Controlled{}, InvalidArgument(fmt.Sprintf("update_mask[%d]", i), ReasonUnknownSetting, "%q is no setting an update may change", f)
			}
		}
		if err := (RolloutSettings{MaxInFlight: 1}).Apply(c.Settings, c.Mask).check("settings."); err != nil {
			return Controlled{}, err
		}
	}
	view, err := u.Rollout.GetRollout(ctx, migrationID, rolloutID)
	if err != nil {
		return Controlled{}, err
	}
	if view.State.Ended() {
		return Controlled{}, rolloutEnded(view)
	}
	c.Actor = ActorFrom(ctx)
	out, err := u.Engine.ControlRollout(ctx, migrationID, rolloutID, c)
	if errors.Is(err, ErrRunNotActive) {
		// The workflow ended after the read: answer as it ended.
		if view, verr := u.Rollout.GetRollout(ctx, migrationID, rolloutID); verr == nil && view.State.Ended() {
			return Controlled{}, rolloutEnded(view)
		}
		return Controlled{}, Unavailable(ReasonExecutionEngineFailure, "rollout %s has no running workflow yet; try again", rolloutID)
	}
	return out, err
}

func rolloutEnded(r Rollout) error {
	return FailedPrecondition(ReasonRolloutEnded, "rollout %s is %s", r.ID, r.State).
		With("rollout_id", r.ID).With("state", string(r.State))
}

// WatchRollout sends the rollout, then again after every change, until it
// ends or ctx does; heartbeat is called when nothing changed for a while.
func (u *Rollouts) WatchRollout(ctx context.Context, migrationID, rolloutID string, afterVersion int64, send func(Rollout) error, heartbeat func(time.Time) error) error {
	return watchView(ctx, watchedView[Rollout]{
		subscribe: func(ctx context.Context) (<-chan struct{}, error) {
			return u.Rollout.WatchRollout(ctx, migrationID, rolloutID)
		},
		read:    func(ctx context.Context) (Rollout, error) { return u.Rollout.GetRollout(ctx, migrationID, rolloutID) },
		version: func(r Rollout) int64 { return r.Version },
		ended:   func(r Rollout) bool { return r.State.Ended() },
		interrupted: func(last int64) error {
			return Unavailable(ReasonStoreUnavailable, "the watch of rollout %s was interrupted; watch again from version %d", rolloutID, last)
		},
	}, u.Heartbeat, u.Now, afterVersion, send, heartbeat)
}
