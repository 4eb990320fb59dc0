// Checkpoint lists (lagging, retrying, failed, leased) with bulk retry / skip / release, and one
// checkpoint's page with its error and attempt history.
import { enc, get, post, readOnly } from '../api.js';
import { h, link, route } from '../dom.js';
import { every, reload } from '../lifecycle.js';
import {
  actionButton,
  ago,
  card,
  confirmDialog,
  fmtNum,
  fmtTime,
  jsonView,
  kv,
  pageHead,
  pager,
  pill,
  table,
  toast,
} from '../ui.js';

const TABS = [
  ['failed', 'Failed'],
  ['retrying', 'Retrying'],
  ['lagging', 'Lagging'],
  ['leased', 'Leased'],
];

function describe(r, verb) {
  const n = r?.changed?.length ?? r?.count ?? 0;
  const busy = r?.busy?.length ? `, ${r.busy.length} busy (a worker holds it; try again)` : '';
  const missing = r?.missing?.length ? `, ${r.missing.length} not found` : '';
  return `${verb} ${n} checkpoint${n === 1 ? '' : 's'}${busy}${missing}.`;
}

async function bulk(path, body, verb) {
  try {
    toast(describe(await post(path, body), verb));
  } catch (err) {
    toast(`${err.title ?? 'Refused'}: ${err.message}`, 'bad');
  }
  reload();
}

function errorText(e) {
  if (!e) return null;
  return [e.type ? `${e.type}: ` : '', e.message ?? ''].join('');
}

