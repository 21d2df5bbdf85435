// Package store keeps Migrations and their Candidates in Redis: it is the
// MigrationStore adapter, and the only package of Loom that imports go-redis.
//
// Keys are built in keys.go, multi-key changes are the Lua scripts of
// scripts.go, storage records and their conversion to domain types are in
// encode.go. Every key of one Migration shares the hash tag {migrationID},
// so the store works on a single Redis and on Redis Cluster alike
// (New takes a redis.UniversalClient). It needs Redis ≥ 6.2.
//
// # The global index
//
// loom:migrations lists every Migration id. It cannot share a slot with
// every Migration, so it is not written by the Migrations' scripts but by a
// separate command right after them: after its script, PutMigration and
// DeleteMigration both reindex the id, making its entry agree with whether
// the Migration exists, and check again (see reindex): a Put and a Delete of
// one id interleaving between their scripts and their index writes can then
// not leave a live Migration unlisted nor a deleted one listed. Put does it
// on every call, not only on create, so that an entry lost to a failure
// between the two commands is repaired by the Migrator's next announce.
// An index entry may thus briefly (or, after a crash between the two
// commands, until the next Put or Delete of that id) name a Migration whose
// hash is gone: ListMigrations skips such entries.
package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// defaultSweepBatch is how many ids one sweepScript call examines: small
// enough that a complete discovery of a large Migration never blocks Redis
// for long (a couple of milliseconds per call), large enough that 100k
// Candidates take 200 round trips (measured: ≈ 370 ms in all, on 2 cores).
const defaultSweepBatch = 500

// Store is the Redis MigrationStore. It is safe for concurrent use, by any
// number of server replicas sharing one Redis.
type Store struct {
	rdb        redis.UniversalClient
	owned      bool // Close closes rdb
	sweepBatch int
	retention  Retention
	// afterDeleteScript, when set (tests only), runs between
	// DeleteMigration's script and its index update, to replay a race.
	afterDeleteScript func(id string)
}

var _ migration.MigrationStore = (*Store)(nil)

// New returns a Store on client, a *redis.Client or a *redis.ClusterClient
// (or a failover client). The caller owns (and closes) the client; New adds
// a hook to it that reports Redis unreachable as migration.ErrUnavailable.
func New(client redis.UniversalClient) *Store {
	client.AddHook(unreachableHook{})
	return &Store{rdb: client, sweepBatch: defaultSweepBatch, retention: DefaultRetention}
}

