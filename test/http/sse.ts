/** A minimal Server-Sent Events reader over fetch, for tests. */
export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

export interface SseClient {
  /** Resolves with the next event (waits for it). */
  next(): Promise<SseEvent>;
  /** Events until `stop` returns true for one (that one included). */
  until(stop: (e: SseEvent) => boolean, ms?: number): Promise<SseEvent[]>;
  close(): void;
  status: number;
  contentType: string;
}

export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const abort = new AbortController();
  const r = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
  const reader = r.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const queue: SseEvent[] = [];
  const parse = () => {
    for (;;) {
      const end = buffer.indexOf('\n\n');
      if (end < 0) return;
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id: string | undefined;
      let event = 'message';
      const data: string[] = [];
      let any = false;
      for (const line of block.split('\n')) {
        if (line.startsWith(':') || line === '') continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'id') id = value;
        else if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
        else continue;
        any = true;
      }
      if (any && (data.length > 0 || event !== 'message')) queue.push({ id, event, data: data.join('\n') });
    }
  };
  const next = async (): Promise<SseEvent> => {
    for (;;) {
      const e = queue.shift();
      if (e) return e;
      const { value, done } = await reader.read();
      if (done) throw new Error('the event stream ended');
      buffer += decoder.decode(value, { stream: true });
      parse();
    }
  };
  return {
    status: r.status,
    contentType: r.headers.get('content-type') ?? '',
    next,
    async until(stop, ms = 30_000) {
      const out: SseEvent[] = [];
      const deadline = Date.now() + ms;
      for (;;) {
        const e = await Promise.race([
          next(),
          new Promise<never>((_, reject) =>
            setTimeout(
              () => reject(new Error(`no matching event within ${ms} ms`)),
              Math.max(1, deadline - Date.now()),
            ).unref(),
          ),
        ]);
        out.push(e);
        if (stop(e)) return out;
      }
    },
    close: () => abort.abort(),
  };
}
