import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { apiBase, csrfToken, getToken, noteCaller } from "./auth";
import { ErrorReason } from "./gen/loom/v1/error_reason_pb";

// The console is served by the Loom it talks to, so the API is its own
// origin; VITE_LOOM_API points a console served elsewhere at another Loom
// (which must then list this origin in -cors-origins).
const baseUrl = apiBase;

// credentials authenticates every call: by the bearer token of a console
// served elsewhere, else by the session cookie the browser sends itself,
// with the session's CSRF token, which Loom requires beside the cookie.
// A call refused as unauthenticated means this tab is signed in as nobody
// now: another tab's sign-in must then reload it (see mustReload).
export const credentials: Interceptor = (next) => async (req) => {
  const token = getToken();
  if (token) req.header.set("Authorization", `Bearer ${token}`);
  else {
    const csrf = csrfToken();
    if (csrf) req.header.set("Loom-CSRF", csrf);
  }
  try {
    return await next(req);
  } catch (err) {
    if (isUnauthenticated(err)) noteCaller(null);
    throw err;
  }
};

// The transport to the Loom serving the console; components reach it
// through the TransportProvider (transport.tsx), never directly.
export const transport = createConnectTransport({ baseUrl, interceptors: [credentials] });

// errorText is how every server error is shown: its Connect code, its
// message, which names the field or says why, and the reason of the
// google.rpc.ErrorInfo the server attaches to a refusal, e.g.
// "failed_precondition: ... (MISSING_INPUTS)".
export function errorText(err: unknown): string {
  const e = ConnectError.from(err);
  const info = errorInfo(e);
  const reason = info?.reason ? ` (${info.reason})` : "";
  return `${Code[e.code] ? codeName(e.code) : e.code}: ${e.rawMessage}${reason}`;
}

export type ErrorInfo = { reason: string; domain: string; metadata: Record<string, string> };

// reasonOf reads the reason of a server error as the API's ErrorReason
// (docs/api.md, "Error reasons"): ERROR_REASON_UNSPECIFIED when the error has
// none, or one this console does not know (a newer server's).
export function reasonOf(err: unknown): ErrorReason {
  const info = errorInfo(err);
  if (!info || info.domain !== "loom.dev") return ErrorReason.ERROR_REASON_UNSPECIFIED;
  const r = (ErrorReason as unknown as Record<string, ErrorReason | undefined>)[info.reason];
  return typeof r === "number" ? r : ErrorReason.ERROR_REASON_UNSPECIFIED;
}

// errorInfo decodes the google.rpc.ErrorInfo detail of a server error, if it
// has one. The console has no google.rpc types: the message is small
// (reason = 1, domain = 2, metadata = 3 as map<string, string>), so it is
// read off the wire here.
export function errorInfo(err: unknown): ErrorInfo | undefined {
  const e = ConnectError.from(err);
  for (const d of e.details) {
    if ("desc" in d || d.type !== "google.rpc.ErrorInfo") continue;
    try {
      const info: ErrorInfo = { reason: "", domain: "", metadata: {} };
      const r = new BinaryReader(d.value);
      while (r.pos < r.len) {
        const [field, wt] = r.tag();
        if (field === 1 && wt === WireType.LengthDelimited) info.reason = r.string();
        else if (field === 2 && wt === WireType.LengthDelimited) info.domain = r.string();
        else if (field === 3 && wt === WireType.LengthDelimited) {
          const entry = new BinaryReader(r.bytes());
          let k = "";
          let v = "";
          while (entry.pos < entry.len) {
            const [f, w] = entry.tag();
            if (f === 1 && w === WireType.LengthDelimited) k = entry.string();
            else if (f === 2 && w === WireType.LengthDelimited) v = entry.string();
            else entry.skip(w);
          }
          info.metadata[k] = v;
        } else r.skip(wt);
      }
      return info;
    } catch {
      return undefined;
    }
  }
  return undefined;
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