export async function checkpointsPage(_params, query) {
  const status = query.status ?? 'failed';
  const filter = { group: query.group, subscription: query.subscription };
  const r = await get('checkpoints', { status, ...filter, after: query.after, limit: 100 });
  const selected = new Set();
  const bar = h('div', { class: 'toolbar' });
  const count = h('span', { class: 'muted' });
  const updateBar = () => {
    count.textContent = selected.size ? `${selected.size} selected` : '';
    for (const b of bar.querySelectorAll('button[data-needs-selection]')) b.disabled = selected.size === 0;
  };
  const ids = () => [...selected];
  const buttons = [];
  if (status === 'failed' || status === 'retrying') {
    buttons.push(
      actionButton(
        'Retry selected',
        async () => {
          if (
            await confirmDialog({
              title: `Retry ${selected.size} checkpoint(s)?`,
              body: 'They get a fresh round of attempts now.',
              confirm: 'Retry',
            })
          )
            await bulk('checkpoints/retry', { ids: ids() }, 'Retried');
        },
        { small: false, testid: 'retry-selected' },
      ),
      actionButton(
        'Skip selected',
        async () => {
          if (
            await confirmDialog({
              title: `Skip the failing message of ${selected.size} checkpoint(s)?`,
              body: 'The handler will never see those messages; the streams move on. This is recorded in the audit log.',
              confirm: 'Skip',
              danger: true,
            })
          )
            await bulk('checkpoints/skip', { ids: ids() }, 'Skipped');
        },
        { small: false, danger: true, testid: 'skip-selected' },
      ),
    );
  }
  if (status === 'leased') {
    buttons.push(
      actionButton(
        'Release selected',
        async () => {
          if (
            await confirmDialog({
              title: `Release ${selected.size} lease(s)?`,
              body: 'Use this only for a worker you know is gone: another worker may claim the checkpoint at once.',
              confirm: 'Release',
              danger: true,
            })
          )
            await bulk('checkpoints/release', { ids: ids() }, 'Released');
        },
        { small: false, danger: true, testid: 'release-selected' },
      ),
    );
  }
  for (const b of buttons) if (b) b.setAttribute('data-needs-selection', '');
  if ((status === 'failed' || status === 'retrying') && r.items.length > 0) {
    const target = {
      status: status === 'failed' ? 'failed' : 'retry',
      ...(filter.group ? { group: filter.group } : {}),
      ...(filter.subscription ? { subscription: filter.subscription } : {}),
    };
    const scope = filter.group
      ? ` of ${filter.group}${filter.subscription ? `/${filter.subscription}` : ''}`
      : '';
    buttons.push(
      actionButton(
        `Retry all ${status}`,
        async () => {
          if (
            await confirmDialog({
              title: `Retry every ${status} checkpoint${scope}?`,
              body: 'Each gets a fresh round of attempts now, including ones not shown on this page.',
              confirm: 'Retry all',
            })
          )
            await bulk('checkpoints/retry', target, 'Retried');
        },
        { small: false, testid: 'retry-all' },
      ),
    );
  }
  bar.append(count, ...buttons.filter(Boolean));
  const all = h('input', {
    type: 'checkbox',
    'aria-label': 'Select all',
    onChange: (e) => {
      for (const cb of document.querySelectorAll('input[data-cp]')) {
        cb.checked = e.target.checked;
        if (cb.checked) selected.add(cb.dataset.cp);
        else selected.delete(cb.dataset.cp);
      }
      updateBar();
    },
  });
  const columns = [
    readOnly || buttons.length === 0
      ? null
      : {
          label: all,
          class: 'check',
          render: (c) =>
            h('input', {
              type: 'checkbox',
              'data-cp': c.id,
              'aria-label': `Select ${c.id}`,
              onChange: (e) => {
                if (e.target.checked) selected.add(c.id);
                else selected.delete(c.id);
                updateBar();
              },
            }),
        },
    {
      label: 'Checkpoint',
      class: 'wrap',
      render: (c) => link(route(['checkpoints', c.id]), h('span', { class: 'mono' }, c.id)),
    },
    {
      label: 'Status',
      render: (c) => pill(c.status === 'active' ? (status === 'leased' ? 'leased' : 'lagging') : c.status),
    },
    { label: 'Position', num: true, render: (c) => `${fmtNum(c.position)} / ${fmtNum(c.version)}` },
    { label: 'Attempts', num: true, render: (c) => fmtNum(c.attempts) },
    status === 'leased'
      ? {
          label: 'Leased by',
          render: (c) => [
            h('span', { class: 'mono' }, c.leasedBy ?? '—'),
            ' ',
            h('span', { class: 'muted' }, 'until '),
            ago(c.leasedUntil),
          ],
        }
      : status === 'failed'
        ? { label: 'Failed', render: (c) => ago(c.lastError?.at ?? null) }
        : status === 'lagging'
          ? { label: 'Behind', num: true, render: (c) => fmtNum(Math.max(0, c.version - c.position)) }
          : { label: 'Next attempt', render: (c) => ago(c.nextAttemptAt) },
    {
      label: 'Last error',
      class: 'wrap',
      render: (c) => h('span', { class: 'muted' }, errorText(c.lastError) ?? ''),
    },
  ].filter(Boolean);
  const tabs = h(
    'div',
    { class: 'tabs' },
    TABS.map(([s, t]) =>
      h(
        'a',
        { href: route(['checkpoints'], { status: s, ...filter }), class: s === status ? 'active' : null },
        t,
      ),
    ),
  );
  const filterNote =
    filter.group || filter.subscription
      ? h(
          'span',
          { class: 'pill info' },
          `${filter.group ?? ''}${filter.subscription ? `/${filter.subscription}` : ''}`,
          ' ',
          link(route(['checkpoints'], { status }), '×'),
        )
      : null;
  const page = h(
    'div',
    null,
    pageHead({
      title: 'Checkpoints',
      subtitle: 'One per stream and subscription: where its handler is.',
      actions: filterNote,
    }),
    tabs,
    card(
      `${TABS.find(([s]) => s === status)?.[1] ?? status} (${fmtNum(r.items.length)}${r.next ? '+' : ''})`,
      [
        table(columns, r.items, {
          empty: `No ${status} checkpoints.`,
          rowAttrs: (c) => ({ 'data-checkpoint': c.id }),
        }),
        pager(
          route(['checkpoints'], { status, ...filter }),
          r.next ? route(['checkpoints'], { status, ...filter, after: r.next }) : null,
          !query.after,
        ),
      ],
      bar,
    ),
  );
  updateBar();
  every(5000, () => {
    if (selected.size === 0) reload();
  });
  return page;
}

