package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/loomhq/loom/server/internal/migration"
)

// encode.go owns the storage records: what is written to Redis and its
// conversion to and from the domain types.

// Storage records. They are not the domain types and not API messages: they
// are what is written to Redis, so they change only with a new version.
// Every JSON record carries "v" (recordVersion); a reader refuses a version it
// does not know rather than guess.
//
// Records are canonical: the same definition always encodes to the same
// bytes (struct fields in declaration order, map keys sorted by
// encoding/json, nil and empty slices and maps both omitted), so the scripts
// decide "changed or not" by comparing strings.

// recordVersion is the version of every JSON record written by this package.
const recordVersion = 1

// Fields of the Migration hash (see migrationKey). The scripts use the same
// literal names.
const (
	fieldDef   = "def"
	fieldCtime = "ctime"
	fieldUtime = "utime"
)

// Fields of the Candidate hash (see candidateKey), besides def, ctime, utime.
const (
	fieldKind   = "kind"
	fieldStatus = "status"
	fieldInputs = "inputs"
	fieldExec   = "exec"
	fieldGone   = "gone"
)

// counterField is the field of the Migration hash counting its Candidates in
// status s: "n:<status>".
func counterField(s migration.CandidateStatus) string { return "n:" + string(s) }

// migrationRecord is the "def" field of the Migration hash: the definition
// as announced, without id (it is in the key) and without times (fields of
// their own, so that an identical re-announce compares equal).
type migrationRecord struct {
	V              int           `json:"v"`
	Name           string        `json:"name,omitempty"`
	Description    string        `json:"description,omitempty"`
	Overview       string        `json:"overview,omitempty"`
	Steps          []stepRecord  `json:"steps,omitempty"`
	RequiredInputs []inputRecord `json:"required_inputs,omitempty"`
	MigratorURL    string        `json:"migrator_url,omitempty"`
	// LeaseNS and LeaseByTypeNS are the dispatch leases, in nanoseconds.
	LeaseNS       int64            `json:"lease_ns,omitempty"`
	LeaseByTypeNS map[string]int64 `json:"lease_by_type_ns,omitempty"`
	// ViewersMayPreview is absent while false, so the defs of Migrations
	// that do not set it are the bytes they were (and a re-announce of one
	// compares equal); a reader that does not know it leaves viewers out.
	ViewersMayPreview bool `json:"viewers_may_preview,omitempty"`
}

// stepRecord is one step definition, in a Migration or a Candidate.
type stepRecord struct {
	Name        string            `json:"name"`
	Type        string            `json:"type,omitempty"`
	MigratorApp string            `json:"migrator_app,omitempty"`
	Config      map[string]string `json:"config,omitempty"`
	Description string            `json:"description,omitempty"`
	// ReportTimeoutNS is the step's report timeout in nanoseconds (exact
	// round trip of a time.Duration); 0 means none.
	ReportTimeoutNS int64 `json:"report_timeout_ns,omitempty"`
}

// inputRecord is one required input of a Migration.
type inputRecord struct {
	Name        string `json:"name"`
	Label       string `json:"label,omitempty"`
	Description string `json:"description,omitempty"`
}

