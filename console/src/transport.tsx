import { createContext, useContext, useMemo, type ReactNode } from "react";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { transport as serverTransport } from "./api";
import { DiscoveryService } from "./gen/loom/v1/discovery_service_pb";
import { HistoryService } from "./gen/loom/v1/history_service_pb";
import { MetricsService } from "./gen/loom/v1/metrics_service_pb";
import { RegistryService } from "./gen/loom/v1/registry_service_pb";
import { RolloutService } from "./gen/loom/v1/rollout_service_pb";
import { RunService } from "./gen/loom/v1/run_service_pb";

// The Connect transport every component talks to the server through is
// injected: main.tsx provides the one to the Loom that serves the console,
// component tests an in-memory one (createRouterTransport).
const TransportContext = createContext<Transport>(serverTransport);

export function TransportProvider({ transport, children }: { transport: Transport; children: ReactNode }) {
  return <TransportContext.Provider value={transport}>{children}</TransportContext.Provider>;
}

export function useTransport(): Transport {
  return useContext(TransportContext);
}

// One client per service and transport: the same object across renders, so
// that effects depending on it do not restart.
function useClient<S extends DescService>(service: S): Client<S> {
  const transport = useTransport();
  return useMemo(() => createClient(service, transport), [service, transport]);
}

export const useRegistryClient = () => useClient(RegistryService);
export const useDiscoveryClient = () => useClient(DiscoveryService);
export const useRunClient = () => useClient(RunService);
export const useHistoryClient = () => useClient(HistoryService);
export const useMetricsClient = () => useClient(MetricsService);
export const useRolloutClient = () => useClient(RolloutService);
