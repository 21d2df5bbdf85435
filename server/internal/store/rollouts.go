package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/loomhq/loom/server/internal/migration"
)

// rollouts.go owns rollouts: their views (written by their workflows), the
// snapshot of the Candidates each selected, the index of a Migration's
// rollouts, and their change channel. Keys:
//
//	loom:{m}:rollouts             ZSET  rollout ids of m, scored by creation (ms)
//	loom:{m}:rollout:<r>          HASH  v: JSON Rollout; seq; ver
//	loom:{m}:rollout:<r>:ids      LIST  the Candidate ids it selected, in order
//
// and the Pub/Sub channel loom:{m}:rollout:<r>:changes (the message is the
// view's version). Rollout ids are "ro-" and hex digits: they cannot collide
// with the other keys of the Migration ("rollout:" is new under the tag).

var _ migration.RolloutStore = (*Store)(nil)

// rolloutsKey indexes the rollouts of m.
func rolloutsKey(m string) string { return migrationTag(m) + "rollouts" }

// rolloutKey holds the view of rollout r of m.
func rolloutKey(m, r string) string { return migrationTag(m) + "rollout:" + r }

// rolloutIDsKey holds the Candidate ids rollout r selected.
func rolloutIDsKey(m, r string) string { return rolloutKey(m, r) + ":ids" }

// rolloutChannel announces the stored changes of rolloutKey(m, r).
func rolloutChannel(m, r string) string { return rolloutKey(m, r) + ":changes" }

// ofRollout declares the key of one rollout: the script's run is passed the
// rollout id where other scripts pass a Candidate id.
func ofRollout(name string, key func(m, r string) string) scriptKey {
	return scriptKey{name: name, key: key, perCandidate: true}
}

// rolloutIDsChunk is how many ids one RPUSH of a snapshot carries.
const rolloutIDsChunk = 1000

// createRolloutScript creates a rollout's view and indexes it, recording
// its start.
//
//	ARGV[1] view JSON, ARGV[2] seq, ARGV[3] creation (ms), ARGV[4] rollout
//	id, ARGV[5] events JSON; then the history ARGV
//
// Returns {replyMigrationNotFound}, {replyOK, 0} when it exists already
// (unchanged), or {replyOK, version}.
var createRolloutScript = newHistoryScript(scriptKeys{
	ofMigration("k_migration", migrationKey),
	ofMigration("k_rollouts", rolloutsKey),
	ofRollout("k_rollout", rolloutKey),
}, `
if redis.call('EXISTS', k_migration) == 0 then return {1} end
if redis.call('EXISTS', k_rollout) == 1 then return {0, 0} end
redis.call('HSET', k_rollout, 'v', ARGV[1], 'seq', ARGV[2], 'ver', 1)
redis.call('ZADD', k_rollouts, ARGV[3], ARGV[4])
for _, e in ipairs(cjson.decode(ARGV[5])) do addEvent(e) end
redis.call('PUBLISH', k_rollout .. ':changes', 1)
return {0, 1}
`)