// candidateRecord is the "def" field of a Candidate hash: what discovery
// reported, nothing the server keeps.
//
// Kind is not written: the hash has it as a field of its own (the one the
// indexes follow, and the one decodeCandidate reads), so repeating it in
// def cost every Candidate its bytes twice. Defs written before carry it
// ({"v":1,"kind":...}, same version: a reader that knows the field
// ignores it); decodeCandidate falls back to it only when the kind field
// is empty, and submitScript takes such a def for the same as the one
// without kind (see legacyDefLua).
type candidateRecord struct {
	V        int               `json:"v"`
	Kind     string            `json:"kind,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Files    []fileGroupRecord `json:"files,omitempty"`
	Steps    []stepRecord      `json:"steps,omitempty"`
}

// fileGroupRecord is one named group of a Candidate's files.
type fileGroupRecord struct {
	Name  string          `json:"name"`
	Files []fileRefRecord `json:"files,omitempty"`
}

// fileRefRecord is one file of a Candidate.
type fileRefRecord struct {
	Path string `json:"path"`
	URL  string `json:"url,omitempty"`
}

// The "inputs" field of a Candidate hash is a plain JSON object of string
// values (operator input name -> value). It carries no "v" because any key
// may be an input name; it is edited in Lua with cjson (see
// updateInputsScript). A future format would use another field.
//
// Fields with a default are not written while they hold it, so that a
// Candidate discovered and never run (most of a fleet) stores only what is
// its own: inputs absent means none ("{}", as hashes written before hold,
// reads the same), exec absent means 0, utime absent means ctime (the
// Candidate was not changed since it was created). Every reader, Go or
// Lua, takes the absent field for its default.

// encodeMigrationDef returns the canonical "def" of m.
func encodeMigrationDef(m migration.Migration) (string, error) {
	r := migrationRecord{
		V:           recordVersion,
		Name:        m.Name,
		Description: m.Description,
		Overview:    m.Overview,
		Steps:       stepRecords(m.Steps),
		MigratorURL: m.MigratorURL,
		LeaseNS:     int64(m.DispatchLease),

		ViewersMayPreview: m.ViewersMayPreview,
	}
	for t, d := range m.LeaseByType {
		if r.LeaseByTypeNS == nil {
			r.LeaseByTypeNS = map[string]int64{}
		}
		r.LeaseByTypeNS[t] = int64(d)
	}
	for _, in := range m.RequiredInputs {
		r.RequiredInputs = append(r.RequiredInputs, inputRecord(in))
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode migration %s: %w", m.ID, err)
	}
	return string(b), nil
}

// decodeMigration builds the Migration id from the fields of its hash.
func decodeMigration(id string, h map[string]string) (migration.Migration, error) {
	var r migrationRecord
	if err := unmarshalRecord(h[fieldDef], &r); err != nil {
		return migration.Migration{}, fmt.Errorf("decode migration %s: %w", id, err)
	}
	m := migration.Migration{
		ID:            id,
		Name:          r.Name,
		Description:   r.Description,
		Overview:      r.Overview,
		Steps:         stepDefinitions(r.Steps),
		MigratorURL:   r.MigratorURL,
		DispatchLease: time.Duration(r.LeaseNS),

		ViewersMayPreview: r.ViewersMayPreview,
	}
	for t, d := range r.LeaseByTypeNS {
		if m.LeaseByType == nil {
			m.LeaseByType = map[string]time.Duration{}
		}
		m.LeaseByType[t] = time.Duration(d)
	}
	for _, in := range r.RequiredInputs {
		m.RequiredInputs = append(m.RequiredInputs, migration.InputDefinition(in))
	}
	var err error
	if m.CreateTime, err = parseMillis(h[fieldCtime]); err != nil {
		return migration.Migration{}, fmt.Errorf("decode migration %s: ctime: %w", id, err)
	}
	if m.UpdateTime, err = parseMillis(h[fieldUtime]); err != nil {
		return migration.Migration{}, fmt.Errorf("decode migration %s: utime: %w", id, err)
	}
	counts := []*int64{&m.Counts.NotStarted, &m.Counts.Running, &m.Counts.Completed}
	for i, s := range migration.CandidateStatuses {
		if *counts[i], err = parseInt(h[counterField(s)]); err != nil {
			return migration.Migration{}, fmt.Errorf("decode migration %s: %s: %w", id, counterField(s), err)
		}
	}
	return m, nil
}

// decodeKinds reads the per-kind Candidate counts of Migration id from the
// fields of its kindsKey hash (nil when it has no Candidate).
func decodeKinds(id string, h map[string]string) (map[string]int64, error) {
	if len(h) == 0 {
		return nil, nil
	}
	out := make(map[string]int64, len(h))
	for k, v := range h {
		n, err := parseInt(v)
		if err != nil {
			return nil, fmt.Errorf("decode migration %s: kind %s: %w", id, k, err)
		}
		if n > 0 {
			out[k] = n
		}
	}
	return out, nil
}

// withKinds decodes Migration id from its hash h and its kinds hash kinds.
func withKinds(id string, h, kinds map[string]string) (migration.Migration, error) {
	m, err := decodeMigration(id, h)
	if err != nil {
		return m, err
	}
	m.Kinds, err = decodeKinds(id, kinds)
	return m, err
}

// encodeCandidateDef returns the canonical "def" of c: only what discovery
// reports (metadata, files, steps; the kind is a field of the hash, see
// candidateRecord).
func encodeCandidateDef(c migration.Candidate) (string, error) {
	r := candidateRecord{
		V:        recordVersion,
		Metadata: c.Metadata,
		Steps:    stepRecords(c.Steps),
	}
	if len(r.Metadata) == 0 {
		r.Metadata = nil
	}
	for _, g := range c.Files {
		gr := fileGroupRecord{Name: g.Name}
		for _, f := range g.Files {
			gr.Files = append(gr.Files, fileRefRecord(f))
		}
		r.Files = append(r.Files, gr)
	}
	b, err := appendCandidateDef(make([]byte, 0, 256), r)
	if err != nil {
		return "", fmt.Errorf("encode candidate %s: %w", c.ID, err)
	}
	return string(b), nil
}

// decodeCandidate builds Candidate id of Migration migrationID from the
// fields of its hash.
func decodeCandidate(migrationID, id string, h map[string]string) (migration.Candidate, error) {
	fail := func(what string, err error) (migration.Candidate, error) {
		return migration.Candidate{}, fmt.Errorf("decode candidate %s/%s: %s: %w", migrationID, id, what, err)
	}
	r, ok := parseCandidateDef(h[fieldDef])
	if !ok || r.V != recordVersion {
		r = candidateRecord{}
		if err := unmarshalRecord(h[fieldDef], &r); err != nil {
			return fail("def", err)
		}
	}
	c := migration.Candidate{
		ID:                 id,
		Kind:               r.Kind,
		Metadata:           r.Metadata,
		Steps:              stepDefinitions(r.Steps),
		MigrationID:        migrationID,
		Status:             migration.CandidateStatus(h[fieldStatus]),
		NoLongerDiscovered: h[fieldGone] != "",
	}
	if k := h[fieldKind]; k != "" {
		c.Kind = k // the hash field is what the indexes follow (def has none now: see candidateRecord)
	}
	for _, g := range r.Files {
		fg := migration.FileGroup{Name: g.Name}
		for _, f := range g.Files {
			fg.Files = append(fg.Files, migration.FileRef(f))
		}
		c.Files = append(c.Files, fg)
	}
	if !c.Status.Valid() {
		return fail("status", fmt.Errorf("unknown status %q", c.Status))
	}
	c.Inputs = map[string]string{}
	if raw := h[fieldInputs]; raw != "" {
		// cjson encodes an empty Lua table as "{}"; "[]" is tolerated too.
		if raw != "[]" {
			if err := json.Unmarshal([]byte(raw), &c.Inputs); err != nil {
				return fail("inputs", err)
			}
		}
	}
	var err error
	if c.Execution, err = parseInt(h[fieldExec]); err != nil {
		return fail("exec", err)
	}
	if c.CreateTime, err = parseMillis(h[fieldCtime]); err != nil {
		return fail("ctime", err)
	}
	c.UpdateTime = c.CreateTime // absent: not changed since created
	if u, ok := h[fieldUtime]; ok {
		if c.UpdateTime, err = parseMillis(u); err != nil {
			return fail("utime", err)
		}
	}
	return c, nil
}

// decodeCandidateRow is decodeCandidate with what a row shows beside the
// hash (see candidateRowLua): run, the run view's status, current step name
// and status (nil each without a run view), and change, the last change
// ("" when not indexed: the update time stands in).
func decodeCandidateRow(migrationID, id string, h map[string]string, run, change any) (migration.Candidate, error) {
	c, err := decodeCandidate(migrationID, id, h)
	if err != nil {
		return c, err
	}
	if f, ok := run.([]any); ok && len(f) == 3 {
		st, _ := f[0].(string)
		step, _ := f[1].(string)
		stepStatus, _ := f[2].(string)
		c.Progress = migration.CandidateProgress{
			RunStatus:         migration.RunStatus(st),
			CurrentStep:       step,
			CurrentStepStatus: migration.StepStatus(stepStatus),
		}
	}
	c.LastChangeTime = c.UpdateTime
	if ms, _ := change.(string); ms != "" {
		f, err := strconv.ParseFloat(ms, 64)
		if err != nil {
			return c, fmt.Errorf("decode candidate %s/%s: last change: %w", migrationID, id, err)
		}
		if t := time.UnixMilli(int64(f)).UTC(); t.After(c.LastChangeTime) {
			c.LastChangeTime = t
		}
	}
	return c, nil
}

// unmarshalRecord decodes a versioned JSON record into r, refusing an
// unknown version.
func unmarshalRecord(raw string, r any) error {
	if raw == "" {
		return errors.New("missing record")
	}
	var head struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal([]byte(raw), &head); err != nil {
		return err
	}
	if head.V != recordVersion {
		return fmt.Errorf("unsupported record version %d", head.V)
	}
	return json.Unmarshal([]byte(raw), r)
}

func stepRecords(steps []migration.StepDefinition) []stepRecord {
	var out []stepRecord
	for _, s := range steps {
		r := stepRecord{
			Name:            s.Name,
			Type:            s.Type,
			MigratorApp:     s.MigratorApp,
			Config:          s.Config,
			Description:     s.Description,
			ReportTimeoutNS: int64(s.ReportTimeout),
		}
		if len(r.Config) == 0 {
			r.Config = nil
		}
		out = append(out, r)
	}
	return out
}

func stepDefinitions(recs []stepRecord) []migration.StepDefinition {
	var out []migration.StepDefinition
	for _, r := range recs {
		out = append(out, migration.StepDefinition{
			Name:          r.Name,
			Type:          r.Type,
			MigratorApp:   r.MigratorApp,
			Config:        r.Config,
			Description:   r.Description,
			ReportTimeout: time.Duration(r.ReportTimeoutNS),
		})
	}
	return out
}

// millis is how times are stored: unix milliseconds.
func millis(t time.Time) int64 { return t.UnixMilli() }

// parseMillis reads a stored time; the domain gets it in UTC.
func parseMillis(s string) (time.Time, error) {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms).UTC(), nil
}

// parseInt reads a stored integer; a missing field is 0.
func parseInt(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// Fields of the run view hash (see runKey).
const (
	fieldView = "view"
	// fieldDispatchFailure holds a run view's dispatchFailure.
	fieldDispatchFailure = "dfail"
	fieldVer             = "ver"
)

// runRecord is the "view" field of a run view hash as written before
// runViewRecord (version 1): the Run as its workflow last saved it. Times
// are unix milliseconds, 0 when unset. Still read (decodeRunV1), and used
// by tests to write a view of that version.
type runRecord struct {
	V            int                `json:"v"`
	Execution    int64              `json:"exec"`
	Status       string             `json:"status"`
	Steps        []stepRecord       `json:"steps,omitempty"`
	Results      []stepResultRecord `json:"results,omitempty"`
	Inputs       map[string]string  `json:"inputs,omitempty"`
	StartTime    int64              `json:"start,omitempty"`
	UpdateTime   int64              `json:"update,omitempty"`
	EndTime      int64              `json:"end,omitempty"`
	CancelReason string             `json:"cancel_reason,omitempty"`
	StartedBy    string             `json:"started_by,omitempty"`
	RolloutID    string             `json:"rollout,omitempty"`
	Seq          int64              `json:"seq"`
}

// stepResultRecord is one StepResult of a runRecord.
type stepResultRecord struct {
	Step       string            `json:"step"`
	Status     string            `json:"status"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	PRURL      string            `json:"pr_url,omitempty"`
	Message    string            `json:"message,omitempty"`
	Attempt    int               `json:"attempt"`
	StartTime  int64             `json:"start,omitempty"`
	UpdateTime int64             `json:"update,omitempty"`
	EndTime    int64             `json:"end,omitempty"`
	LastReport int64             `json:"last_report,omitempty"`
	OpenTime   int64             `json:"open,omitempty"`
	Actor      string            `json:"actor,omitempty"`
	Dispatches int               `json:"dispatches,omitempty"`
}

