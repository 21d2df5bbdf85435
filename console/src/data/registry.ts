import { useQuery } from "@tanstack/react-query";
import { queryKeys } from "../queryKeys";
import { useRegistryClient } from "../transport";

// useMigration reads a Migration (RegistryService.GetMigration).
export function useMigration(migrationId: string) {
  const registry = useRegistryClient();
  return useQuery({
    queryKey: queryKeys.migration(migrationId),
    queryFn: ({ signal }) => registry.getMigration({ migrationId }, { signal }),
  });
}
