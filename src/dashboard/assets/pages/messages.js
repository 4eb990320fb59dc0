// The message store: categories -> streams -> a stream's messages -> one message; and "find".
import { ApiError, enc, get } from '../api.js';
import { h, link, route } from '../dom.js';
import { every, onLeave } from '../lifecycle.js';
import { ago, card, fmtNum, fmtTime, jsonView, kv, pageHead, pager, shortId, table } from '../ui.js';

const PAGE = 50;
/** Rows a live stream page keeps. */
const LIVE_MAX = 500;

export async function categoriesPage(_params, query) {
  const search = query.search ?? '';
  const r = await get('categories', { search, after: query.after, limit: PAGE });
  const input = h('input', {
    type: 'search',
    name: 'search',
    value: search,
    placeholder: 'Search categories',
  });
  const form = h(
    'form',
    {
      class: 'toolbar',
      onSubmit: (e) => {
        e.preventDefault();
        location.hash = route(['messages'], { search: input.value.trim() });
      },
    },
    input,
    h('button', { type: 'submit' }, 'Search'),
  );
  return h(
    'div',
    null,
    pageHead({
      title: 'Message store',
      subtitle: 'Categories are the part of a stream name before the first "-".',
      actions: form,
    }),
    card(null, [
      table(
        [
          { label: 'Category', render: (c) => link(route(['categories', c.category]), c.category) },
          r.items.some((c) => c.streams !== undefined)
            ? { label: 'Streams', num: true, render: (c) => fmtNum(c.streams) }
            : null,
          {
            label: 'Messages (est.)',
            num: true,
            render: (c) =>
              h(
                'span',
                {
                  title:
                    'An estimate from the database statistics (ANALYZE), exact for the most common categories',
                },
                c.estimatedMessages === null || c.estimatedMessages === undefined
                  ? '—'
                  : `≈ ${fmtNum(c.estimatedMessages)}`,
              ),
          },
          { label: 'Last global position', num: true, render: (c) => fmtNum(c.lastGlobalPosition) },
          { label: 'Last message', render: (c) => ago(c.lastTime) },
        ],
        r.items,
        { empty: search ? `No category matches "${search}".` : 'No messages yet.' },
      ),
      pager(
        route(['messages'], { search }),
        r.next ? route(['messages'], { search, after: r.next }) : null,
        !query.after,
      ),
    ]),
  );
}

export async function categoryPage([category], query) {
  const r = await get(`categories/${enc(category)}/streams`, { after: query.after, limit: PAGE });
  return h(
    'div',
    null,
    pageHead({
      crumbs: [['Message store', '#/messages'], [category]],
      title: category,
      subtitle: 'Streams of this category',
    }),
    card(null, [
      table(
        [
          {
            label: 'Stream',
            render: (s) => link(route(['streams', s.stream]), h('span', { class: 'mono' }, s.stream)),
          },
          { label: 'Version', num: true, render: (s) => fmtNum(s.version) },
          { label: 'Last message', render: (s) => ago(s.lastTime) },
        ],
        r.items,
        { empty: 'No streams in this category.' },
      ),
      pager(
        route(['categories', category]),
        r.next ? route(['categories', category], { after: r.next }) : null,
        !query.after,
      ),
    ]),
  );
}

function categoryOf(stream) {
  const i = stream.indexOf('-');
  return i < 0 ? stream : stream.slice(0, i);
}

function messageColumns({ withStream = false } = {}) {
  return [
    withStream
      ? {
          label: 'Stream',
          render: (m) => link(route(['streams', m.stream]), h('span', { class: 'mono' }, m.stream)),
        }
      : { label: 'Pos', num: true, render: (m) => fmtNum(m.position) },
    withStream ? { label: 'Pos', num: true, render: (m) => fmtNum(m.position) } : null,
    { label: 'Type', render: (m) => link(route(['messages', m.id]), m.type) },
    {
      label: 'Data',
      class: 'preview',
      render: (m) => h('span', { class: 'mono', title: JSON.stringify(m.data) }, JSON.stringify(m.data)),
    },
    { label: 'Global', num: true, render: (m) => fmtNum(m.globalPosition) },
    { label: 'Id', render: (m) => shortId(m.id) },
    { label: 'Time', class: 'nowrap', render: (m) => ago(m.time) },
  ].filter(Boolean);
}

