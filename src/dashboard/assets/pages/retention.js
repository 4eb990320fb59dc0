// Retention: what a dry run would delete now, per policy. Nothing is deleted from here.
import { get } from '../api.js';
import { h } from '../dom.js';
import { card, fmtNum, jsonView, pageHead, table } from '../ui.js';

function cell(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return fmtNum(v);
  if (typeof v === 'object') return h('span', { class: 'mono' }, JSON.stringify(v));
  return String(v);
}

/** Columns from the first row's keys: the preview's shape is the admin API's to refine. */
function autoTable(items) {
  const keys = [...new Set(items.flatMap((i) => Object.keys(i)))];
  return table(
    keys.map((k) => ({ label: k, num: typeof items[0]?.[k] === 'number', render: (r) => cell(r[k]) })),
    items,
    { empty: 'No retention policy would delete anything now.' },
  );
}

export async function retentionPage() {
  const r = await get('retention/preview');
  const items = Array.isArray(r) ? r : (r.items ?? r.policies ?? r.plan ?? null);
  const total = r.total ?? r.messages ?? r.wouldDelete;
  return h(
    'div',
    null,
    pageHead({
      title: 'Retention',
      subtitle:
        'A dry run: what es retention apply would delete now. Run it from the CLI or a scheduled job.',
    }),
    total !== undefined
      ? h(
          'div',
          { class: 'tiles' },
          h(
            'div',
            { class: 'tile', 'data-testid': 'retention-total' },
            h('div', { class: 'label' }, 'Would delete'),
            h('div', { class: 'value' }, cell(total)),
          ),
        )
      : null,
    Array.isArray(items) ? card('Per policy', autoTable(items)) : null,
    card('Dry run result', jsonView(r)),
  );
}
