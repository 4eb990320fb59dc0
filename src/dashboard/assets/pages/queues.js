// Job queues: every queue's depth, in flight, delayed, dead and oldest age; a queue's next jobs and
// its dead letters, with redrive and purge (each confirmed; hidden in read-only mode).
import { enc, get, post } from '../api.js';
import { h, link, route } from '../dom.js';
import { every, reload } from '../lifecycle.js';
import {
  actionButton,
  ago,
  card,
  confirmDialog,
  fmtDuration,
  fmtNum,
  jsonView,
  pageHead,
  pill,
  shortId,
  table,
  toast,
} from '../ui.js';

const STATE_PILL = {
  ready: 'lagging',
  'in-flight': 'leased',
  delayed: 'scheduled',
  'waiting-on-key': 'paused',
};

function age(seconds) {
  return seconds > 0 ? fmtDuration(seconds * 1000) : '—';
}

function lastError(errors) {
  const e = Array.isArray(errors) ? errors[errors.length - 1] : null;
  return e ? `${e.name ?? 'Error'}: ${e.message ?? ''}` : '';
}

async function act(path, body, done) {
  try {
    const r = await post(path, body);
    toast(done(r));
  } catch (err) {
    toast(`${err.title ?? 'Refused'}: ${err.message}`, 'bad');
  }
  reload();
}

export async function queuesPage() {
  const r = await get('queues');
  every(5000, reload);
  const num = (label, key, cls) => ({
    label,
    num: true,
    render: (q) => (cls && q[key] > 0 ? h('span', { class: cls }, fmtNum(q[key])) : fmtNum(q[key])),
  });
  return h(
    'div',
    null,
    pageHead({
      title: 'Queues',
      subtitle: 'Jobs consumed once per queue: depth, in flight, delayed, dead letters and the oldest job.',
    }),
    card(
      `Queues (${r.items.length})`,
      table(
        [
          {
            label: 'Queue',
            render: (q) => link(route(['queues', q.queue]), h('strong', { class: 'mono' }, q.queue)),
          },
          num('Ready', 'ready'),
          num('In flight', 'inFlight'),
          num('Delayed', 'delayed'),
          num('On key', 'waitingOnKey'),
          num('Dead', 'dead', 'bad'),
          { label: 'Oldest', num: true, render: (q) => age(q.oldestAgeSeconds) },
          { label: 'Ready for', num: true, render: (q) => age(q.readyAgeSeconds) },
          { label: 'Done/min', num: true, render: (q) => fmtNum(Math.round(q.completedPerMinute * 10) / 10) },
          { label: 'Failed/min', num: true, render: (q) => fmtNum(Math.round(q.failedPerMinute * 10) / 10) },
        ],
        r.items,
        {
          empty: 'No queue: none declared in the config, no jobs and no dead letters.',
          rowAttrs: (q) => ({ 'data-queue': q.queue }),
        },
      ),
    ),
  );
}

