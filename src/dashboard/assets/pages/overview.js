// The landing page: the header's counts as tiles, and every subscription's lag at a glance.
import { get } from '../api.js';
import { h, link, route } from '../dom.js';
import { every, reload } from '../lifecycle.js';
import { card, fmtDuration, fmtNum, pageHead, pill, table } from '../ui.js';

function tile(label, value, dot, href, testid) {
  return h(
    'a',
    { class: 'tile', href, 'data-testid': testid },
    h('div', { class: 'label' }, h('span', { class: `dot ${dot}` }), label),
    h('div', { class: 'value' }, value),
  );
}

export async function overviewPage() {
  const [s, subs] = await Promise.all([get('summary'), get('subscriptions')]);
  const rows = subs.groups.flatMap((g) => g.subscriptions.map((x) => ({ group: g.name, ...x })));
  every(5000, reload);
  return h(
    'div',
    null,
    pageHead({ title: 'Overview', subtitle: 'Refreshes every 5 s.' }),
    h(
      'div',
      { class: 'tiles' },
      tile('Log end', fmtNum(s.head ?? s.logEnd), 'info', '#/messages', 'tile-log'),
      tile(
        'Lagging checkpoints',
        fmtNum(s.lagging),
        s.lagging ? 'info' : 'ok',
        route(['checkpoints'], { status: 'lagging' }),
        'tile-lagging',
      ),
      tile(
        'Retrying',
        fmtNum(s.retrying),
        s.retrying ? 'warn' : 'ok',
        route(['checkpoints'], { status: 'retrying' }),
        'tile-retrying',
      ),
      tile(
        'Failed',
        fmtNum(s.failed),
        s.failed ? 'bad' : 'ok',
        route(['checkpoints'], { status: 'failed' }),
        'tile-failed',
      ),
      tile('Live workers', fmtNum(s.liveWorkers), s.liveWorkers ? 'ok' : '', '#/workers', 'tile-workers'),
      tile(
        'Blocking transaction',
        s.blocking ? `pid ${s.blocking.pid}` : 'none',
        s.blocking ? 'warn' : 'ok',
        '#/',
        'tile-blocking',
      ),
    ),
    card(
      'Subscriptions',
      table(
        [
          { label: 'Group', render: (r) => r.group },
          { label: 'Subscription', render: (r) => h('strong', null, r.name) },
          { label: 'Status', render: (r) => pill(r.status) },
          { label: 'Lag', num: true, render: (r) => `${fmtNum(r.lag)}${r.lagCapped ? '+' : ''}` },
          {
            label: 'Oldest',
            num: true,
            render: (r) =>
              r.oldestAgeMs === null || r.oldestAgeMs === undefined ? '—' : fmtDuration(r.oldestAgeMs),
          },
          {
            label: 'Rate',
            num: true,
            render: (r) =>
              r.rate === null || r.rate === undefined ? '—' : `${fmtNum(Math.round(r.rate * 10) / 10)}/s`,
          },
          {
            label: 'Retrying',
            num: true,
            render: (r) => (r.retrying ? pill('retry', fmtNum(r.retrying)) : '0'),
          },
          { label: 'Failed', num: true, render: (r) => (r.failed ? pill('failed', fmtNum(r.failed)) : '0') },
        ],
        rows,
        { empty: 'No subscription group has registered yet.' },
      ),
      link('#/subscriptions', 'Manage subscriptions ⟶'),
    ),
  );
}