export async function streamPage([stream], query) {
  const from = query.from ?? '';
  const r = await get(`streams/${enc(stream)}/messages`, { from, limit: PAGE });
  const category = categoryOf(stream);
  const rows = [...r.items];
  const body = h('div');
  const renderTable = () => {
    body.replaceChildren(table(messageColumns(), rows, { empty: 'This stream has no messages.' }));
  };
  renderTable();
  // Live: while the last page is shown, new messages of the stream arrive over the SSE endpoint,
  // or by polling when the server has no event stream. At most LIVE_MAX rows are kept.
  const live = h('span', { class: 'live-indicator', 'data-testid': 'live' });
  const say = (dot, text) => live.replaceChildren(h('span', { class: `dot ${dot}` }), text);
  const seen = new Set(rows.map((m) => m.id));
  const add = (m) => {
    const last = rows.at(-1);
    if (!m || m.stream !== stream || seen.has(m.id) || (last && m.position <= last.position)) return;
    seen.add(m.id);
    rows.push(m);
    if (rows.length > LIVE_MAX) rows.splice(0, rows.length - LIVE_MAX);
    renderTable();
  };
  const poll = () => {
    say('ok', 'live (polling)');
    every(3000, async () => {
      const last = rows.at(-1);
      const more = await get(`streams/${enc(stream)}/messages`, {
        from: last ? last.position + 1 : 1,
        limit: PAGE,
      });
      for (const m of more.items) add(m);
    });
  };
  if (r.next === null || r.next === undefined) {
    if (typeof EventSource !== 'function') poll();
    else {
      const es = new EventSource(`api/events?${new URLSearchParams({ stream })}`);
      es.addEventListener('message', (e) => {
        try {
          add(JSON.parse(e.data));
        } catch {
          /* not a message */
        }
      });
      es.addEventListener('caught-up', () => say('ok', 'live'));
      es.onerror = () => {
        if (es.readyState === EventSource.CLOSED) {
          es.close();
          poll();
        } else say('', 'reconnecting');
      };
      onLeave(() => es.close());
    }
  }
  return h(
    'div',
    null,
    pageHead({
      crumbs: [['Message store', '#/messages'], [category, route(['categories', category])], ['stream']],
      title: h('span', { class: 'mono', 'data-testid': 'stream-name' }, stream),
      subtitle: rows.length ? `${fmtNum(rows.length)} message${rows.length === 1 ? '' : 's'} shown` : null,
      actions: live,
    }),
    card(null, [
      body,
      pager(
        route(['streams', stream]),
        r.next !== null && r.next !== undefined ? route(['streams', stream], { from: r.next }) : null,
        !from,
      ),
    ]),
  );
}

function linkedTable(title, items) {
  return card(
    `${title} (${items?.length ?? 0})`,
    table(messageColumns({ withStream: true }), items ?? [], {
      empty: `No ${title.toLowerCase()} messages.`,
    }),
  );
}

export async function messagePage([id]) {
  const r = await get(`messages/${enc(id)}`);
  const m = r.message;
  const meta = m.metadata ?? {};
  const nav = h(
    'div',
    { class: 'toolbar' },
    r.previous
      ? h(
          'a',
          { class: 'btn', href: route(['messages', r.previous]), 'data-testid': 'previous' },
          '⟵ Previous',
        )
      : h('button', { disabled: true }, '⟵ Previous'),
    r.next
      ? h('a', { class: 'btn', href: route(['messages', r.next]), 'data-testid': 'next' }, 'Next ⟶')
      : h('button', { disabled: true }, 'Next ⟶'),
  );
  const category = categoryOf(m.stream);
  return h(
    'div',
    null,
    pageHead({
      crumbs: [
        ['Message store', '#/messages'],
        [category, route(['categories', category])],
        [m.stream, route(['streams', m.stream])],
        [`#${m.position}`],
      ],
      title: h('span', { 'data-testid': 'message-type' }, m.type),
      subtitle: h('span', { class: 'mono' }, m.id),
      actions: nav,
    }),
    h(
      'div',
      { class: 'grid-2' },
      card(
        'Message',
        h(
          'div',
          { class: 'card-body' },
          kv([
            ['Stream', link(route(['streams', m.stream]), h('span', { class: 'mono' }, m.stream))],
            ['Position', fmtNum(m.position)],
            ['Global position', fmtNum(m.globalPosition)],
            [
              'Log position',
              m.logPosition !== undefined ? h('span', { class: 'mono' }, String(m.logPosition)) : null,
            ],
            ['Time', fmtTime(m.time)],
            ['Type', m.type],
            [
              'Correlation id',
              (meta.correlationId ?? meta.correlation_id)
                ? link(
                    route(['find'], { q: meta.correlationId ?? meta.correlation_id }),
                    h('span', { class: 'mono' }, meta.correlationId ?? meta.correlation_id),
                  )
                : null,
            ],
            [
              'Causation id',
              (meta.causationId ?? meta.causation_id)
                ? link(
                    route(['messages', meta.causationId ?? meta.causation_id]),
                    h('span', { class: 'mono' }, meta.causationId ?? meta.causation_id),
                  )
                : null,
            ],
          ]),
        ),
      ),
      card('Metadata', jsonView(m.metadata ?? {})),
    ),
    card('Data', h('div', { 'data-testid': 'message-data' }, jsonView(m.data))),
    linkedTable('Same correlation', r.correlated),
    linkedTable('Caused by this message', r.caused),
  );
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function findPage(_params, query) {
  const q = (query.q ?? '').trim();
  const head = pageHead({ crumbs: [['Message store', '#/messages'], ['find']], title: `Find “${q}”` });
  const sections = [];
  if (/^#?\d+$/.test(q)) {
    const r = await get('messages', { globalPosition: q.replace('#', '') });
    if (r.items.length === 1) {
      location.replace(route(['messages', r.items[0].id]));
      return head;
    }
    sections.push(linkedTable('At global position', r.items));
  } else {
    if (UUID.test(q)) {
      try {
        await get(`messages/${enc(q)}`);
        location.replace(route(['messages', q]));
        return head;
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 404) throw err;
      }
    }
    const [byCorrelation, byCausation] = await Promise.all([
      get('messages', { correlationId: q }),
      get('messages', { causationId: q }),
    ]);
    sections.push(linkedTable('Correlation id', byCorrelation.items));
    if (byCausation.items.length) sections.push(linkedTable('Causation id', byCausation.items));
    sections.push(
      h(
        'p',
        { class: 'muted' },
        'Looking for a stream? ',
        link(route(['streams', q]), h('span', { class: 'mono' }, `Open stream ${q}`)),
      ),
    );
  }
  return h('div', null, head, sections);
}
