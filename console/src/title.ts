import { useEffect } from "react";

// useTitle titles the browser tab after the page, most specific first,
// e.g. "acme/billing · Go 1.23 · Loom", so that an operator with many tabs
// open (and the browser's history) can tell them apart. Parts not known yet
// (still loading) are left out, and the title follows as data loads.
export function useTitle(...parts: (string | undefined)[]) {
  const title = pageTitle(...parts);
  useEffect(() => {
    document.title = title;
  }, [title]);
}

export function pageTitle(...parts: (string | undefined)[]): string {
  return [...parts.filter((p): p is string => !!p), "Loom"].join(" · ");
}

// Title is useTitle for a page that does not title itself.
export function Title({ parts }: { parts: string[] }) {
  useTitle(...parts);
  return null;
}
