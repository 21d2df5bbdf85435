package auth

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// Authenticator turns a bearer token into a Principal: Loom's static tokens
// ("loom_…") and, when configured, JWT access tokens.
type Authenticator struct {
	// Static authenticates the static tokens: a *StaticTokens, or the
	// *FileTokens of a tokens file that is reread when it changes.
	Static StaticAuthenticator
	JWT    *JWTVerifier
}

// StaticAuthenticator authenticates Loom's static tokens.
type StaticAuthenticator interface {
	Authenticate(token string) (Principal, error)
}

// ErrNoToken says a request carries no bearer token.
var ErrNoToken = errors.New("no bearer token: send an Authorization: Bearer <token> header")

// Authenticate checks an Authorization header value.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Principal, error) {
	token, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || token == "" {
		return Principal{}, ErrNoToken
	}
	token = strings.TrimSpace(token)
	switch {
	case strings.HasPrefix(token, tokenPrefix) && a.Static != nil:
		return a.Static.Authenticate(token)
	case strings.Count(token, ".") == 2 && a.JWT != nil:
		return a.JWT.Authenticate(ctx, token)
	}
	return Principal{}, ErrUnknownToken
}

// Rule says who may call one procedure. Admins may call every procedure.
type Rule struct {
	// Roles besides admin that may call it.
	Roles []Role
	// Owned limits the migrator role to the Migrations in its scope.
	Owned bool
	// IfMigrationAllows are roles that may call it too, but only about a
	// Migration that allows them; for PreviewRun, viewers about a
	// Migration whose Migrator announced viewers_may_preview. The policy
	// cannot see Migrations: Allowed refuses these callers, and
	// AllowedIfMigrationAllows names them for the API to admit once it
	// has read the Migration the request names. A separate permission
	// from Roles, so that letting viewers preview never lets them start.
	IfMigrationAllows []Role
}

var (
	readers   = Rule{Roles: []Role{RoleViewer, RoleOperator, RoleMigrator}, Owned: true}
	operators = Rule{Roles: []Role{RoleOperator}}
	// previewers: operators, and viewers where the Migration allows it.
	previewers = Rule{Roles: []Role{RoleOperator}, IfMigrationAllows: []Role{RoleViewer}}
	migrators  = Rule{Roles: []Role{RoleMigrator}, Owned: true}
	admins     = Rule{}
)

// Rules is who may call what, by procedure. A procedure missing here is
// refused to everyone but admins.
var Rules = map[string]Rule{
	"/loom.v1.RegistryService/Announce":                   migrators,
	"/loom.v1.RegistryService/GetMigration":               readers,
	"/loom.v1.RegistryService/ListMigrations":             readers,
	"/loom.v1.RegistryService/DeleteMigration":            admins,
	"/loom.v1.RegistryService/ListSigningKeys":            {Roles: []Role{RoleViewer, RoleOperator, RoleMigrator}},
	"/loom.v1.RegistryService/GetCaller":                  {Roles: []Role{RoleViewer, RoleOperator, RoleMigrator}},
	"/loom.v1.DiscoveryService/SubmitCandidates":          migrators,
	"/loom.v1.DiscoveryService/ListCandidates":            readers,
	"/loom.v1.DiscoveryService/GetCandidate":              readers,
	"/loom.v1.DiscoveryService/UpdateCandidateInputs":     operators,
	"/loom.v1.DiscoveryService/BulkUpdateCandidateInputs": operators,
	"/loom.v1.RunService/PreviewRun":                      previewers,
	"/loom.v1.RunService/StartRun":                        operators,
	"/loom.v1.RunService/CancelRun":                       operators,
	"/loom.v1.RunService/RetryStep":                       operators,
	"/loom.v1.RunService/FinishReview":                    operators,
	"/loom.v1.RunService/MarkStepMerged":                  operators,
	"/loom.v1.RunService/SkipStep":                        operators,
	"/loom.v1.RunService/AdoptPullRequest":                operators,
	"/loom.v1.RunService/BulkRetrySteps":                  operators,
	"/loom.v1.RunService/BulkCancelRuns":                  operators,
	"/loom.v1.RunService/BulkFinishReviews":               operators,
	"/loom.v1.RunService/BulkMarkStepsMerged":             operators,
	"/loom.v1.RunService/GetRun":                          readers,
	"/loom.v1.RunService/ListRuns":                        readers,
	"/loom.v1.RunService/WatchRun":                        readers,
	"/loom.v1.RunService/ReconcileRuns":                   admins,
	"/loom.v1.EventService/ReportStepStatus":              migrators,
	"/loom.v1.EventService/ResumeSteps":                   migrators,
	"/loom.v1.HistoryService/ListEvents":                  readers,
	"/loom.v1.HistoryService/WatchEvents":                 readers,
	"/loom.v1.MetricsService/GetMigrationMetrics":         readers,
	"/loom.v1.MetricsService/GetFleetOverview":            readers,
	"/loom.v1.RolloutService/PreviewSelection":            operators,
	"/loom.v1.RolloutService/StartRollout":                operators,
	"/loom.v1.RolloutService/GetRollout":                  readers,
	"/loom.v1.RolloutService/ListRollouts":                readers,
	"/loom.v1.RolloutService/WatchRollout":                readers,
	"/loom.v1.RolloutService/PauseRollout":                operators,
	"/loom.v1.RolloutService/ResumeRollout":               operators,
	"/loom.v1.RolloutService/UpdateRollout":               operators,
	"/loom.v1.RolloutService/CancelRollout":               operators,
}

// Allowed reports whether p may call procedure, and whether the call must
// then be limited to the Migrations p owns.
func Allowed(procedure string, p Principal) (ok, ownedOnly bool) {
	if p.Role == RoleAdmin {
		return true, false
	}
	r, known := Rules[procedure]
	if !known {
		return false, false
	}
	for _, role := range r.Roles {
		if role == p.Role {
			return true, r.Owned && p.Role == RoleMigrator
		}
	}
	return false, false
}

// AllowedIfMigrationAllows reports whether p, refused by Allowed, may call
// procedure about the Migrations that allow it (Rule.IfMigrationAllows).
func AllowedIfMigrationAllows(procedure string, p Principal) bool {
	if p.Role == RoleAdmin {
		return false // Allowed lets admins call it anywhere
	}
	return slices.Contains(Rules[procedure].IfMigrationAllows, p.Role)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller of ctx, if authenticated.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
