import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { DiscoveryService } from "./gen/loom/v1/discovery_service_pb";
import { HistoryService } from "./gen/loom/v1/history_service_pb";
import { MetricsService } from "./gen/loom/v1/metrics_service_pb";
import { RegistryService } from "./gen/loom/v1/registry_service_pb";
import { RunService } from "./gen/loom/v1/run_service_pb";
import { getToken } from "./auth";

// The console is served by the Loom it talks to, so the API is its own
// origin; VITE_LOOM_API points a console served elsewhere at another Loom
// (which must then list this origin in -cors-origins).
const baseUrl = import.meta.env.VITE_LOOM_API ?? window.location.origin;

const bearer: Interceptor = (next) => async (req) => {
  const token = getToken();
  if (token) req.header.set("Authorization", `Bearer ${token}`);
  return next(req);
};

export const transport = createConnectTransport({ baseUrl, interceptors: [bearer] });

export const registry = createClient(RegistryService, transport);
export const discovery = createClient(DiscoveryService, transport);
export const runs = createClient(RunService, transport);
export const history = createClient(HistoryService, transport);
export const metrics = createClient(MetricsService, transport);

// errorText is how every server error is shown: its Connect code and its
// message, which names the field or says why (the ErrorInfo reason the
// server attaches is not decoded: the console has no google.rpc types).
export function errorText(err: unknown): string {
  const e = ConnectError.from(err);
  return `${Code[e.code] ? codeName(e.code) : e.code}: ${e.rawMessage}`;
}

export function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

export function isUnauthenticated(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.Unauthenticated;
}

export function runId(migrationId: string, candidateId: string): string {
  return `${migrationId}__${candidateId}`;
}
