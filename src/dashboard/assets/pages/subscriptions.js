// Subscription groups and their subscriptions: status, lag, oldest age, rate; pause, resume,
// reset and replay a range, each behind a confirmation.
import { enc, get, post } from '../api.js';
import { h, link, route } from '../dom.js';
import { every, reload } from '../lifecycle.js';
import {
  actionButton,
  card,
  confirmDialog,
  fmtDuration,
  fmtNum,
  pageHead,
  pill,
  replaceWith,
  table,
  toast,
} from '../ui.js';

async function act(path, body, done) {
  try {
    const r = await post(path, body);
    toast(done(r));
  } catch (err) {
    toast(`${err.title ?? 'Refused'}: ${err.message}`, 'bad');
  }
  reload();
}

function actions(group, s) {
  const base = `subscriptions/${enc(group)}/${enc(s.name)}`;
  const label = `${group}/${s.name}`;
  const paused = s.status === 'paused';
  return [
    paused
      ? actionButton(
          'Resume',
          async () => {
            if (
              await confirmDialog({
                title: `Resume ${label}?`,
                body: 'Workers pick its checkpoints up again.',
                confirm: 'Resume',
              })
            )
              await act(`${base}/resume`, {}, () => `Resumed ${label}.`);
          },
          { testid: `resume-${s.name}` },
        )
      : actionButton(
          'Pause',
          async () => {
            if (
              await confirmDialog({
                title: `Pause ${label}?`,
                body: 'Workers stop claiming its checkpoints until it is resumed; messages keep arriving.',
                confirm: 'Pause',
              })
            )
              await act(`${base}/pause`, {}, () => `Paused ${label}.`);
          },
          { testid: `pause-${s.name}` },
        ),
    actionButton(
      'Replay…',
      async () => {
        const v = await confirmDialog({
          title: `Replay a range for ${label}`,
          body: 'Handlers run again for the messages of this range (global positions, inclusive).',
          confirm: 'Replay',
          fields: [
            { name: 'from', label: 'From global position', type: 'number', required: true, value: '1' },
            { name: 'to', label: 'To global position (empty: the end of the log)', type: 'number' },
          ],
        });
        if (!v) return;
        const body = { from: Number(v.from) };
        if (v.to !== '') body.to = Number(v.to);
        await act(
          `${base}/replay`,
          body,
          (r) =>
            `Replaying ${fmtNum(r?.messages ?? 0)} message(s) of ${label} in ${fmtNum(r?.streams?.length ?? 0)} stream(s)${r?.busy?.length ? `; ${r.busy.length} busy (a worker holds them), try again` : ''}.`,
        );
      },
      { testid: `replay-${s.name}` },
    ),
    actionButton(
      'Reset…',
      async () => {
        const v = await confirmDialog({
          title: `Reset ${label}?`,
          body: 'Moves every checkpoint of the subscription. From the start, handlers see every message again.',
          confirm: 'Reset',
          danger: true,
          fields: [
            {
              name: 'to',
              label: 'Reset to',
              options: [
                ['start', 'the start of the log'],
                ['end', 'the end of the log (skip everything)'],
              ],
              value: 'start',
            },
          ],
        });
        if (v) await act(`${base}/reset`, { to: v.to }, () => `Reset ${label} to the ${v.to}.`);
      },
      { danger: true, testid: `reset-${s.name}` },
    ),
  ];
}

function groupCard(g) {
  return card(
    h(
      'span',
      null,
      g.name,
      h(
        'span',
        { class: 'muted' },
        `  · ${g.subscriptions.length} subscription${g.subscriptions.length === 1 ? '' : 's'}`,
      ),
    ),
    table(
      [
        { label: 'Subscription', render: (s) => h('strong', null, s.name) },
        { label: 'Status', render: (s) => pill(s.status) },
        {
          label: 'Lag',
          num: true,
          render: (s) =>
            link(
              route(['checkpoints'], { status: 'lagging', group: g.name, subscription: s.name }),
              `${fmtNum(s.lag)}${s.lagCapped ? '+' : ''}`,
            ),
        },
        {
          label: 'Oldest',
          num: true,
          render: (s) =>
            s.oldestAgeMs === null || s.oldestAgeMs === undefined ? '—' : fmtDuration(s.oldestAgeMs),
        },
        {
          label: 'Rate',
          num: true,
          render: (s) =>
            s.rate === null || s.rate === undefined ? '—' : `${fmtNum(Math.round(s.rate * 10) / 10)}/s`,
        },
        {
          label: 'Retrying',
          num: true,
          render: (s) =>
            s.retrying
              ? link(
                  route(['checkpoints'], { status: 'retrying', group: g.name, subscription: s.name }),
                  pill('retry', fmtNum(s.retrying)),
                )
              : '0',
        },
        {
          label: 'Failed',
          num: true,
          render: (s) =>
            s.failed
              ? link(
                  route(['checkpoints'], { status: 'failed', group: g.name, subscription: s.name }),
                  pill('failed', fmtNum(s.failed)),
                )
              : '0',
        },
        {
          label: '',
          class: 'actions',
          render: (s) => h('div', { class: 'toolbar end' }, actions(g.name, s)),
        },
      ],
      g.subscriptions,
      {
        empty: 'No subscriptions registered in this group yet.',
        rowAttrs: (s) => ({ 'data-subscription': `${g.name}/${s.name}` }),
      },
    ),
  );
}

export async function subscriptionsPage() {
  const body = h('div');
  const draw = async () => {
    const r = await get('subscriptions');
    replaceWith(
      body,
      r.groups.length === 0
        ? card(
            null,
            h(
              'div',
              { class: 'empty' },
              'No subscription group has registered yet. Start one with es worker --group NAME.',
            ),
          )
        : r.groups.map(groupCard),
    );
  };
  await draw();
  every(5000, draw);
  return h('div', null, pageHead({ title: 'Subscriptions', subtitle: 'Refreshes every 5 s.' }), body);
}