// PutMigration creates m or replaces its definition (see putMigrationScript).
// updated is true only when the definition changed; an identical re-announce
// writes nothing but the (idempotent) index entry.
func (s *Store) PutMigration(ctx context.Context, m migration.Migration, now time.Time) (stored migration.Migration, created, updated bool, err error) {
	def, err := encodeMigrationDef(m)
	if err != nil {
		return migration.Migration{}, false, false, err
	}
	res, err := putMigrationScript.Run(ctx, s.rdb, withHistoryKeys(m.ID, migrationKey(m.ID)),
		s.withHistoryArgs(ctx, now, def, millis(now))...).Slice()
	if err != nil {
		return migration.Migration{}, false, false, fmt.Errorf("put migration %s: %w", m.ID, err)
	}
	if len(res) != 3 {
		return migration.Migration{}, false, false, fmt.Errorf("put migration %s: unexpected reply %v", m.ID, res)
	}
	c, err1 := replyInt(res[0])
	u, err2 := replyInt(res[1])
	h, err3 := replyFields(res[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return migration.Migration{}, false, false, fmt.Errorf("put migration %s: %w", m.ID, err)
	}
	// Always (not only on create): repairs an entry lost between the script
	// and this command by an earlier failure. See the package doc.
	if err := s.reindex(ctx, m.ID); err != nil {
		return migration.Migration{}, false, false, fmt.Errorf("put migration %s: index: %w", m.ID, err)
	}
	stored, err = decodeMigration(m.ID, h)
	if err != nil {
		return migration.Migration{}, false, false, err
	}
	return stored, c == 1, u == 1, nil
}

// GetMigration returns the Migration id with its Candidate counts.
func (s *Store) GetMigration(ctx context.Context, id string) (migration.Migration, error) {
	h, err := s.rdb.HGetAll(ctx, migrationKey(id)).Result()
	if err != nil {
		return migration.Migration{}, fmt.Errorf("get migration %s: %w", id, err)
	}
	if len(h) == 0 {
		return migration.Migration{}, migration.MigrationNotFound(id)
	}
	return decodeMigration(id, h)
}

// ListMigrations returns the page of Migrations whose ids sort after
// page.After, in id order, with their counts. A page may hold fewer than
// page.Limit Migrations when index entries name deleted Migrations (they are
// skipped); Next is then still the last id of the page's window, so paging
// always moves forward. page.Limit ≤ 0 means
// migration.DefaultMigrationPageSize.
func (s *Store) ListMigrations(ctx context.Context, page migration.PageRequest) (migration.MigrationPage, error) {
	limit := page.Limit
	if limit <= 0 {
		limit = migration.DefaultMigrationPageSize
	}
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key:   migrationsKey(),
		Start: lexAfter(page.After),
		Stop:  "+",
		ByLex: true,
		Count: int64(limit) + 1,
	}).Result()
	if err != nil {
		return migration.MigrationPage{}, fmt.Errorf("list migrations: %w", err)
	}
	var out migration.MigrationPage
	if len(ids) > limit {
		ids = ids[:limit]
		out.Next = ids[limit-1]
	}
	if len(ids) == 0 {
		return out, nil
	}
	// One pipeline; on Redis Cluster go-redis splits it per node.
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, migrationKey(id))
		}
		return nil
	})
	if err != nil {
		return migration.MigrationPage{}, fmt.Errorf("list migrations: %w", err)
	}
	for i, id := range ids {
		h := cmds[i].Val()
		if len(h) == 0 {
			continue // deleted; its index entry is about to go (see package doc)
		}
		m, err := decodeMigration(id, h)
		if err != nil {
			return migration.MigrationPage{}, fmt.Errorf("list migrations: %w", err)
		}
		out.Migrations = append(out.Migrations, m)
	}
	return out, nil
}

// DeleteMigration removes the Migration id, its Candidates, their indexes
// (and, once the Runs issue adds them, its Run views), refusing while a
// Candidate is running. It returns the number of Candidates deleted.
func (s *Store) DeleteMigration(ctx context.Context, id string, now time.Time) (int64, error) {
	res, err := deleteMigrationScript.Run(ctx, s.rdb, withHistoryKeys(id,
		migrationKey(id),
		candidatesKey(id),
		kindsKey(id),
		candidateKeyPrefix(id),
		statusIndexPrefix(id),
		kindIndexPrefix(id),
		statusKindIndexPrefix(id),
		runKeyPrefix(id),
		runsKey(id),
		runStatusIndexPrefix(id),
		runStepIndexPrefix(id),
		runStatusStepIndexPrefix(id),
		metricsKey(id),
		burndownKey(id),
		failuresKey(id),
		activityKey(id),
		statusOrderKey(id),
		stepOrderKey(id),
		stepNamesKey(id),
		currentStepIndexPrefix(id),
		metadataPairsKey(id),
		metadataIndexPrefix(id),
		listTempKey(id),
		listPrefixTempKey(id),
	), s.withHistoryArgs(ctx, now, millis(now))...).Slice()
	if err != nil {
		return 0, fmt.Errorf("delete migration %s: %w", id, err)
	}
	code, err := replyCode(res)
	if err != nil {
		return 0, fmt.Errorf("delete migration %s: %w", id, err)
	}
	switch code {
	case replyMigrationNotFound:
		// Drop a stale index entry if one was left by a crash; best effort,
		// the answer is "not found" either way.
		_ = s.reindex(ctx, id)
		return 0, migration.MigrationNotFound(id)
	case replyHasRunning:
		n, _ := replyIntAt(res, 1)
		return 0, migration.FailedPrecondition(migration.ReasonMigrationHasRunning,
			"migration %q has %d running candidates", id, n).
			With("migration_id", id).With("running_candidates", strconv.FormatInt(n, 10))
	case replyOK:
	default:
		return 0, fmt.Errorf("delete migration %s: unexpected reply %v", id, res)
	}
	n, err := replyIntAt(res, 1)
	if err != nil {
		return 0, fmt.Errorf("delete migration %s: %w", id, err)
	}
	if s.afterDeleteScript != nil {
		s.afterDeleteScript(id)
	}
	if err := s.reindex(ctx, id); err != nil {
		return 0, fmt.Errorf("delete migration %s: index: %w", id, err)
	}
	return n, nil
}

