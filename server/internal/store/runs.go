package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

var _ migration.RunStore = (*Store)(nil)

// runKeys are the KEYS of beginRunScript and saveRunScript (runKeysDoc).
func runKeys(m, c string) []string {
	return withHistoryKeys(m,
		migrationKey(m),
		candidateKey(m, c),
		runKey(m, c),
		statusIndexPrefix(m),
		statusKindIndexPrefix(m),
		runsKey(m),
		runStatusIndexPrefix(m),
		runStepIndexPrefix(m),
		runStatusStepIndexPrefix(m),
		metricsKey(m),
		burndownKey(m),
		failuresKey(m),
		activityKey(m),
		statusOrderKey(m),
		stepOrderKey(m),
		currentStepIndexPrefix(m),
		stepNamesKey(m),
		runDispatchFailingKey(m),
	)
}

// stepPositionDone is the stepPosition of a completed Run: after every step
// (a Run has at most 100).
const stepPositionDone = 1000

// stepPosition is r's score in stepOrderKey: 0 without a current step
// (cancelled, or not dispatched yet), i+1 while running on step i of its
// steps, stepPositionDone once completed.
func stepPosition(r migration.Run) int {
	switch {
	case r.Status == migration.RunCompleted:
		return stepPositionDone
	case r.Status == migration.RunRunning:
		return len(r.Results)
	}
	return 0
}

// BeginRun moves the Candidate to running for run.Execution, stores the
// Run's inputs on it and creates the run view (see beginRunScript).
func (s *Store) BeginRun(ctx context.Context, run migration.Run) (migration.Run, error) {
	view, err := encodeRun(run)
	if err != nil {
		return migration.Run{}, fmt.Errorf("encode run %s: %w", run.ID, err)
	}
	inputs := run.Inputs
	if inputs == nil {
		inputs = map[string]string{}
	}
	in, err := json.Marshal(inputs)
	if err != nil {
		return migration.Run{}, fmt.Errorf("encode inputs of run %s: %w", run.ID, err)
	}
	starter := run.StartedBy
	if starter == "" {
		starter = migration.ActorFrom(ctx)
	}
	res, err := beginRunScript.Run(ctx, s.rdb, runKeys(run.MigrationID, run.CandidateID),
		s.historyArgsAs(starter, run.StartTime, run.CandidateID, run.Execution, string(in), view, run.Seq, millis(run.StartTime),
			runChannel(run.MigrationID, run.CandidateID), run.ID)...).Slice()
	if err != nil {
		return migration.Run{}, fmt.Errorf("begin run %s: %w", run.ID, err)
	}
	return s.runReply(res, run, "begin run")
}

// observationRecord is a measured duration as saveRunScript takes it.
type observationRecord struct {
	S  string `json:"s"`
	M  bool   `json:"m,omitempty"`
	MS int64  `json:"ms"`
	B  int    `json:"b"`
}

// SaveRun stores a newer view of the current execution, with the events and
// the durations of its change (see saveRunScript), and returns the stored
// view's version.
func (s *Store) SaveRun(ctx context.Context, run migration.Run, events []migration.Event, obs []migration.Observation) (int64, error) {
	view, err := encodeRun(run)
	if err != nil {
		return 0, fmt.Errorf("encode run %s: %w", run.ID, err)
	}
	evs, err := encodeEvents(events)
	if err != nil {
		return 0, err
	}
	recs := make([]observationRecord, len(obs))
	for i, o := range obs {
		recs[i] = observationRecord{S: o.Step, M: o.Merge, MS: o.Duration.Milliseconds(), B: migration.BucketOf(o.Duration)}
	}
	ob, _ := json.Marshal(recs)
	res, err := saveRunScript.Run(ctx, s.rdb, runKeys(run.MigrationID, run.CandidateID),
		s.withHistoryArgs(ctx, run.UpdateTime, run.CandidateID, run.Execution, run.Seq, view, string(run.Status), string(run.CurrentStepStatus()),
			millis(run.UpdateTime), runChannel(run.MigrationID, run.CandidateID), run.CurrentStepName(), evs, string(ob), stepPosition(run))...).Slice()
	if err != nil {
		return 0, fmt.Errorf("save run %s: %w", run.ID, err)
	}
	if err := s.runRefusal(res, run, "save run"); err != nil {
		return 0, err
	}
	ver, err := replyIntAt(res, 1)
	if err != nil || len(res) != 2 {
		return 0, fmt.Errorf("save run %s: unexpected reply %v", run.ID, res)
	}
	return ver, nil
}

func (s *Store) runReply(res []any, run migration.Run, op string) (migration.Run, error) {
	m, c := run.MigrationID, run.CandidateID
	if err := s.runRefusal(res, run, op); err != nil {
		return migration.Run{}, err
	}
	if len(res) != 2 {
		return migration.Run{}, fmt.Errorf("%s %s: unexpected reply %v", op, run.ID, res)
	}
	h, err := replyFields(res[1])
	if err != nil {
		return migration.Run{}, fmt.Errorf("%s %s: %w", op, run.ID, err)
	}
	return decodeRun(m, c, h)
}

