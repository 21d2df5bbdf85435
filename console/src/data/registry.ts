import { useQuery } from "@tanstack/react-query";
import type { DescMethod } from "@bufbuild/protobuf";
import type { Migration } from "../gen/loom/v1/migration_pb";
import { RunService } from "../gen/loom/v1/run_service_pb";
import type { GetCallerResponse } from "../gen/loom/v1/registry_service_pb";
import { queryKeys } from "../queryKeys";
import { useRegistryClient } from "../transport";
import { noteCaller } from "../auth";

// useMigration reads a Migration (RegistryService.GetMigration).
export function useMigration(migrationId: string) {
  const registry = useRegistryClient();
  return useQuery({
    queryKey: queryKeys.migration(migrationId),
    queryFn: ({ signal }) => registry.getMigration({ migrationId }, { signal }),
  });
}

// useCaller asks the server who the caller is and what it may call
// (RegistryService.GetCaller), once per session.
export function useCaller() {
  const registry = useRegistryClient();
  return useQuery({
    queryKey: queryKeys.caller(),
    queryFn: async ({ signal }) => {
      const res = await registry.getCaller({}, { signal });
      // Kept for another tab's sign-in: the same caller again reloads nothing.
      noteCaller(res.authenticated ? res : null);
      return res;
    },
    staleTime: Infinity,
  });
}

// useCan says whether the caller's role may call a method, so that controls
// it may not use are not shown; the server still refuses them. Until the
// answer comes nothing is allowed; a server that cannot answer leaves every
// control shown (and the server refuses what it must).
export function useCan(): (m: DescMethod) => boolean {
  const c = useCaller();
  return (m) => {
    if (c.isError) return true;
    if (!c.data) return false;
    return c.data.allowedProcedures.includes(`/${m.parent.typeName}/${m.name}`);
  };
}

// useCanPreview says whether the caller may preview Runs of a Migration
// (see mayPreview). Previewing is never starting: Start is asked of useCan
// apart.
export function useCanPreview(): (m: Migration) => boolean {
  const c = useCaller();
  const can = useCan();
  return (m) => can(RunService.method.previewRun) || mayPreviewWhereAllowed(c.data, m);
}

const previewProcedure = `/${RunService.typeName}/${RunService.method.previewRun.name}`;

// mayPreviewWhereAllowed: a viewer may preview a Migration whose Migrator
// announced viewers_may_preview (GetCaller lists PreviewRun in
// allowed_if_migration_allows for it); operators and admins have PreviewRun
// in allowed_procedures instead.
export function mayPreviewWhereAllowed(caller: GetCallerResponse | undefined, m: Migration): boolean {
  return m.viewersMayPreview && !!caller?.allowedIfMigrationAllows.includes(previewProcedure);
}
