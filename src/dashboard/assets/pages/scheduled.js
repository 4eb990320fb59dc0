// Scheduled messages (cancel) and recurring ones (next occurrences, send now).
import { enc, get, post } from '../api.js';
import { h, link, route } from '../dom.js';
import { reload } from '../lifecycle.js';
import {
  actionButton,
  ago,
  card,
  confirmDialog,
  fmtTime,
  pageHead,
  pager,
  pill,
  shortId,
  table,
  toast,
} from '../ui.js';

async function act(path, done) {
  try {
    await post(path, {});
    toast(done);
  } catch (err) {
    toast(`${err.title ?? 'Refused'}: ${err.message}`, 'bad');
  }
  reload();
}

export async function scheduledPage(_params, query) {
  const [s, rec] = await Promise.all([get('scheduled', { after: query.after, limit: 50 }), get('recurring')]);
  const recurring = Array.isArray(rec) ? rec : (rec.items ?? []);
  return h(
    'div',
    null,
    pageHead({
      title: 'Scheduled messages',
      subtitle: 'Messages appended at a later time, and recurring ones.',
    }),
    card(`Scheduled (${s.items.length}${s.next ? '+' : ''})`, [
      table(
        [
          { label: 'Id', render: (m) => shortId(m.id) },
          {
            label: 'Stream',
            render: (m) => link(route(['streams', m.stream]), h('span', { class: 'mono' }, m.stream)),
          },
          { label: 'Type', render: (m) => m.type },
          {
            label: 'Due',
            render: (m) => [
              ago(m.dueAt ?? m.deliverAt ?? m.at),
              h('div', { class: 'faint mono' }, fmtTime(m.dueAt ?? m.deliverAt ?? m.at)),
            ],
          },
          { label: 'Status', render: (m) => pill(m.status ?? 'scheduled') },
          {
            label: '',
            class: 'actions',
            render: (m) =>
              (m.status ?? 'scheduled') === 'scheduled'
                ? actionButton(
                    'Cancel',
                    async () => {
                      if (
                        await confirmDialog({
                          title: 'Cancel this scheduled message?',
                          body: `${m.type} to ${m.stream} will not be appended.`,
                          confirm: 'Cancel message',
                          danger: true,
                        })
                      )
                        await act(`scheduled/${enc(m.id)}/cancel`, 'Cancelled.');
                    },
                    { danger: true, testid: `cancel-${m.id}` },
                  )
                : null,
          },
        ],
        s.items,
        { empty: 'Nothing scheduled.' },
      ),
      pager('#/scheduled', s.next ? route(['scheduled'], { after: s.next }) : null, !query.after),
    ]),
    card(
      `Recurring (${recurring.length})`,
      table(
        [
          { label: 'Name', render: (r) => h('strong', null, r.name) },
          {
            label: 'Schedule',
            render: (r) => h('span', { class: 'mono' }, r.cron ?? r.schedule ?? r.every ?? '—'),
          },
          { label: 'Stream', render: (r) => h('span', { class: 'mono' }, r.stream ?? '—') },
          { label: 'Type', render: (r) => r.type ?? '—' },
          {
            label: 'Next occurrences',
            render: (r) => {
              const next = r.nextOccurrences ?? r.next ?? [];
              return next.length
                ? h(
                    'div',
                    { class: 'mono' },
                    next.slice(0, 3).map((t) => h('div', null, fmtTime(t))),
                  )
                : '—';
            },
          },
          { label: 'Last sent', render: (r) => ago(r.lastOccurrenceAt ?? r.lastSentAt) },
          {
            label: '',
            class: 'actions',
            render: (r) =>
              actionButton(
                'Send now',
                async () => {
                  if (
                    await confirmDialog({
                      title: `Send ${r.name} now?`,
                      body: 'Appends one occurrence now; the schedule is unchanged.',
                      confirm: 'Send now',
                    })
                  )
                    await act(`recurring/${enc(r.name)}/send-now`, `Sent ${r.name}.`);
                },
                { testid: `send-now-${r.name}` },
              ),
          },
        ],
        recurring,
        { empty: 'No recurring message is defined in the config.' },
      ),
    ),
  );
}