// reindex makes the global index entry of id agree with whether the
// Migration exists, after a script that created or deleted it. Puts and
// deletes of one id may interleave between their scripts and these commands
// (see the package doc), so it writes what it read, then reads again and
// repeats while the Migration changed meanwhile: whichever reindex writes
// last has read the final state, so the index converges once the writers are
// quiet.
func (s *Store) reindex(ctx context.Context, id string) error {
	for {
		before, err := s.rdb.Exists(ctx, migrationKey(id)).Result()
		if err != nil {
			return err
		}
		if before > 0 {
			err = s.rdb.ZAdd(ctx, migrationsKey(), redis.Z{Member: id}).Err()
		} else {
			err = s.rdb.ZRem(ctx, migrationsKey(), id).Err()
		}
		if err != nil {
			return err
		}
		after, err := s.rdb.Exists(ctx, migrationKey(id)).Result()
		if err != nil {
			return err
		}
		if after == before {
			return nil
		}
	}
}

// SubmitCandidates merges a submission into its Migration in one atomic
// script (see submitScript): new Candidates are added not_started, known
// not_started ones updated when their discovered data changed, running and
// completed ones left alone. Result lists are in submission order.
//
// Every submitted not_started Candidate is marked with the submission's
// round (s.Round, or a fresh random value when it is empty, which makes this
// submission a round of its own). When s.Complete is set, the not_started
// Candidates not marked with this round are then flagged no longer
// discovered, in batches (see sweepScript) so that a large Migration never
// blocks Redis; they are listed in id order. Submitting a flagged Candidate
// again clears the flag (it counts as updated).
//
// Rounds assume a Migrator uses a fresh Round name for each pass. One edge:
// a Candidate submitted while running (left alone, so not marked) and moved
// back to not_started (a cancelled Run) before the same round completes is
// flagged; the next pass that reports it clears the flag.
func (s *Store) SubmitCandidates(ctx context.Context, sub migration.Submission, now time.Time) (migration.SubmitResult, error) {
	m := sub.MigrationID
	round := sub.Round
	if round == "" {
		round = "r:" + rand.Text()
	}
	args := make([]any, 0, 2+4*len(sub.Candidates))
	args = append(args, millis(now), round)
	for _, c := range sub.Candidates {
		def, err := encodeCandidateDef(c)
		if err != nil {
			return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: %w", m, err)
		}
		args = append(args, c.ID, c.Kind, def, encodeMetadataPairs(c.Metadata))
	}
	res, err := submitScript.Run(ctx, s.rdb, withHistoryKeys(m,
		migrationKey(m),
		candidatesKey(m),
		kindsKey(m),
		candidateKeyPrefix(m),
		statusIndexPrefix(m),
		kindIndexPrefix(m),
		statusKindIndexPrefix(m),
		statusOrderKey(m),
		stepOrderKey(m),
		metadataIndexPrefix(m),
		metadataPairsKey(m),
	), s.withHistoryArgs(ctx, now, args...)...).Slice()
	if err != nil {
		return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: %w", m, err)
	}
	code, err := replyCode(res)
	if err != nil {
		return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: %w", m, err)
	}
	switch {
	case code == replyMigrationNotFound:
		return migration.SubmitResult{}, migration.MigrationNotFound(m)
	case code != replyOK || len(res) != 1+len(sub.Candidates):
		return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: unexpected reply of %d elements", m, len(res))
	}
	var out migration.SubmitResult
	for i, c := range sub.Candidates {
		o, err := replyInt(res[1+i])
		if err != nil {
			return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: %w", m, err)
		}
		switch o {
		case outcomeAdded:
			out.Added = append(out.Added, c.ID)
		case outcomeUpdated:
			out.Updated = append(out.Updated, c.ID)
		case outcomeUnchanged:
			out.Unchanged = append(out.Unchanged, c.ID)
		case outcomeLeftAlone:
			out.LeftAlone = append(out.LeftAlone, c.ID)
		default:
			return migration.SubmitResult{}, fmt.Errorf("submit candidates to %s: unexpected outcome %d", m, o)
		}
	}
	if sub.Complete {
		gone, err := s.sweep(ctx, m, round, now)
		if err != nil {
			return migration.SubmitResult{}, err
		}
		out.NoLongerDiscovered = gone
	}
	return out, nil
}