// runViewVersion is the version of the run view records written now: the
// compact runViewRecord. Views of version 1 (runRecord, recordVersion) are
// still read.
const runViewVersion = 2

// runViewRecord is the "view" field of a run view hash since version 2:
// what runRecord held, smaller, since every Run has one (a 3-step Run's
// was about 800 bytes, and one view over hash-max-listpack-value would
// turn its hash into Redis's large encoding). Short names; no execution,
// status or seq (the hash's fields of those names, which storeView writes
// with the view, say them); every time but the start in milliseconds after
// the start (nil when unset: 0 is the start itself); a result's step name
// only when it is not the name of the step at its index.
type runViewRecord struct {
	V            int               `json:"v"`
	Steps        []runStepRecord   `json:"st,omitempty"`
	Results      []runResultRecord `json:"rs,omitempty"`
	Inputs       map[string]string `json:"in,omitempty"`
	StartTime    int64             `json:"t0,omitempty"` // unix ms, 0 when unset
	UpdateTime   *int64            `json:"u,omitempty"`
	EndTime      *int64            `json:"e,omitempty"`
	CancelReason string            `json:"cr,omitempty"`
	StartedBy    string            `json:"by,omitempty"`
	RolloutID    string            `json:"ro,omitempty"`
}

// runStepRecord is stepRecord in a runViewRecord.
type runStepRecord struct {
	Name            string            `json:"n"`
	Type            string            `json:"t,omitempty"`
	MigratorApp     string            `json:"app,omitempty"`
	Config          map[string]string `json:"cfg,omitempty"`
	Description     string            `json:"desc,omitempty"`
	ReportTimeoutNS int64             `json:"rt,omitempty"`
}