// runRefusal turns the refusals of beginRunScript and saveRunScript into
// errors; nil for replyOK.
func (s *Store) runRefusal(res []any, run migration.Run, op string) error {
	m, c := run.MigrationID, run.CandidateID
	code, err := replyCode(res)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, run.ID, err)
	}
	switch code {
	case replyOK:
		return nil
	case replyMigrationNotFound:
		return migration.MigrationNotFound(m)
	case replyCandidateNotFound:
		return migration.CandidateNotFound(m, c)
	case replyCompleted:
		return migration.FailedPrecondition(migration.ReasonCandidateCompleted,
			"candidate %q has completed this migration", c).With("run_id", run.ID)
	case replyStaleExecution:
		cur, _ := replyIntAt(res, 1)
		return migration.FailedPrecondition(migration.ReasonStaleExecution,
			"execution %d of run %s is not the current one (%d)", run.Execution, run.ID, cur).
			With("run_id", run.ID).With("execution", strconv.FormatInt(cur, 10))
	}
	return fmt.Errorf("%s %s: unexpected reply %v", op, run.ID, res)
}

// GetRun returns the run view of Candidate c of m.
func (s *Store) GetRun(ctx context.Context, m, c string) (migration.Run, error) {
	res, err := getRunScript.Run(ctx, s.rdb, []string{runKey(m, c)}).Slice()
	if err != nil {
		return migration.Run{}, fmt.Errorf("get run %s__%s: %w", m, c, err)
	}
	code, err := replyCode(res)
	if err != nil {
		return migration.Run{}, fmt.Errorf("get run %s__%s: %w", m, c, err)
	}
	if code == replyRunNotFound {
		id := migration.RunID(m, c)
		return migration.Run{}, migration.NotFound(migration.ReasonRunNotFound, "run %s not found: the candidate was never started", id).With("run_id", id)
	}
	if code != replyOK || len(res) != 2 {
		return migration.Run{}, fmt.Errorf("get run %s__%s: unexpected reply %v", m, c, res)
	}
	h, err := replyFields(res[1])
	if err != nil {
		return migration.Run{}, fmt.Errorf("get run %s__%s: %w", m, c, err)
	}
	return decodeRun(m, c, h)
}

// ListRuns returns a page of the run views of m in Candidate id order.
func (s *Store) ListRuns(ctx context.Context, m string, f migration.RunFilter, page migration.PageRequest) (migration.RunPage, error) {
	limit := page.Limit
	if limit <= 0 {
		limit = migration.DefaultCandidatePageSize
	}
	var index string
	switch {
	case f.DispatchFailing:
		index = runDispatchFailingKey(m)
	case f.Status != "" && f.CurrentStepStatus != "":
		index = runStatusStepIndexKey(m, string(f.Status), string(f.CurrentStepStatus))
	case f.Status != "":
		index = runStatusIndexKey(m, string(f.Status))
	case f.CurrentStepStatus != "":
		index = runStepIndexKey(m, string(f.CurrentStepStatus))
	default:
		index = runsKey(m)
	}
	total, next, rows, err := s.readPage(ctx, fmt.Sprintf("list runs of %s", m), m, index, runKeyPrefix(m), page.After, limit)
	if err != nil {
		return migration.RunPage{}, err
	}
	out := migration.RunPage{Total: total, Next: next, Runs: make([]migration.Run, 0, len(rows))}
	for _, row := range rows {
		r, err := decodeRun(m, row.id, row.fields)
		if err != nil {
			return migration.RunPage{}, fmt.Errorf("list runs of %s: %w", m, err)
		}
		out.Runs = append(out.Runs, r)
	}
	return out, nil
}

// WatchRun subscribes to the changes of one run view. The channel receives
// a value after every stored change (coalesced: a slow reader sees one value
// for several changes) and is closed when ctx ends or the subscription
// breaks for good.
func (s *Store) WatchRun(ctx context.Context, m, c string) (<-chan struct{}, error) {
	return s.watch(ctx, runChannel(m, c))
}

// watch subscribes to a Pub/Sub channel and forwards its messages as
// coalesced notices until ctx ends.
func (s *Store) watch(ctx context.Context, channel string) (<-chan struct{}, error) {
	return subscribe(ctx, s.rdb, channel, 1, func(*redis.Message) struct{} { return struct{}{} })
}

// subscribe forwards a Pub/Sub channel's messages, as conv makes them, into
// a buffer of size until ctx ends; a message that finds the buffer full is
// dropped (a reader must not hold the subscription up), so readers treat
// the messages as hints. The channel closes when ctx ends.
func subscribe[T any](ctx context.Context, rdb redis.UniversalClient, channel string, size int, conv func(*redis.Message) T) (<-chan T, error) {
	sub := rdb.Subscribe(ctx, channel)
	// Wait for the subscription to be confirmed, so that no change made after
	// subscribe returns can be missed.
	if _, err := sub.Receive(ctx); err != nil {
		_ = sub.Close()
		if u := unreachable(err); u != nil {
			err = u
		}
		return nil, fmt.Errorf("watch %s: %w", channel, err)
	}
	out := make(chan T, size)
	go func() {
		defer close(out)
		defer sub.Close()
		msgs := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case msg, ok := <-msgs:
				if !ok {
					return
				}
				select {
				case out <- conv(msg):
				default:
				}
			}
		}
	}()
	return out, nil
}
