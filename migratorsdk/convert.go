package migratorsdk

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/migratorsdk/internal/convert"
)

// Conversions between the SDK's types and the API's messages; migratortest
// reaches them through internal/convert.
func init() {
	convert.MigrationToProto = migrationToProto
	convert.MigrationFromProto = migrationFromProto
	convert.StepsToProto = stepsToProto
	convert.StepsFromProto = stepsFromProto
	convert.CandidateToProto = candidateToProto
	convert.CandidateFromProto = candidateFromProto
	convert.StatusToProto = statusToProto
	convert.StatusFromProto = statusFromProto
	convert.PreviewsFromProto = previewsFromProto
}

// migrationToProto is the API message of m, dispatched at migratorURL.
func migrationToProto(m Migration, migratorURL string) *loomv1.Migration {
	p := &loomv1.Migration{
		Id:          m.ID,
		Name:        m.Name,
		Description: m.Description,
		Overview:    m.Overview,
		Steps:       stepsToProto(m.Steps),
		MigratorUrl: migratorURL,

		ViewersMayPreview: m.ViewersMayPreview,
	}
	if m.DispatchLease > 0 {
		p.DispatchLease = durationpb.New(m.DispatchLease)
	}
	for t, d := range m.DispatchLeaseByType {
		if p.DispatchLeaseByType == nil {
			p.DispatchLeaseByType = map[string]*durationpb.Duration{}
		}
		p.DispatchLeaseByType[t] = durationpb.New(d)
	}
	for _, in := range m.Inputs {
		p.RequiredInputs = append(p.RequiredInputs, &loomv1.InputDefinition{Name: in.Name, Label: in.Label, Description: in.Description})
	}
	return p
}

// migrationFromProto reads an API Migration.
func migrationFromProto(p *loomv1.Migration) Migration {
	m := Migration{ID: p.GetId(), Name: p.GetName(), Description: p.GetDescription(), Overview: p.GetOverview(), Steps: stepsFromProto(p.GetSteps()),
		DispatchLease: p.GetDispatchLease().AsDuration(), ViewersMayPreview: p.GetViewersMayPreview()}
	for t, d := range p.GetDispatchLeaseByType() {
		if m.DispatchLeaseByType == nil {
			m.DispatchLeaseByType = map[string]time.Duration{}
		}
		m.DispatchLeaseByType[t] = d.AsDuration()
	}
	for _, in := range p.GetRequiredInputs() {
		m.Inputs = append(m.Inputs, Input{Name: in.GetName(), Label: in.GetLabel(), Description: in.GetDescription()})
	}
	return m
}

// stepsToProto renders step definitions as API messages.
func stepsToProto(steps []Step) []*loomv1.StepDefinition {
	var out []*loomv1.StepDefinition
	for _, s := range steps {
		p := &loomv1.StepDefinition{Name: s.Name, Type: s.Type, Description: s.Description, Config: s.Config}
		if s.ReportTimeout > 0 {
			p.ReportTimeout = durationpb.New(s.ReportTimeout)
		}
		out = append(out, p)
	}
	return out
}

// stepFromProto reads an API step definition.
func stepFromProto(p *loomv1.StepDefinition) Step {
	return Step{Name: p.GetName(), Type: p.GetType(), Description: p.GetDescription(), Config: p.GetConfig(), ReportTimeout: p.GetReportTimeout().AsDuration()}
}

// stepsFromProto reads API step definitions.
func stepsFromProto(ps []*loomv1.StepDefinition) []Step {
	var out []Step
	for _, p := range ps {
		out = append(out, stepFromProto(p))
	}
	return out
}

// candidateToProto renders a Candidate as an API message.
func candidateToProto(c Candidate) *loomv1.Candidate {
	p := &loomv1.Candidate{Id: c.ID, Kind: c.Kind, Metadata: c.Metadata, Steps: stepsToProto(c.Steps)}
	for _, g := range c.Files {
		pg := &loomv1.FileGroup{Name: g.Name}
		for _, f := range g.Files {
			pg.Files = append(pg.Files, &loomv1.FileRef{Path: f.Path, Url: f.URL})
		}
		p.Files = append(p.Files, pg)
	}
	return p
}

// candidateFromProto reads an API Candidate.
func candidateFromProto(p *loomv1.Candidate) Candidate {
	c := Candidate{ID: p.GetId(), Kind: p.GetKind(), Metadata: p.GetMetadata(), Steps: stepsFromProto(p.GetSteps())}
	for _, g := range p.GetFiles() {
		fg := FileGroup{Name: g.GetName()}
		for _, f := range g.GetFiles() {
			fg.Files = append(fg.Files, FileRef{Path: f.GetPath(), URL: f.GetUrl()})
		}
		c.Files = append(c.Files, fg)
	}
	return c
}

var stepStatuses = map[StepStatus]loomv1.StepStatus{
	StatusInProgress:     loomv1.StepStatus_STEP_STATUS_IN_PROGRESS,
	StatusOpen:           loomv1.StepStatus_STEP_STATUS_OPEN,
	StatusMerged:         loomv1.StepStatus_STEP_STATUS_MERGED,
	StatusAwaitingReview: loomv1.StepStatus_STEP_STATUS_AWAITING_REVIEW,
	StatusCompleted:      loomv1.StepStatus_STEP_STATUS_COMPLETED,
	StatusFailed:         loomv1.StepStatus_STEP_STATUS_FAILED,
	StatusSkipped:        loomv1.StepStatus_STEP_STATUS_SKIPPED,
}

// statusToProto maps a step status to the API's.
func statusToProto(s StepStatus) loomv1.StepStatus { return stepStatuses[s] }

// statusFromProto maps an API step status to the SDK's.
func statusFromProto(p loomv1.StepStatus) StepStatus {
	for s, v := range stepStatuses {
		if v == p {
			return s
		}
	}
	return ""
}

var fileStatuses = map[FileStatus]loomv1.FileDiffStatus{
	FileAdded:    loomv1.FileDiffStatus_FILE_DIFF_STATUS_ADDED,
	FileModified: loomv1.FileDiffStatus_FILE_DIFF_STATUS_MODIFIED,
	FileDeleted:  loomv1.FileDiffStatus_FILE_DIFF_STATUS_DELETED,
}

// previewsToProto renders previews as API messages.
func previewsToProto(ps []StepPreview) []*loomv1.StepPreview {
	var out []*loomv1.StepPreview
	for _, p := range ps {
		sp := &loomv1.StepPreview{StepName: p.Step, Skipped: p.Skipped, SkipReason: p.SkipReason, Error: p.Error}
		for _, d := range p.Diffs {
			sp.Diffs = append(sp.Diffs, &loomv1.FileDiff{Repo: d.Repo, Path: d.Path, Before: d.Before, After: d.After, Status: fileStatuses[d.Status]})
		}
		out = append(out, sp)
	}
	return out
}

// previewsFromProto maps API previews to the SDK's.
func previewsFromProto(ps []*loomv1.StepPreview) []StepPreview {
	var out []StepPreview
	for _, p := range ps {
		sp := StepPreview{Step: p.GetStepName(), Skipped: p.GetSkipped(), SkipReason: p.GetSkipReason(), Error: p.GetError()}
		for _, d := range p.GetDiffs() {
			fd := FileDiff{Repo: d.GetRepo(), Path: d.GetPath(), Before: d.GetBefore(), After: d.GetAfter()}
			for s, v := range fileStatuses {
				if v == d.GetStatus() {
					fd.Status = s
				}
			}
			sp.Diffs = append(sp.Diffs, fd)
		}
		out = append(out, sp)
	}
	return out
}