// runResultRecord is stepResultRecord in a runViewRecord (times: see there).
type runResultRecord struct {
	Step       string            `json:"n,omitempty"`
	Status     string            `json:"s"`
	Metadata   map[string]string `json:"md,omitempty"`
	PRURL      string            `json:"pr,omitempty"`
	Message    string            `json:"msg,omitempty"`
	Attempt    int               `json:"a,omitempty"`
	StartTime  *int64            `json:"t0,omitempty"`
	UpdateTime *int64            `json:"u,omitempty"`
	EndTime    *int64            `json:"e,omitempty"`
	LastReport *int64            `json:"lr,omitempty"`
	OpenTime   *int64            `json:"o,omitempty"`
	Actor      string            `json:"by,omitempty"`
	Dispatches int               `json:"d,omitempty"`
}

// encodeRun returns the canonical "view" of r: a runViewRecord.
func encodeRun(r migration.Run) (string, error) {
	base := optMillis(r.StartTime)
	rel := func(t time.Time) *int64 {
		if t.IsZero() {
			return nil
		}
		d := t.UnixMilli() - base
		return &d
	}
	rec := runViewRecord{
		V:            runViewVersion,
		Inputs:       r.Inputs,
		StartTime:    base,
		UpdateTime:   rel(r.UpdateTime),
		EndTime:      rel(r.EndTime),
		CancelReason: r.CancelReason,
		StartedBy:    r.StartedBy,
		RolloutID:    r.RolloutID,
	}
	if len(rec.Inputs) == 0 {
		rec.Inputs = nil
	}
	for _, s := range stepRecords(r.Steps) {
		rec.Steps = append(rec.Steps, runStepRecord(s))
	}
	for i, s := range r.Results {
		res := runResultRecord{
			Status:     string(s.Status),
			Metadata:   s.Metadata,
			PRURL:      s.PRURL,
			Message:    s.Message,
			Attempt:    s.Attempt,
			StartTime:  rel(s.StartTime),
			UpdateTime: rel(s.UpdateTime),
			EndTime:    rel(s.EndTime),
			LastReport: rel(s.LastReport),
			OpenTime:   rel(s.OpenTime),
			Actor:      s.Actor,
			Dispatches: s.Dispatches,
		}
		if i >= len(r.Steps) || r.Steps[i].Name != s.StepName {
			res.Step = s.StepName
		}
		if len(res.Metadata) == 0 {
			res.Metadata = nil
		}
		rec.Results = append(rec.Results, res)
	}
	b, err := json.Marshal(rec)
	return string(b), err
}

