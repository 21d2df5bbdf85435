import { useEffect, useState, type ReactNode } from "react";
import { Link } from "react-router";
import { errorText, isUnauthenticated } from "../api";
import { beginSignIn, noteCaller, oidcConfig, signIn, takeSignInError, usesSession } from "../auth";

// ErrorBox shows a server error as the server said it: Connect code and
// message. A missing or refused token offers the sign-in form instead.
export function ErrorBox({ error }: { error: unknown }) {
  if (isUnauthenticated(error)) return <SignIn message={errorText(error)} />;
  return (
    <div role="alert" className="error">
      {errorText(error)}
    </div>
  );
}

export function SignIn({ message }: { message?: string }) {
  // Shown the form, this tab is signed in as nobody: another tab's sign-in
  // reloads it (see mustReload).
  useEffect(() => noteCaller(null), []);
  const [token, setValue] = useState("");
  const [failure, setFailure] = useState(takeSignInError);
  const [refused, setRefused] = useState("");
  const [busy, setBusy] = useState(false);
  const oidc = oidcConfig();
  return (
    <form
      className="card signin"
      onSubmit={(e) => {
        e.preventDefault();
        setBusy(true);
        signIn(token).then(
          () => window.location.reload(),
          (err: unknown) => {
            setBusy(false);
            setRefused(errorText(err));
          },
        );
      }}
    >
      <h2>Sign in</h2>
      {message && <p className="muted">{message}</p>}
      {failure && (
        <p role="alert" className="error">
          Sign-in failed: {failure}
        </p>
      )}
      {refused && (
        <p role="alert" className="error">
          {refused}
        </p>
      )}
      {oidc && (
        <p>
          <button
            type="button"
            onClick={() => beginSignIn(oidc).catch((e: unknown) => setFailure(e instanceof Error ? e.message : String(e)))}
          >
            Sign in with {new URL(oidc.issuer).host}
          </button>
        </p>
      )}
      <p>
        {oidc ? "Or paste" : "Paste"} a Loom token (<code>loom tokens create</code> makes one; <code>loom-dev</code> prints a console URL that
        signs you in).{" "}
        {usesSession()
          ? "You stay signed in in every tab of this browser until you sign out; the token itself is not kept."
          : "It is kept for this browser tab only."}
      </p>
      <label>
        Token
        <input type="password" autoComplete="off" value={token} onChange={(e) => setValue(e.target.value)} required />
      </label>
      <button type="submit" disabled={busy}>
        Sign in
      </button>
    </form>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <div className="loading" role="status" aria-live="polite">
      Loading {what}…
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty">{children}</div>;
}

export function Badge({ value }: { value: string }) {
  return <span className={`badge badge-${value}`}>{value.replaceAll("_", " ")}</span>;
}

export function NotFound() {
  return (
    <Empty>
      Nothing here. <Link to="/">Back to the fleet</Link>
    </Empty>
  );
}

export function candidatePath(migrationId: string, candidateId: string): string {
  return `/m/${encodeURIComponent(migrationId)}/c/${candidateId.split("/").map(encodeURIComponent).join("/")}`;
}

export function rolloutPath(migrationId: string, rolloutId: string): string {
  return `/m/${encodeURIComponent(migrationId)}/r/${encodeURIComponent(rolloutId)}`;
}

// WhyField asks why an action is taken. It may stay empty; what is typed
// is sent with the action and kept in its history event (a note, up to
// 4,000 characters, or a rollout's reason, up to 2,000).
export function WhyField(props: {
  value: string;
  onChange: (value: string) => void;
  placeholder: string;
  name?: "note" | "reason";
  inline?: boolean;
  children?: ReactNode;
}) {
  const name = props.name ?? "note";
  return (
    <label className={props.inline ? "inline" : undefined}>
      Why
      <input
        name={name}
        value={props.value}
        maxLength={name === "note" ? 4000 : 2000}
        placeholder={props.placeholder}
        onChange={(e) => props.onChange(e.target.value)}
      />
      {props.children}
    </label>
  );
}
