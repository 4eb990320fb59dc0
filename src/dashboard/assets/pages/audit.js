// The audit log: every operator action (who, what, when, result), newest first.
import { get } from '../api.js';
import { h } from '../dom.js';
import { card, fmtTime, pageHead, pager, pill, table } from '../ui.js';

const pos = (p) => (p && typeof p === 'object' ? (p.position ?? p.time ?? JSON.stringify(p)) : p);

/** What an action acted on, in words: checkpoint ids, group/subscription and a range, a stream. */
function describeTarget(t) {
  if (!t || typeof t !== 'object') return String(t ?? '');
  if (Array.isArray(t.checkpoints)) return t.checkpoints.join(', ');
  if (Array.isArray(t.ids)) return t.ids.join(', ');
  const parts = [];
  if (t.group) parts.push(t.subscription ? `${t.group}/${t.subscription}` : t.group);
  if (t.stream) parts.push(t.stream);
  if (t.from !== undefined || t.to !== undefined)
    parts.push(`from ${pos(t.from) ?? 'start'} to ${pos(t.to) ?? 'end'}`);
  if (t.to && typeof t.to === 'string') parts.push(`to ${t.to}`);
  if (t.status) parts.push(`status ${t.status}`);
  if (t.id) parts.push(t.id);
  if (t.name) parts.push(t.name);
  return parts.length ? parts.join(' · ') : JSON.stringify(t);
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The result in words for the shapes the admin API returns; JSON otherwise. */
function describeDetail(d) {
  if (d === null || d === undefined) return '';
  if (typeof d !== 'object') return String(d);
  if (d.message) return d.code ? `${d.code}: ${d.message}` : d.message;
  const out = [];
  if (Array.isArray(d.changed)) out.push(plural(d.changed.length, 'checkpoint') + ' changed');
  if (Array.isArray(d.released)) out.push(plural(d.released.length, 'lease') + ' released');
  if (typeof d.messages === 'number') out.push(`${plural(d.messages, 'message')} to handle again`);
  if (Array.isArray(d.streams)) out.push(`in ${plural(d.streams.length, 'stream')}`);
  if (typeof d.changed === 'boolean') out.push(d.changed ? 'changed' : 'already so');
  if (Array.isArray(d.busy) && d.busy.length) out.push(`${d.busy.length} busy`);
  if (Array.isArray(d.missing) && d.missing.length) out.push(`${d.missing.length} not found`);
  if (d.abridged) out.push('(abridged)');
  return out.length ? out.join(', ') : JSON.stringify(d).slice(0, 160);
}

export async function auditPage(_params, query) {
  const r = await get('audit', { after: query.after, limit: 50 });
  return h(
    'div',
    null,
    pageHead({
      title: 'Audit log',
      subtitle: 'Every operator action from the CLI, the REST API and this dashboard.',
    }),
    card(null, [
      table(
        [
          {
            label: 'When',
            class: 'nowrap',
            render: (a) => h('span', { class: 'mono', title: a.at }, fmtTime(a.at)),
          },
          { label: 'Who', render: (a) => a.actor },
          { label: 'Action', render: (a) => h('strong', null, a.action) },
          {
            label: 'Target',
            class: 'wrap',
            render: (a) => h('span', { class: 'mono' }, describeTarget(a.target)),
          },
          { label: 'Result', render: (a) => pill(a.result === 'ok' ? 'ok' : 'error', a.result) },
          {
            label: 'Detail',
            class: 'wrap',
            render: (a) => h('span', { class: 'muted' }, describeDetail(a.detail)),
          },
        ],
        r.items,
        { empty: 'No operator action recorded yet.', rowAttrs: (a) => ({ 'data-action': a.action }) },
      ),
      pager('#/audit', r.next ? `#/audit?after=${encodeURIComponent(r.next)}` : null, !query.after),
    ]),
  );
}
