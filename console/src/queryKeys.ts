// queryKeys is every TanStack Query key the console uses, in one place: a
// query and whatever invalidates it name the same key. Keys nest, so
// invalidating a shorter key invalidates every key it begins (metrics(m)
// covers metricsDaily(m); candidates(m) covers each page of the table).
export const queryKeys = {
  // RegistryService
  caller: () => ["caller"] as const,
  migration: (migrationId: string) => ["migration", migrationId] as const,
  // DiscoveryService
  candidate: (migrationId: string, candidateId: string) => ["candidate", migrationId, candidateId] as const,
  migrationCandidates: (migrationId: string) => ["candidate", migrationId] as const,
  candidates: (migrationId: string) => ["candidates", migrationId] as const,
  candidatesPage: (migrationId: string, params: string) => ["candidates", migrationId, params] as const,
  palette: (prefix: string, metadata: Record<string, string>, migrationIds: string[]) =>
    ["palette", prefix, Object.entries(metadata).sort(), migrationIds.join(",")] as const,
  // MetricsService
  fleet: () => ["fleet"] as const,
  allMetrics: () => ["metrics"] as const,
  metrics: (migrationId: string) => ["metrics", migrationId] as const,
  metricsDaily: (migrationId: string) => ["metrics", migrationId, "day"] as const,
  // RunService
  allRunning: () => ["running"] as const,
  running: (migrationId: string) => ["running", migrationId] as const,
  // RolloutService
  rollouts: (migrationId: string) => ["rollouts", migrationId] as const,
  selectionPreview: (migrationId: string, request: string) => ["selectionPreview", migrationId, request] as const,
  // HistoryService
  events: (migrationId: string, candidateId: string, kinds: readonly number[], more = "") =>
    ["events", migrationId, candidateId, kinds.join(","), more] as const,
};
