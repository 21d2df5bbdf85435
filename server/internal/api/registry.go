package api

import (
	"context"
	"slices"

	"connectrpc.com/connect"

	loomv1 "github.com/loomhq/loom/gen/loom/v1"
	"github.com/loomhq/loom/gen/loom/v1/loomv1connect"
	"github.com/loomhq/loom/server/auth"
	"github.com/loomhq/loom/server/internal/migration"
	"github.com/loomhq/loom/server/internal/protoconv"
)

// RegistryServer serves loom.v1.RegistryService.
type RegistryServer struct {
	Registry *migration.Registry
	// Signer's public keys are listed by ListSigningKeys; nil lists none.
	Signer *auth.Signer
}

var _ loomv1connect.RegistryServiceHandler = (*RegistryServer)(nil)

// Announce creates or updates a Migration.
func (s *RegistryServer) Announce(ctx context.Context, req *connect.Request[loomv1.AnnounceRequest]) (*connect.Response[loomv1.AnnounceResponse], error) {
	m, created, updated, err := s.Registry.Announce(ctx, protoconv.MigrationFromProto(req.Msg.GetMigration()))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.AnnounceResponse{
		Migration: protoconv.MigrationToProto(m),
		Created:   created,
		Updated:   updated,
	}), nil
}

// GetMigration returns one Migration.
func (s *RegistryServer) GetMigration(ctx context.Context, req *connect.Request[loomv1.GetMigrationRequest]) (*connect.Response[loomv1.GetMigrationResponse], error) {
	m, err := s.Registry.Get(ctx, req.Msg.GetMigrationId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.GetMigrationResponse{Migration: protoconv.MigrationToProto(m)}), nil
}

// ListMigrations pages through the Migrations.
func (s *RegistryServer) ListMigrations(ctx context.Context, req *connect.Request[loomv1.ListMigrationsRequest]) (*connect.Response[loomv1.ListMigrationsResponse], error) {
	after, err := decodePageToken(req.Msg.GetPageToken(), "")
	if err != nil {
		return nil, err
	}
	page, err := s.Registry.List(ctx, migration.PageRequest{After: after, Limit: int(req.Msg.GetPageSize())})
	if err != nil {
		return nil, err
	}
	res := &loomv1.ListMigrationsResponse{NextPageToken: encodePageToken(page.Next, "")}
	owned := ownedFilter(ctx)
	for _, m := range page.Migrations {
		if !owned(m.ID) {
			continue
		}
		res.Migrations = append(res.Migrations, protoconv.MigrationToProto(m))
	}
	return connect.NewResponse(res), nil
}

// DeleteMigration removes a Migration and its Candidates.
func (s *RegistryServer) DeleteMigration(ctx context.Context, req *connect.Request[loomv1.DeleteMigrationRequest]) (*connect.Response[loomv1.DeleteMigrationResponse], error) {
	n, err := s.Registry.Delete(ctx, req.Msg.GetMigrationId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&loomv1.DeleteMigrationResponse{DeletedCandidates: n}), nil
}

// ListSigningKeys lists the public keys of Loom's calls to Migrators.
func (s *RegistryServer) ListSigningKeys(context.Context, *connect.Request[loomv1.ListSigningKeysRequest]) (*connect.Response[loomv1.ListSigningKeysResponse], error) {
	res := &loomv1.ListSigningKeysResponse{}
	if s.Signer != nil {
		for _, k := range s.Signer.PublicKeys() {
			res.Keys = append(res.Keys, &loomv1.SigningKey{Id: k.ID, Algorithm: "Ed25519", PublicKey: k.Public, RetireTime: protoconv.TimeToProto(k.RetireTime)})
		}
	}
	return connect.NewResponse(res), nil
}

// GetCaller says who the caller is and which procedures auth.Rules lets it
// call (every one when the server does not authenticate), and which it may
// call only about the Migrations that allow it.
func (s *RegistryServer) GetCaller(ctx context.Context, _ *connect.Request[loomv1.GetCallerRequest]) (*connect.Response[loomv1.GetCallerResponse], error) {
	p, authenticated := auth.PrincipalFrom(ctx)
	res := &loomv1.GetCallerResponse{Authenticated: authenticated}
	if authenticated {
		res.Subject, res.Role = p.Subject, string(p.Role)
	}
	for proc := range auth.Rules {
		if ok, _ := auth.Allowed(proc, p); ok || !authenticated {
			res.AllowedProcedures = append(res.AllowedProcedures, proc)
		} else if auth.AllowedIfMigrationAllows(proc, p) {
			res.AllowedIfMigrationAllows = append(res.AllowedIfMigrationAllows, proc)
		}
	}
	slices.Sort(res.AllowedProcedures)
	slices.Sort(res.AllowedIfMigrationAllows)
	return connect.NewResponse(res), nil
}

// ownedFilter says which Migrations the caller may see in a listing: a
// Migrator sees only its own (so a page may come out short).
func ownedFilter(ctx context.Context) func(id string) bool {
	p, authenticated := auth.PrincipalFrom(ctx)
	return func(id string) bool {
		return !authenticated || p.Role != auth.RoleMigrator || p.Scope.Owns(id)
	}
}
