// follow consumes a server stream (the fleet feed, live/hub.ts) for as long as
// signal lives: when the stream ends or breaks it is opened again — open
// resumes where the last message left off — after a pause that doubles up to
// 10 s and starts over at every message. onBreak hears why the stream
// stopped (undefined: it ended cleanly) and returns true to give up.
export async function follow<T>(
  open: (signal: AbortSignal) => AsyncIterable<T>,
  onMessage: (m: T) => void,
  signal: AbortSignal,
  onBreak: (err: unknown) => boolean = () => false,
): Promise<void> {
  let delay = 500;
  while (!signal.aborted) {
    let stop: boolean;
    try {
      for await (const m of open(signal)) {
        delay = 500;
        onMessage(m);
      }
      stop = onBreak(undefined);
    } catch (err) {
      if (signal.aborted) return;
      stop = onBreak(err);
    }
    if (stop) return;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10_000);
  }
}