export async function checkpointPage([id]) {
  const c = await get(`checkpoints/${enc(id)}`);
  const body = { ids: [c.id] };
  const acts = [];
  if (c.status === 'retry' || c.status === 'failed') {
    acts.push(
      actionButton(
        'Retry now',
        async () => {
          if (
            await confirmDialog({
              title: `Retry ${c.id}?`,
              body: 'A fresh round of attempts starts now.',
              confirm: 'Retry',
            })
          )
            await bulk('checkpoints/retry', body, 'Retried');
        },
        { small: false, testid: 'retry' },
      ),
      actionButton(
        'Skip message',
        async () => {
          if (
            await confirmDialog({
              title: `Skip message ${c.position + 1} of ${c.stream}?`,
              body: 'The handler will never see it; the stream moves on.',
              confirm: 'Skip',
              danger: true,
            })
          )
            await bulk('checkpoints/skip', body, 'Skipped');
        },
        { small: false, danger: true, testid: 'skip' },
      ),
    );
  }
  if (c.leasedBy)
    acts.push(
      actionButton(
        'Release lease',
        async () => {
          if (
            await confirmDialog({
              title: `Release the lease of ${c.leasedBy}?`,
              confirm: 'Release',
              danger: true,
            })
          )
            await bulk('checkpoints/release', body, 'Released');
        },
        { small: false, danger: true, testid: 'release' },
      ),
    );
  const attemptList = Array.isArray(c.attemptHistory)
    ? c.attemptHistory
    : Array.isArray(c.attempts)
      ? c.attempts
      : [];
  const attemptCount = typeof c.attempts === 'number' ? c.attempts : (c.attemptCount ?? attemptList.length);
  const history = Array.isArray(c.history) ? c.history : [];
  const live = h('div');
  const page = h(
    'div',
    null,
    pageHead({
      crumbs: [
        [
          'Checkpoints',
          route(['checkpoints'], {
            status: c.status === 'retry' ? 'retrying' : c.status === 'failed' ? 'failed' : 'lagging',
          }),
        ],
        [c.group],
        [c.subscription],
      ],
      title: h('span', { class: 'mono' }, c.stream),
      subtitle: h('span', { class: 'mono' }, c.id),
      actions: acts.filter(Boolean),
    }),
    live,
    h(
      'div',
      { class: 'grid-2' },
      card(
        'State',
        h(
          'div',
          { class: 'card-body' },
          kv([
            ['Status', h('span', { 'data-testid': 'checkpoint-status' }, pill(c.status))],
            ['Group', c.group],
            ['Subscription', c.subscription],
            ['Stream', link(route(['streams', c.stream]), h('span', { class: 'mono' }, c.stream))],
            ['Processed up to', h('span', { 'data-testid': 'checkpoint-position' }, fmtNum(c.position))],
            ['Stream version', fmtNum(c.version)],
            ['Attempts', fmtNum(attemptCount)],
            ['Next attempt', c.status === 'active' ? null : ago(c.nextAttemptAt)],
            [
              'Lease',
              c.leasedBy
                ? [h('span', { class: 'mono' }, c.leasedBy), ' until ', fmtTime(c.leasedUntil)]
                : null,
            ],
          ]),
        ),
      ),
      card(
        'Last error',
        c.lastError
          ? [
              h(
                'div',
                { class: 'card-body' },
                h('strong', null, errorText(c.lastError)),
                c.lastError.at
                  ? h(
                      'div',
                      { class: 'muted' },
                      `attempt ${c.lastError.attempt ?? '?'} at ${fmtTime(c.lastError.at)}`,
                    )
                  : null,
              ),
              c.lastError.stack ? h('pre', { class: 'stack' }, c.lastError.stack) : null,
            ]
          : h('div', { class: 'empty' }, 'No error recorded.'),
      ),
    ),
    card(
      `Failed attempts (${attemptList.length}${attemptList.length >= 10 ? ', the last 10' : ''})`,
      attemptList.length
        ? h(
            'ul',
            { class: 'timeline', 'data-testid': 'attempts' },
            attemptList.map((a) =>
              h(
                'li',
                null,
                h(
                  'div',
                  null,
                  pill('failed', `attempt ${a.attempt ?? '?'}`),
                  h(
                    'span',
                    { class: 'muted' },
                    ` · ${fmtTime(a.at)}${a.position ? ` · on stream position ${fmtNum(a.position)}` : ''}`,
                  ),
                ),
                h('div', { class: 'mono' }, errorText(a) ?? ''),
              ),
            ),
          )
        : h('div', { class: 'empty' }, 'No failed attempt recorded.'),
    ),
    card(
      `Operator actions (${history.length})`,
      history.length
        ? h(
            'ul',
            { class: 'timeline', 'data-testid': 'history' },
            history.map((a) =>
              h(
                'li',
                null,
                pill(a.result === 'ok' ? 'ok' : 'error', a.action),
                h('span', { class: 'muted' }, ` by ${a.actor} · ${fmtTime(a.at)}`),
              ),
            ),
          )
        : h('div', { class: 'empty' }, 'No operator action on this checkpoint yet.'),
    ),
    card('Raw', jsonView(c)),
  );
  every(3000, async () => {
    const n = await get(`checkpoints/${enc(id)}`).catch(() => null);
    if (n && (n.status !== c.status || n.position !== c.position)) reload();
  });
  return page;
}