// decodeRun builds the Run of Candidate candidateID of migrationID from
// the fields of its run view hash, of either version of the view.
func decodeRun(migrationID, candidateID string, h map[string]string) (migration.Run, error) {
	fail := func(err error) (migration.Run, error) {
		return migration.Run{}, fmt.Errorf("decode run %s__%s: %w", migrationID, candidateID, err)
	}
	var head struct {
		V int `json:"v"`
	}
	raw := h[fieldView]
	if raw == "" {
		return fail(errors.New("missing record"))
	}
	if err := json.Unmarshal([]byte(raw), &head); err != nil {
		return fail(err)
	}
	var (
		r   migration.Run
		err error
	)
	switch head.V {
	case recordVersion:
		r, err = decodeRunV1(raw)
	case runViewVersion:
		r, err = decodeRunV2(raw, h)
	default:
		err = fmt.Errorf("unsupported record version %d", head.V)
	}
	if err != nil {
		return fail(err)
	}
	if r.Version, err = parseInt(h[fieldVer]); err != nil {
		return migration.Run{}, fmt.Errorf("decode run %s__%s version: %w", migrationID, candidateID, err)
	}
	r.ID, r.MigrationID, r.CandidateID = migration.RunID(migrationID, candidateID), migrationID, candidateID
	withDispatchFailure(&r, h[fieldDispatchFailure])
	return r, nil
}