// sweep flags the not_started Candidates of m whose round is not round, one
// batch of s.sweepBatch ids per script call, and returns their ids.
func (s *Store) sweep(ctx context.Context, m, round string, now time.Time) ([]string, error) {
	keys := []string{migrationKey(m), statusIndexKey(m, string(migration.CandidateNotStarted)), candidateKeyPrefix(m), changeIndexKey(m)}
	var flagged []string
	after := ""
	for {
		res, err := sweepScript.Run(ctx, s.rdb, keys, after, s.sweepBatch, round, millis(now)).Slice()
		if err != nil {
			return nil, fmt.Errorf("complete discovery of %s: %w", m, err)
		}
		code, err := replyCode(res)
		if err != nil {
			return nil, fmt.Errorf("complete discovery of %s: %w", m, err)
		}
		if code == replyMigrationNotFound {
			return nil, migration.MigrationNotFound(m) // deleted during the sweep
		}
		if code != replyOK || len(res) < 2 {
			return nil, fmt.Errorf("complete discovery of %s: unexpected reply %v", m, res)
		}
		next, err := replyString(res[1])
		if err != nil {
			return nil, fmt.Errorf("complete discovery of %s: %w", m, err)
		}
		for _, v := range res[2:] {
			id, err := replyString(v)
			if err != nil {
				return nil, fmt.Errorf("complete discovery of %s: %w", m, err)
			}
			flagged = append(flagged, id)
		}
		if next == "" {
			return flagged, nil
		}
		after = next
	}
}

// ListCandidates returns one page of m's Candidates matching f, in f's
// order, with each one's progress and the number of Candidates matching f,
// read in one script (one round trip, one consistent view; see
// listCandidatesScript for what each filter and order costs). page.Limit ≤ 0
// means migration.DefaultCandidatePageSize; page.After is the Next of the
// previous page, made with the same filter.
func (s *Store) ListCandidates(ctx context.Context, m string, f migration.CandidateFilter, page migration.PageRequest) (migration.CandidatePage, error) {
	if f.Status != "" && !f.Status.Valid() {
		return migration.CandidatePage{}, migration.InvalidArgument("status", "INVALID_STATUS", "unknown candidate status %q", f.Status)
	}
	if f.CurrentStepStatus != "" && !slices.Contains(migration.StepStatuses, f.CurrentStepStatus) {
		return migration.CandidatePage{}, migration.InvalidArgument("current_step_status", "INVALID_STATUS", "unknown step status %q", f.CurrentStepStatus)
	}
	afterScore, afterID, err := parseCandidateCursor(page.After)
	if err != nil {
		return migration.CandidatePage{}, err
	}
	limit := page.Limit
	if limit <= 0 {
		limit = migration.DefaultCandidatePageSize
	}
	order, lex := candidatesKey(m), "1"
	switch f.Order {
	case "", migration.OrderByID:
	case migration.OrderByStatus:
		order, lex = statusOrderKey(m), "0"
	case migration.OrderByCurrentStep:
		order, lex = stepOrderKey(m), "0"
	case migration.OrderByLastChange:
		order, lex = changeIndexKey(m), "0"
	default:
		return migration.CandidatePage{}, migration.InvalidArgument("order_by", "INVALID_ORDER", "unknown candidate order %q", f.Order)
	}
	keys := []string{migrationKey(m), candidateKeyPrefix(m), runKeyPrefix(m), changeIndexKey(m), order,
		candidatesKey(m), listTempKey(m), listPrefixTempKey(m)}
	switch {
	case f.Status != "" && f.Kind != "":
		keys = append(keys, statusKindIndexKey(m, string(f.Status), f.Kind))
	case f.Status != "":
		keys = append(keys, statusIndexKey(m, string(f.Status)))
	case f.Kind != "":
		keys = append(keys, kindIndexKey(m, f.Kind))
	}
	if f.CurrentStep != "" {
		keys = append(keys, currentStepIndexKey(m, f.CurrentStep))
	}
	if f.CurrentStepStatus != "" {
		keys = append(keys, runStepIndexKey(m, string(f.CurrentStepStatus)))
	}
	for _, k := range slices.Sorted(maps.Keys(f.Metadata)) {
		keys = append(keys, metadataIndexKey(m, k, f.Metadata[k]))
	}
	desc := "0"
	if f.Descending {
		desc = "1"
	}
	what := fmt.Sprintf("list candidates of %s", m)
	res, err := listCandidatesScript.Run(ctx, s.rdb, keys, lex, f.IDPrefix, desc, afterScore, afterID, limit+1).Slice()
	if err != nil {
		return migration.CandidatePage{}, fmt.Errorf("%s: %w", what, err)
	}
	code, err := replyCode(res)
	if err != nil {
		return migration.CandidatePage{}, fmt.Errorf("%s: %w", what, err)
	}
	if code == replyMigrationNotFound {
		return migration.CandidatePage{}, migration.MigrationNotFound(m)
	}
	const width = 5 // id, score, hash, run fields, last change
	if code != replyOK || len(res) < 2 || (len(res)-2)%width != 0 {
		return migration.CandidatePage{}, fmt.Errorf("%s: unexpected reply of %d elements", what, len(res))
	}
	var out migration.CandidatePage
	if out.Total, err = replyInt(res[1]); err != nil {
		return migration.CandidatePage{}, fmt.Errorf("%s: %w", what, err)
	}
	rows := res[2:]
	more := len(rows)/width > limit
	if more {
		rows = rows[:width*limit]
	}
	out.Candidates = make([]migration.Candidate, 0, len(rows)/width)
	for i := 0; i < len(rows); i += width {
		id, err1 := replyString(rows[i])
		score, err2 := replyString(rows[i+1])
		h, err3 := replyFields(rows[i+2])
		if err := errors.Join(err1, err2, err3); err != nil {
			return migration.CandidatePage{}, fmt.Errorf("%s: %w", what, err)
		}
		if more && i == len(rows)-width {
			out.Next = id // in id order, the id is the place
			if lex != "1" {
				out.Next = score + " " + id
			}
		}
		if len(h) == 0 {
			continue // cannot happen: indexes and hashes change together
		}
		c, err := decodeCandidateRow(m, id, h, rows[i+3], rows[i+4])
		if err != nil {
			return migration.CandidatePage{}, fmt.Errorf("%s: %w", what, err)
		}
		out.Candidates = append(out.Candidates, c)
	}
	return out, nil
}

