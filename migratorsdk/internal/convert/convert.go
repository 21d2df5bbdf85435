// Package convert hands migratorsdk's conversions between its types and the
// API's messages to migratortest, without making them part of the SDK's
// API. migratorsdk sets each variable at init to its unexported converter;
// their types name migratorsdk's, which an import cycle keeps from being
// spelt here, so migratortest asserts them (see the comment of each).
package convert

var (
	MigrationToProto   any // func(migratorsdk.Migration, string) *loomv1.Migration
	MigrationFromProto any // func(*loomv1.Migration) migratorsdk.Migration
	StepsToProto       any // func([]migratorsdk.Step) []*loomv1.StepDefinition
	StepsFromProto     any // func([]*loomv1.StepDefinition) []migratorsdk.Step
	CandidateToProto   any // func(migratorsdk.Candidate) *loomv1.Candidate
	CandidateFromProto any // func(*loomv1.Candidate) migratorsdk.Candidate
	StatusToProto      any // func(migratorsdk.StepStatus) loomv1.StepStatus
	StatusFromProto    any // func(loomv1.StepStatus) migratorsdk.StepStatus
	PreviewsFromProto  any // func([]*loomv1.StepPreview) []migratorsdk.StepPreview
)