// decodeRunV2 reads a runViewRecord; execution, status and seq are the
// hash's fields.
func decodeRunV2(raw string, h map[string]string) (migration.Run, error) {
	var rec runViewRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		return migration.Run{}, err
	}
	abs := func(d *int64) time.Time {
		if d == nil {
			return time.Time{}
		}
		return time.UnixMilli(rec.StartTime + *d).UTC()
	}
	r := migration.Run{
		Status:       migration.RunStatus(h["status"]),
		Inputs:       rec.Inputs,
		StartTime:    fromOptMillis(rec.StartTime),
		UpdateTime:   abs(rec.UpdateTime),
		EndTime:      abs(rec.EndTime),
		CancelReason: rec.CancelReason,
		StartedBy:    rec.StartedBy,
		RolloutID:    rec.RolloutID,
	}
	var err1, err2 error
	r.Execution, err1 = parseInt(h["exec"])
	r.Seq, err2 = parseInt(h["seq"])
	if err := errors.Join(err1, err2); err != nil {
		return migration.Run{}, fmt.Errorf("exec or seq: %w", err)
	}
	for _, s := range rec.Steps {
		r.Steps = append(r.Steps, stepDefinitions([]stepRecord{stepRecord(s)})...)
	}
	for i, s := range rec.Results {
		name := s.Step
		if name == "" && i < len(rec.Steps) {
			name = rec.Steps[i].Name
		}
		r.Results = append(r.Results, migration.StepResult{
			StepName:   name,
			Status:     migration.StepStatus(s.Status),
			Metadata:   s.Metadata,
			PRURL:      s.PRURL,
			Message:    s.Message,
			Attempt:    s.Attempt,
			StartTime:  abs(s.StartTime),
			UpdateTime: abs(s.UpdateTime),
			EndTime:    abs(s.EndTime),
			LastReport: abs(s.LastReport),
			OpenTime:   abs(s.OpenTime),
			Actor:      s.Actor,
			Dispatches: s.Dispatches,
		})
	}
	return r, nil
}

// decodeRunV1 reads a runRecord, the view written before runViewRecord.
func decodeRunV1(raw string) (migration.Run, error) {
	var rec runRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		return migration.Run{}, err
	}
	r := migration.Run{
		Execution:    rec.Execution,
		Status:       migration.RunStatus(rec.Status),
		Steps:        stepDefinitions(rec.Steps),
		Inputs:       rec.Inputs,
		StartTime:    fromOptMillis(rec.StartTime),
		UpdateTime:   fromOptMillis(rec.UpdateTime),
		EndTime:      fromOptMillis(rec.EndTime),
		CancelReason: rec.CancelReason,
		StartedBy:    rec.StartedBy,
		RolloutID:    rec.RolloutID,
		Seq:          rec.Seq,
	}
	for _, s := range rec.Results {
		r.Results = append(r.Results, migration.StepResult{
			StepName:   s.Step,
			Status:     migration.StepStatus(s.Status),
			Metadata:   s.Metadata,
			PRURL:      s.PRURL,
			Message:    s.Message,
			Attempt:    s.Attempt,
			StartTime:  fromOptMillis(s.StartTime),
			UpdateTime: fromOptMillis(s.UpdateTime),
			EndTime:    fromOptMillis(s.EndTime),
			LastReport: fromOptMillis(s.LastReport),
			Dispatches: s.Dispatches,
			OpenTime:   fromOptMillis(s.OpenTime),
			Actor:      s.Actor,
		})
	}
	return r, nil
}

// optMillis stores an optional time: 0 when unset.
func optMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromOptMillis reads an optional time; 0 is the zero time.
func fromOptMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