// parseCandidateCursor reads a CandidatePage.Next: "<score> <id>", the
// place of the last row in the listing's order. A bare id (the cursor of
// listings in id order before orders existed) has score 0.
func parseCandidateCursor(after string) (score, id string, err error) {
	if after == "" {
		return "", "", nil
	}
	score, id, ok := strings.Cut(after, " ")
	if !ok {
		return "0", after, nil
	}
	if f, perr := strconv.ParseFloat(score, 64); perr != nil || math.IsNaN(f) || math.IsInf(f, 0) || id == "" {
		return "", "", migration.InvalidArgument("page_token", migration.ReasonInvalidPageToken, "malformed candidate cursor")
	}
	return score, id, nil
}

// GetCandidate returns one Candidate of m.
func (s *Store) GetCandidate(ctx context.Context, m, c string) (migration.Candidate, error) {
	res, err := getCandidateScript.Run(ctx, s.rdb, []string{migrationKey(m), candidateKey(m, c), runKey(m, c), changeIndexKey(m)}, c).Slice()
	if err != nil {
		return migration.Candidate{}, fmt.Errorf("get candidate %s/%s: %w", m, c, err)
	}
	return candidateReply(res, m, c, "get candidate")
}

// GetMigrationAndCandidate reads Candidate c of m and m itself in one
// round trip (see getMigrationCandidateScript).
func (s *Store) GetMigrationAndCandidate(ctx context.Context, m, c string) (migration.Migration, migration.Candidate, error) {
	res, err := getMigrationCandidateScript.Run(ctx, s.rdb, []string{migrationKey(m), candidateKey(m, c), runKey(m, c), changeIndexKey(m)}, c).Slice()
	if err != nil {
		return migration.Migration{}, migration.Candidate{}, fmt.Errorf("get candidate %s/%s: %w", m, c, err)
	}
	if len(res) != 5 {
		_, err := candidateReply(res, m, c, "get candidate")
		if err == nil {
			err = fmt.Errorf("get candidate %s/%s: unexpected reply %v", m, c, res)
		}
		return migration.Migration{}, migration.Candidate{}, err
	}
	cand, err := candidateReply(res[:4], m, c, "get candidate")
	if err != nil {
		return migration.Migration{}, migration.Candidate{}, err
	}
	h, err := replyFields(res[4])
	if err != nil {
		return migration.Migration{}, migration.Candidate{}, fmt.Errorf("get migration %s: %w", m, err)
	}
	mig, err := decodeMigration(m, h)
	return mig, cand, err
}

