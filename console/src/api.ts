import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
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

// The transport to the Loom serving the console; components reach it
// through the TransportProvider (transport.tsx), never directly.
export const transport = createConnectTransport({ baseUrl, interceptors: [bearer] });

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
