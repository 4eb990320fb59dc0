// Small view helpers shared by the pages: tables, pills, dialogs, toasts, JSON, formatting.
import { readOnly } from './api.js';
import { append, clear, h, link } from './dom.js';

export const fmtNum = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US'));

/** 1234 ms -> "1.2 s", 90000 -> "1 m 30 s". */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(Number(ms))) return '—';
  const v = Math.abs(Number(ms));
  if (v < 1000) return `${Math.round(v)} ms`;
  const s = v / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${Math.round(s % 60)} s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${m % 60} m`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

export function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
}

/** "3 m ago" / "in 5 s", with the exact time as a tooltip. */
export function ago(t) {
  if (!t) return h('span', { class: 'faint' }, '—');
  const d = new Date(t);
  const diff = Date.now() - d.getTime();
  const text = diff >= 0 ? `${fmtDuration(diff)} ago` : `in ${fmtDuration(-diff)}`;
  return h('span', { title: fmtTime(t) }, text);
}

const STATUS_CLASS = {
  active: 'ok',
  ok: 'ok',
  live: 'ok',
  succeeded: 'ok',
  success: 'ok',
  scheduled: 'info',
  initializing: 'info',
  replaying: 'info',
  lagging: 'info',
  leased: 'info',
  paused: 'warn',
  retry: 'warn',
  retrying: 'warn',
  gone: 'muted',
  cancelled: 'muted',
  unknown: 'muted',
  failed: 'bad',
  error: 'bad',
  refused: 'bad',
};

export function pill(status, text) {
  const cls = STATUS_CLASS[String(status).toLowerCase()] ?? '';
  return h('span', { class: `pill ${cls}` }, h('span', { class: `dot ${cls}` }), text ?? String(status));
}

export function pageHead({ crumbs = [], title, subtitle, actions }) {
  const c = [];
  crumbs.forEach(([text, href], i) => {
    if (i > 0) c.push(h('span', { class: 'sep' }, '/'));
    c.push(href ? link(href, text) : h('span', null, text));
  });
  return h(
    'div',
    { class: 'page-head' },
    h(
      'div',
      null,
      c.length ? h('div', { class: 'crumbs' }, c) : null,
      h('h1', null, title),
      subtitle ? h('div', { class: 'subtitle' }, subtitle) : null,
    ),
    actions ? h('div', { class: 'toolbar' }, actions) : null,
  );
}

export function card(title, body, tools) {
  return h(
    'section',
    { class: 'card' },
    title || tools ? h('div', { class: 'card-head' }, h('h2', null, title ?? ''), tools ?? null) : null,
    body,
  );
}

/**
 * A table: columns `[{ label, render(row) -> node|string, num?, class? }]`. An empty list shows
 * `empty` instead.
 */
export function table(allColumns, rows, { empty = 'Nothing here.', rowAttrs } = {}) {
  if (!rows || rows.length === 0) return h('div', { class: 'empty' }, empty);
  const columns = allColumns.filter(Boolean);
  return h(
    'table',
    null,
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        columns.map((c) => h('th', { class: c.num ? 'num' : (c.class ?? null) }, c.label)),
      ),
    ),
    h(
      'tbody',
      null,
      rows.map((r) =>
        h(
          'tr',
          rowAttrs ? rowAttrs(r) : null,
          columns.map((c) => h('td', { class: c.num ? 'num' : (c.class ?? null) }, c.render(r))),
        ),
      ),
    ),
  );
}

/** "Next page" with the keyset cursor, and "First page" when not on the first one. */
export function pager(firstHref, nextHref, onFirst) {
  if (!nextHref && onFirst) return null;
  return h(
    'div',
    { class: 'pager' },
    onFirst ? null : h('a', { class: 'btn', href: firstHref }, '⟵ First page'),
    nextHref ? h('a', { class: 'btn', href: nextHref, 'data-testid': 'next-page' }, 'Next page ⟶') : null,
  );
}

/** Pretty JSON with colours, built as text nodes. */
export function jsonView(value) {
  const pre = h('pre', { class: 'json' });
  const text = JSON.stringify(value ?? null, null, 2);
  const re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m.index > last) pre.appendChild(document.createTextNode(text.slice(last, m.index)));
    const cls = m[1] ? (m[2] ? 'j-key' : 'j-str') : m[3] ? 'j-lit' : 'j-num';
    pre.appendChild(h('span', { class: cls }, m[1] ?? m[0]));
    if (m[2]) pre.appendChild(document.createTextNode(m[2]));
    last = m.index + m[0].length;
  }
  pre.appendChild(document.createTextNode(text.slice(last)));
  return pre;
}

export function kv(pairs) {
  return h(
    'dl',
    { class: 'kv' },
    pairs
      .filter(Boolean)
      .map(([k, v]) => [h('dt', null, k), h('dd', null, v ?? h('span', { class: 'faint' }, '—'))]),
  );
}

export function errorBox(err) {
  return h(
    'div',
    { class: 'error-box', role: 'alert' },
    h('strong', null, err?.title || (err?.status ? `HTTP ${err.status}` : 'Error')),
    ': ',
    err?.message ?? String(err),
  );
}

let toastsEl;
export function toast(text, kind = 'ok') {
  if (!toastsEl) {
    toastsEl = h('div', { class: 'toasts', 'aria-live': 'polite' });
    document.body.appendChild(toastsEl);
  }
  const el = h('div', { class: `toast ${kind === 'bad' ? 'bad' : ''}`, role: 'status' }, text);
  toastsEl.appendChild(el);
  setTimeout(() => el.remove(), kind === 'bad' ? 9000 : 4500);
}

/**
 * Ask before an action. `fields` are extra inputs (`{ name, label, value, type, options }`);
 * resolves to their values, or null when cancelled.
 */
export function confirmDialog({ title, body, confirm = 'Confirm', danger = false, fields = [] }) {
  return new Promise((resolve) => {
    const inputs = {};
    const dlg = h(
      'dialog',
      { 'data-testid': 'confirm-dialog' },
      h(
        'form',
        { method: 'dialog' },
        h(
          'div',
          { class: 'dlg-body' },
          h('h2', null, title),
          body ? h('p', null, body) : null,
          fields.map((f) => {
            const input = f.options
              ? h(
                  'select',
                  { name: f.name, class: 'field' },
                  f.options.map(([v, t]) => h('option', { value: v, selected: v === f.value }, t)),
                )
              : h('input', {
                  name: f.name,
                  class: 'field',
                  type: f.type ?? 'text',
                  value: f.value ?? '',
                  placeholder: f.placeholder ?? null,
                  required: f.required ?? null,
                });
            inputs[f.name] = input;
            return [h('label', null, f.label), input];
          }),
        ),
        h(
          'div',
          { class: 'dlg-foot' },
          h('button', { value: 'cancel', type: 'submit', formnovalidate: true }, 'Cancel'),
          h(
            'button',
            {
              value: 'ok',
              type: 'submit',
              class: danger ? 'danger solid' : 'primary',
              'data-testid': 'confirm',
            },
            confirm,
          ),
        ),
      ),
    );
    dlg.addEventListener('close', () => {
      const ok = dlg.returnValue === 'ok';
      const values = {};
      for (const [k, el] of Object.entries(inputs)) values[k] = el.value;
      dlg.remove();
      resolve(ok ? values : null);
    });
    document.body.appendChild(dlg);
    dlg.showModal();
  });
}

/** An action button; absent in read-only mode (the server refuses the POST anyway). */
export function actionButton(text, onClick, { danger = false, small = true, testid } = {}) {
  if (readOnly) return null;
  const btn = h(
    'button',
    {
      class: `${small ? 'small' : ''} ${danger ? 'danger' : ''}`,
      'data-testid': testid ?? null,
      onClick: async (e) => {
        e.preventDefault();
        btn.disabled = true;
        try {
          await onClick();
        } finally {
          btn.disabled = false;
        }
      },
    },
    text,
  );
  return btn;
}

export function loading() {
  return h('div', { class: 'loading' }, 'Loading…');
}

export function replaceWith(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

/** A cursor-friendly shortener for long ids. */
export function shortId(id) {
  const s = String(id ?? '');
  return s.length > 13
    ? h('span', { title: s, class: 'mono' }, `${s.slice(0, 8)}…${s.slice(-4)}`)
    : h('span', { class: 'mono' }, s);
}