// UpdateCandidateInputs removes change.Remove then sets change.Set in the
// stored inputs of a Candidate, in any status, and moves its update time to
// now (see updateInputsScript).
func (s *Store) UpdateCandidateInputs(ctx context.Context, m, c string, change migration.InputChange, now time.Time) (migration.Candidate, error) {
	args := make([]any, 0, 3+len(change.Remove)+2*len(change.Set))
	args = append(args, millis(now), c, len(change.Remove))
	for _, k := range change.Remove {
		args = append(args, k)
	}
	for _, k := range slices.Sorted(maps.Keys(change.Set)) {
		args = append(args, k, change.Set[k])
	}
	res, err := updateInputsScript.Run(ctx, s.rdb, withHistoryKeys(m, migrationKey(m), candidateKey(m, c), runKey(m, c)),
		s.withHistoryArgs(ctx, now, args...)...).Slice()
	if err != nil {
		return migration.Candidate{}, fmt.Errorf("update inputs of candidate %s/%s: %w", m, c, err)
	}
	return candidateReply(res, m, c, "update inputs of candidate")
}

// candidateReply decodes {code, HGETALL, run fields, last change} replies of
// getCandidateScript and updateInputsScript.
func candidateReply(res []any, m, c, op string) (migration.Candidate, error) {
	code, err := replyCode(res)
	if err != nil {
		return migration.Candidate{}, fmt.Errorf("%s %s/%s: %w", op, m, c, err)
	}
	switch code {
	case replyMigrationNotFound:
		return migration.Candidate{}, migration.MigrationNotFound(m)
	case replyCandidateNotFound:
		return migration.Candidate{}, migration.CandidateNotFound(m, c)
	case replyOK:
	default:
		return migration.Candidate{}, fmt.Errorf("%s %s/%s: unexpected reply %v", op, m, c, res)
	}
	if len(res) != 4 {
		return migration.Candidate{}, fmt.Errorf("%s %s/%s: unexpected reply %v", op, m, c, res)
	}
	h, err := replyFields(res[1])
	if err != nil {
		return migration.Candidate{}, fmt.Errorf("%s %s/%s: %w", op, m, c, err)
	}
	return decodeCandidateRow(m, c, h, res[2], res[3])
}

// SetCandidateStatus moves Candidate c of m from status from to status to,
// atomically and in O(log N) (see setStatusScript). When the Candidate's
// status is not from, it changes nothing and refuses with
// migration.ErrFailedPrecondition, reason migration.ReasonCandidateStatusChanged and
// the current status in the metadata key "status". from == to is accepted
// and writes nothing. Unknown ids are refusals wrapping migration.ErrNotFound.
func (s *Store) SetCandidateStatus(ctx context.Context, m, c string, from, to migration.CandidateStatus, now time.Time) error {
	if !from.Valid() {
		return migration.InvalidArgument("from", "INVALID_STATUS", "unknown candidate status %q", from)
	}
	if !to.Valid() {
		return migration.InvalidArgument("to", "INVALID_STATUS", "unknown candidate status %q", to)
	}
	res, err := setStatusScript.Run(ctx, s.rdb, []string{
		migrationKey(m),
		candidateKey(m, c),
		statusIndexPrefix(m),
		statusKindIndexPrefix(m),
		statusOrderKey(m),
		changeIndexKey(m),
	}, c, string(from), string(to), millis(now)).Slice()
	if err != nil {
		return fmt.Errorf("set status of candidate %s/%s: %w", m, c, err)
	}
	code, err := replyCode(res)
	if err != nil {
		return fmt.Errorf("set status of candidate %s/%s: %w", m, c, err)
	}
	switch code {
	case replyOK:
		return nil
	case replyMigrationNotFound:
		return migration.MigrationNotFound(m)
	case replyCandidateNotFound:
		return migration.CandidateNotFound(m, c)
	case replyStatusChanged:
		cur := ""
		if len(res) > 1 {
			cur, _ = replyString(res[1])
		}
		return migration.FailedPrecondition(migration.ReasonCandidateStatusChanged,
			"candidate %q of migration %q is %s, not %s", c, m, cur, from).
			With("migration_id", m).With("candidate_id", c).With("status", cur)
	}
	return fmt.Errorf("set status of candidate %s/%s: unexpected reply %v", m, c, res)
}