// CreateRollout stores a new rollout and the snapshot of its Candidates.
// The snapshot is written first, in chunks; should the view's script fail,
// it is removed again.
func (s *Store) CreateRollout(ctx context.Context, r migration.Rollout, ids []string) (migration.Rollout, error) {
	view, err := json.Marshal(r)
	if err != nil {
		return migration.Rollout{}, err
	}
	idsKey := rolloutIDsKey(r.MigrationID, r.ID)
	pipe := s.rdb.TxPipeline()
	pipe.Del(ctx, idsKey)
	for i := 0; i < len(ids); i += rolloutIDsChunk {
		chunk := ids[i:min(i+rolloutIDsChunk, len(ids))]
		args := make([]any, len(chunk))
		for j, id := range chunk {
			args[j] = id
		}
		pipe.RPush(ctx, idsKey, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return migration.Rollout{}, fmt.Errorf("create rollout %s: %w", r.ID, err)
	}
	events, err := encodeEvents([]migration.Event{r.Event(migration.EventRolloutStarted, r.CreateTime, r.CreatedBy,
		startedDetails(r))})
	if err != nil {
		return migration.Rollout{}, err
	}
	res, err := createRolloutScript.run(ctx, s.rdb, r.MigrationID, r.ID, nil,
		s.historyArgsAs(r.CreatedBy, r.CreateTime, string(view), r.Seq, millis(r.CreateTime), r.ID, events)...).Slice()
	if err == nil {
		var code int64
		if code, err = replyCode(res); err == nil && code == replyMigrationNotFound {
			err = migration.MigrationNotFound(r.MigrationID)
		}
	}
	if err != nil {
		_ = s.rdb.Del(context.WithoutCancel(ctx), idsKey).Err()
		return migration.Rollout{}, fmt.Errorf("create rollout %s: %w", r.ID, err)
	}
	if ver, _ := replyIntAt(res, 1); ver == 0 {
		return migration.Rollout{}, migration.AlreadyExists(migration.ReasonRolloutExists, "rollout %q exists", r.ID)
	}
	r.Version = 1
	return r, nil
}

// startedDetails are a rollout start's event details: its settings and how
// many Candidates it planned.
func startedDetails(r migration.Rollout) map[string]string {
	d := migration.SettingsDetails(r.Settings)
	d["planned"] = strconv.Itoa(r.Progress.Planned)
	if r.StateReason != "" {
		d["reason"] = r.StateReason
	}
	return d
}

// saveRolloutScript stores a rollout's view when it is newer.
//
//	ARGV[1] view JSON, ARGV[2] seq, ARGV[3] events JSON; then the history
//	ARGV
//
// Returns {replyOK, version, changed (0|1)}, or {replyRunNotFound} when the
// rollout is gone (its Migration was deleted).
var saveRolloutScript = newHistoryScript(scriptKeys{
	ofRollout("k_rollout", rolloutKey),
}, `
if redis.call('EXISTS', k_rollout) == 0 then return {7} end
local seq = tonumber(redis.call('HGET', k_rollout, 'seq') or '0')
if tonumber(ARGV[2]) <= seq then
  return {0, tonumber(redis.call('HGET', k_rollout, 'ver')), 0}
end
local ver = redis.call('HINCRBY', k_rollout, 'ver', 1)
redis.call('HSET', k_rollout, 'v', ARGV[1], 'seq', ARGV[2])
for _, e in ipairs(cjson.decode(ARGV[3])) do addEvent(e) end
redis.call('PUBLISH', k_rollout .. ':changes', ver)
return {0, ver, 1}
`)

// SaveRollout stores r's view when r.Seq is newer than the stored one.
func (s *Store) SaveRollout(ctx context.Context, r migration.Rollout, events []migration.Event) (int64, error) {
	view, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	enc, err := encodeEvents(events)
	if err != nil {
		return 0, err
	}
	res, err := saveRolloutScript.run(ctx, s.rdb, r.MigrationID, r.ID, nil,
		s.historyArgsAs(migration.ActorLoom, r.UpdateTime, string(view), r.Seq, enc)...).Slice()
	if err != nil {
		return 0, fmt.Errorf("save rollout %s: %w", r.ID, err)
	}
	if code, _ := replyCode(res); code == replyRunNotFound {
		return 0, migration.RolloutNotFound(r.MigrationID, r.ID)
	}
	return replyIntAt(res, 1)
}

// GetRollout reads a rollout's view.
func (s *Store) GetRollout(ctx context.Context, m, id string) (migration.Rollout, error) {
	h, err := s.rdb.HMGet(ctx, rolloutKey(m, id), "v", "ver").Result()
	if err != nil {
		return migration.Rollout{}, fmt.Errorf("get rollout %s: %w", id, err)
	}
	return decodeRollout(m, id, h)
}

func decodeRollout(m, id string, h []any) (migration.Rollout, error) {
	v, ok := h[0].(string)
	if !ok {
		return migration.Rollout{}, migration.RolloutNotFound(m, id)
	}
	var r migration.Rollout
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return migration.Rollout{}, fmt.Errorf("decode rollout %s: %w", id, err)
	}
	ver, _ := h[1].(string)
	r.Version, _ = strconv.ParseInt(ver, 10, 64)
	return r, nil
}

// ListRollouts returns a page of m's rollouts, newest first. The page token
// is the last rollout's id.
func (s *Store) ListRollouts(ctx context.Context, m string, page migration.PageRequest) ([]migration.Rollout, string, error) {
	if _, err := s.GetMigration(ctx, m); err != nil {
		return nil, "", err
	}
	limit := page.Limit
	if limit <= 0 {
		limit = 20
	}
	start := int64(0)
	if page.After != "" {
		rank, err := s.rdb.ZRevRank(ctx, rolloutsKey(m), page.After).Result()
		if errors.Is(err, redis.Nil) {
			return nil, "", migration.InvalidArgument("page_token", migration.ReasonInvalidPageToken, "the page token names no rollout of %q", m)
		}
		if err != nil {
			return nil, "", fmt.Errorf("list rollouts of %s: %w", m, err)
		}
		start = rank + 1
	}
	ids, err := s.rdb.ZRevRange(ctx, rolloutsKey(m), start, start+int64(limit)).Result()
	if err != nil {
		return nil, "", fmt.Errorf("list rollouts of %s: %w", m, err)
	}
	next := ""
	if len(ids) > limit {
		ids, next = ids[:limit], ids[limit-1]
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, rolloutKey(m, id), "v", "ver")
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, "", fmt.Errorf("list rollouts of %s: %w", m, err)
		}
	}
	out := make([]migration.Rollout, 0, len(ids))
	for i, id := range ids {
		r, err := decodeRollout(m, id, cmds[i].Val())
		if errors.Is(err, migration.ErrNotFound) {
			continue // deleted between the two reads
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, r)
	}
	return out, next, nil
}

// RolloutCandidates reads up to limit ids of the rollout's snapshot from
// offset.
func (s *Store) RolloutCandidates(ctx context.Context, m, id string, offset, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	ids, err := s.rdb.LRange(ctx, rolloutIDsKey(m, id), int64(offset), int64(offset+limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("read the candidates of rollout %s: %w", id, err)
	}
	return ids, nil
}

// WatchRollout subscribes to the changes of a rollout's view.
func (s *Store) WatchRollout(ctx context.Context, m, id string) (<-chan struct{}, error) {
	return s.watch(ctx, rolloutChannel(m, id))
}

// deleteRollouts removes the rollouts of a deleted Migration: the views,
// snapshots and index.
func (s *Store) deleteRollouts(ctx context.Context, m string) error {
	ids, err := s.rdb.ZRange(ctx, rolloutsKey(m), 0, -1).Result()
	if err != nil {
		return err
	}
	keys := []string{rolloutsKey(m)}
	for _, id := range ids {
		keys = append(keys, rolloutKey(m, id), rolloutIDsKey(m, id))
	}
	// One slot (the Migration's tag): one DEL is fine in Redis Cluster.
	return s.rdb.Del(ctx, keys...).Err()
}
