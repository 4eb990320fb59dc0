// Workers: live ones (fresh heartbeat) and the ones gone.
import { get } from '../api.js';
import { h } from '../dom.js';
import { every, reload } from '../lifecycle.js';
import { ago, card, fmtDuration, fmtNum, pageHead, pill, table } from '../ui.js';

function heartbeat(w) {
  if (w.heartbeatAgeMs !== undefined) return fmtDuration(w.heartbeatAgeMs);
  if (w.heartbeatAgeSeconds !== undefined) return fmtDuration(w.heartbeatAgeSeconds * 1000);
  return ago(w.heartbeatAt ?? w.lastHeartbeat);
}

export async function workersPage() {
  const r = await get('workers');
  const items = Array.isArray(r) ? r : (r.items ?? [...(r.live ?? []), ...(r.gone ?? [])]);
  const cols = [
    { label: 'Worker', render: (w) => h('span', { class: 'mono' }, w.id) },
    { label: 'State', render: (w) => pill(w.live ? 'live' : 'gone') },
    { label: 'Group', render: (w) => w.group ?? '—' },
    { label: 'Host', render: (w) => w.host ?? '—' },
    { label: 'Pid', num: true, render: (w) => fmtNum(w.pid) },
    { label: 'Concurrency', num: true, render: (w) => fmtNum(w.concurrency) },
    { label: 'Last heartbeat', num: true, render: heartbeat },
  ];
  const live = items.filter((w) => w.live);
  const gone = items.filter((w) => !w.live);
  every(5000, reload);
  return h(
    'div',
    null,
    pageHead({ title: 'Workers', subtitle: `${live.length} live, ${gone.length} gone` }),
    card(
      `Live (${live.length})`,
      table(cols, live, { empty: 'No live worker. Start one with es worker --group NAME.' }),
    ),
    card(`Gone (${gone.length})`, table(cols, gone, { empty: 'None.' })),
  );
}