// lexAfter is the ZRANGE BYLEX lower bound of the ids strictly after after;
// "" means from the first.
func lexAfter(after string) string {
	if after == "" {
		return "-"
	}
	return "(" + after
}

// Script replies, decoded. Lua integers arrive as int64, strings as string,
// tables as []any (RESP2 and RESP3 alike).

func replyCode(res []any) (int64, error) {
	if len(res) == 0 {
		return 0, errors.New("empty script reply")
	}
	return replyInt(res[0])
}

func replyIntAt(res []any, i int) (int64, error) {
	if i >= len(res) {
		return 0, fmt.Errorf("short script reply %v", res)
	}
	return replyInt(res[i])
}

func replyInt(v any) (int64, error) {
	switch n := v.(type) {
	case int64:
		return n, nil
	case string:
		return strconv.ParseInt(n, 10, 64)
	}
	return 0, fmt.Errorf("unexpected %T in script reply, want integer", v)
}

func replyString(v any) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", fmt.Errorf("unexpected %T in script reply, want string", v)
}

// replyFields turns the flat field/value array of HGETALL (as a script sees
// it) into a map.
func replyFields(v any) (map[string]string, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("unexpected %T in script reply, want array", v)
	}
	if len(a)%2 != 0 {
		return nil, errors.New("odd field list in script reply")
	}
	h := make(map[string]string, len(a)/2)
	for i := 0; i < len(a); i += 2 {
		k, err1 := replyString(a[i])
		val, err2 := replyString(a[i+1])
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		h[k] = val
	}
	return h, nil
}

// pageRow is one hash read by listPageScript: a Candidate or a run view.
type pageRow struct {
	id     string
	fields map[string]string
}

// readPage reads up to limit rows of index after the id after, with the
// index's size and the cursor of the next page ("" on the last). what names
// the read in errors; an unknown Migration is reported as such, unwrapped.
func (s *Store) readPage(ctx context.Context, what, m, index, prefix, after string, limit int) (total int64, next string, rows []pageRow, err error) {
	res, err := listPageScript.Run(ctx, s.rdb, []string{migrationKey(m), index, prefix}, after, limit+1).Slice()
	if err != nil {
		return 0, "", nil, fmt.Errorf("%s: %w", what, err)
	}
	code, err := replyCode(res)
	if err != nil {
		return 0, "", nil, fmt.Errorf("%s: %w", what, err)
	}
	if code == replyMigrationNotFound {
		return 0, "", nil, migration.MigrationNotFound(m)
	}
	if code != replyOK || len(res) < 2 || len(res)%2 != 0 {
		return 0, "", nil, fmt.Errorf("%s: unexpected reply of %d elements", what, len(res))
	}
	if total, err = replyInt(res[1]); err != nil {
		return 0, "", nil, fmt.Errorf("%s: %w", what, err)
	}
	items := res[2:]
	if len(items)/2 > limit {
		items = items[:2*limit]
		if next, err = replyString(items[2*limit-2]); err != nil {
			return 0, "", nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	rows = make([]pageRow, 0, len(items)/2)
	for i := 0; i < len(items); i += 2 {
		id, err1 := replyString(items[i])
		h, err2 := replyFields(items[i+1])
		if err := errors.Join(err1, err2); err != nil {
			return 0, "", nil, fmt.Errorf("%s: %w", what, err)
		}
		if len(h) == 0 {
			continue // cannot happen: indexes and hashes change together
		}
		rows = append(rows, pageRow{id: id, fields: h})
	}
	return total, next, rows, nil
}