export async function queuePage([name]) {
  const [list, jobs, dead] = await Promise.all([
    get('queues'),
    get(`queues/${enc(name)}/jobs`, { limit: 100 }),
    get(`queues/${enc(name)}/dead-letters`, { limit: 100 }),
  ]);
  const q = list.items.find((x) => x.queue === name);
  every(5000, reload);
  const purgeButton = (deadLetters) =>
    actionButton(
      deadLetters ? 'Purge dead letters' : 'Purge jobs',
      async () => {
        const v = await confirmDialog({
          title: deadLetters ? `Delete the dead letters of ${name}?` : `Delete every job of ${name}?`,
          body: deadLetters
            ? 'They cannot be redriven afterwards. This cannot be undone.'
            : 'Waiting, delayed and in-flight jobs are deleted (a running handler finishes, its ack finds nothing). This cannot be undone.',
          confirm: 'Purge',
          danger: true,
          fields: [{ name: 'confirm', label: `Type the queue's name (${name}) to confirm`, required: true }],
        });
        if (v)
          await act(
            `queues/${enc(name)}/purge`,
            { confirm: v.confirm, deadLetters },
            (res) => `Deleted ${fmtNum(res.deleted)} ${deadLetters ? 'dead letter(s)' : 'job(s)'}.`,
          );
      },
      { small: false, danger: true, testid: deadLetters ? 'purge-dead' : 'purge-jobs' },
    );
  const redrive = (body, what) =>
    act(
      `queues/${enc(name)}/dead-letters/redrive`,
      body,
      (res) => `Redrove ${fmtNum(res.ids.length)} ${what}.`,
    );
  return h(
    'div',
    null,
    pageHead({
      crumbs: [['Queues', '#/queues']],
      title: h('span', { class: 'mono' }, name),
      subtitle: q
        ? `${fmtNum(q.ready)} ready, ${fmtNum(q.inFlight)} in flight, ${fmtNum(q.delayed)} delayed, ${fmtNum(q.waitingOnKey)} on key, ${fmtNum(q.dead)} dead`
        : 'Nothing queued.',
      actions: [purgeButton(false)],
    }),
    card(
      `Next jobs (${jobs.items.length}${jobs.items.length >= 100 ? '+' : ''})`,
      table(
        [
          { label: 'Id', render: (j) => shortId(j.id) },
          { label: 'State', render: (j) => pill(STATE_PILL[j.state] ?? 'info', j.state) },
          { label: 'Type', render: (j) => j.type },
          { label: 'Key', render: (j) => (j.key ? h('span', { class: 'mono' }, j.key) : '—') },
          { label: 'Deliveries', num: true, render: (j) => fmtNum(j.deliveries) },
          { label: 'Visible', render: (j) => ago(j.visibleAt) },
          { label: 'Last error', render: (j) => h('span', { class: 'muted' }, lastError(j.errors)) },
        ],
        jobs.items,
        { empty: 'No job waiting.', rowAttrs: (j) => ({ 'data-job': j.id }) },
      ),
    ),
    card(
      `Dead letters (${dead.items.length}${dead.items.length >= 100 ? '+' : ''})`,
      [
        table(
          [
            { label: 'Id', render: (d) => shortId(d.id) },
            { label: 'Type', render: (d) => d.type },
            { label: 'Key', render: (d) => (d.key ? h('span', { class: 'mono' }, d.key) : '—') },
            { label: 'Deliveries', num: true, render: (d) => fmtNum(d.deliveries) },
            { label: 'Dead', render: (d) => ago(d.deadAt) },
            {
              label: 'Last error',
              render: (d) =>
                h(
                  'details',
                  null,
                  h('summary', { class: 'muted' }, lastError(d.errors)),
                  jsonView({ data: d.data, errors: d.errors }),
                ),
            },
            {
              label: '',
              class: 'actions',
              render: (d) =>
                actionButton(
                  'Redrive',
                  async () => {
                    if (
                      await confirmDialog({
                        title: 'Redrive this dead letter?',
                        body: `${d.type} goes back on ${name}, ready now; its error history is kept.`,
                        confirm: 'Redrive',
                      })
                    )
                      await redrive({ ids: [d.id] }, 'dead letter');
                  },
                  { testid: `redrive-${d.id}` },
                ),
            },
          ],
          dead.items,
          { empty: 'No dead letter.', rowAttrs: (d) => ({ 'data-dead': d.id }) },
        ),
      ],
      dead.items.length
        ? h('div', { class: 'toolbar' }, [
            actionButton(
              'Redrive all',
              async () => {
                if (
                  await confirmDialog({
                    title: `Redrive every dead letter of ${name}?`,
                    body: 'They go back on the queue, ready now.',
                    confirm: 'Redrive all',
                  })
                )
                  await redrive({ all: true }, 'dead letter(s)');
              },
              { testid: 'redrive-all' },
            ),
            purgeButton(true),
          ])
        : null,
    ),
  );
}
