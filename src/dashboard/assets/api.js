// The dashboard is a client of the REST API under <base>/api: every read and every action goes
// through it, so the dashboard holds no rule of its own.

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') ?? '';

export const csrfToken = meta('beckett-csrf');
export const readOnly = meta('beckett-read-only') === 'true';

/** An API error: the problem+json body's title/detail/code, and the HTTP status. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem?.title;
    this.code = problem?.code;
  }
}

async function parse(res) {
  const text = await res.text();
  let body = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = { detail: text.slice(0, 500) };
    }
  }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

/** GET `api/<path>` (relative to the page's <base>, so any mount point works). */
export async function get(path, query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {}))
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const qs = q.toString();
  const res = await fetch(`api/${path}${qs ? `?${qs}` : ''}`, {
    headers: { accept: 'application/json' },
    credentials: 'same-origin',
  });
  return parse(res);
}

/** POST JSON with the CSRF header; refused at once in read-only mode. */
export async function post(path, body) {
  if (readOnly)
    throw new ApiError(403, { title: 'Read-only', detail: 'The dashboard runs with --read-only.' });
  const res = await fetch(`api/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', 'x-beckett-csrf': csrfToken },
    credentials: 'same-origin',
    body: JSON.stringify(body ?? {}),
  });
  return parse(res);
}

export const enc = encodeURIComponent;
