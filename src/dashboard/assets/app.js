// The dashboard shell: sidebar, header with live counts, and a hash router (hash routes need no
// server rewrite, so the dashboard works under any base path).
import { get, readOnly } from './api.js';
import { append, clear, h, route } from './dom.js';
import { leavePage, setReloader } from './lifecycle.js';
import { auditPage } from './pages/audit.js';
import { checkpointPage, checkpointsPage } from './pages/checkpoints.js';
import { categoriesPage, categoryPage, findPage, messagePage, streamPage } from './pages/messages.js';
import { overviewPage } from './pages/overview.js';
import { queuePage, queuesPage } from './pages/queues.js';
import { retentionPage } from './pages/retention.js';
import { scheduledPage } from './pages/scheduled.js';
import { subscriptionsPage } from './pages/subscriptions.js';
import { workersPage } from './pages/workers.js';
import { errorBox, fmtDuration, fmtNum, loading } from './ui.js';

const routes = [
  [/^$/, overviewPage, 'overview'],
  [/^messages$/, categoriesPage, 'messages'],
  [/^categories\/([^/]+)$/, categoryPage, 'messages'],
  [/^streams\/([^/]+)$/, streamPage, 'messages'],
  [/^messages\/([^/]+)$/, messagePage, 'messages'],
  [/^find$/, findPage, 'messages'],
  [/^subscriptions$/, subscriptionsPage, 'subscriptions'],
  [/^checkpoints$/, checkpointsPage, 'checkpoints'],
  [/^checkpoints\/(.+)$/, checkpointPage, 'checkpoints'],
  [/^scheduled$/, scheduledPage, 'scheduled'],
  [/^queues$/, queuesPage, 'queues'],
  [/^queues\/([^/]+)$/, queuePage, 'queues'],
  [/^workers$/, workersPage, 'workers'],
  [/^retention$/, retentionPage, 'retention'],
  [/^audit$/, auditPage, 'audit'],
];

const nav = [
  ['Overview', [['overview', 'Overview', '#/']]],
  [
    'Data',
    [
      ['messages', 'Message store', '#/messages'],
      ['scheduled', 'Scheduled', '#/scheduled'],
      ['retention', 'Retention', '#/retention'],
    ],
  ],
  [
    'Processing',
    [
      ['subscriptions', 'Subscriptions', '#/subscriptions'],
      ['checkpoints', 'Checkpoints', '#/checkpoints?status=failed', 'failed'],
      ['queues', 'Queues', '#/queues'],
      ['workers', 'Workers', '#/workers', 'liveWorkers'],
    ],
  ],
  ['Operations', [['audit', 'Audit log', '#/audit']]],
];

const el = {};

function layout() {
  el.nav = h('nav', { class: 'nav' });
  el.stats = h('div', { class: 'toolbar', 'data-testid': 'live-counts' });
  el.blocking = h('div');
  el.content = h('main', { class: 'content', id: 'content' });
  const findInput = h('input', {
    type: 'search',
    name: 'q',
    placeholder: 'Find message id, correlation id or #position',
    'aria-label': 'Find a message',
  });
  const find = h(
    'form',
    {
      class: 'find',
      role: 'search',
      onSubmit: (e) => {
        e.preventDefault();
        const q = findInput.value.trim();
        if (q) location.hash = route(['find'], { q });
      },
    },
    findInput,
  );
  const app = h(
    'div',
    { class: 'app' },
    h(
      'aside',
      { class: 'sidebar' },
      h(
        'div',
        { class: 'brand' },
        h('div', { class: 'brand-mark' }, 'b'),
        h('div', null, 'beckett', h('small', null, 'operator dashboard')),
      ),
      el.nav,
    ),
    h(
      'div',
      { class: 'main' },
      h(
        'header',
        { class: 'topbar' },
        el.stats,
        h('div', { class: 'spacer' }),
        readOnly ? h('span', { class: 'badge-ro', 'data-testid': 'read-only' }, 'read-only') : null,
        find,
      ),
      el.blocking,
      el.content,
    ),
  );
  document.body.appendChild(app);
}

function renderNav(active, summary) {
  clear(el.nav);
  for (const [section, items] of nav) {
    append(el.nav, [h('div', { class: 'nav-section' }, section)]);
    for (const [key, text, href, countKey] of items) {
      const n = countKey && summary ? summary[countKey] : undefined;
      const cls = countKey === 'failed' && n > 0 ? 'bad' : '';
      el.nav.appendChild(
        h(
          'a',
          { href, class: key === active ? 'active' : null },
          text,
          n !== undefined && n !== null ? h('span', { class: `count ${cls}` }, fmtNum(n)) : null,
        ),
      );
    }
  }
}

let lastSummary;
let activeKey = 'overview';

function stat(label, value, dotClass, href, testid) {
  return h(
    'a',
    { class: 'stat', href, 'data-testid': testid },
    h('span', { class: `dot ${dotClass}` }),
    label,
    h('b', null, fmtNum(value)),
  );
}

function renderSummary(s) {
  lastSummary = s;
  clear(el.stats);
  append(el.stats, [
    stat(
      'Lagging',
      s.lagging,
      s.lagging > 0 ? 'info' : 'ok',
      route(['checkpoints'], { status: 'lagging' }),
      'count-lagging',
    ),
    stat(
      'Retrying',
      s.retrying,
      s.retrying > 0 ? 'warn' : 'ok',
      route(['checkpoints'], { status: 'retrying' }),
      'count-retrying',
    ),
    stat(
      'Failed',
      s.failed,
      s.failed > 0 ? 'bad' : 'ok',
      route(['checkpoints'], { status: 'failed' }),
      'count-failed',
    ),
    stat('Live workers', s.liveWorkers, s.liveWorkers > 0 ? 'ok' : '', '#/workers', 'count-workers'),
  ]);
  clear(el.blocking);
  if (s.blocking) {
    append(el.blocking, [
      h(
        'div',
        { class: 'blocking', role: 'alert', 'data-testid': 'blocking' },
        h('strong', null, 'A long-open transaction holds every log reader back: '),
        `pid ${s.blocking.pid}, open for ${fmtDuration(s.blocking.ageMs)}`,
        s.blocking.query ? [' — ', h('code', null, String(s.blocking.query).slice(0, 200))] : null,
      ),
    ]);
  }
  renderNav(activeKey, s);
}

let summaryTimer;
async function refreshSummary() {
  clearTimeout(summaryTimer);
  try {
    renderSummary(await get('summary'));
  } catch (err) {
    clear(el.stats);
    el.stats.appendChild(h('span', { class: 'pill bad' }, `API unreachable: ${err.message}`));
  }
  summaryTimer = setTimeout(refreshSummary, document.hidden ? 15000 : 3000);
}

let renderSeq = 0;
async function render() {
  leavePage();
  const seq = ++renderSeq;
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, qs] = raw.split('?');
  const query = Object.fromEntries(new URLSearchParams(qs ?? ''));
  let match;
  let page;
  for (const [re, fn, key] of routes) {
    match = re.exec(path ?? '');
    if (match) {
      page = fn;
      activeKey = key;
      break;
    }
  }
  renderNav(activeKey, lastSummary);
  clear(el.content).appendChild(loading());
  let node;
  try {
    if (!page) throw Object.assign(new Error(`No page at #/${path}.`), { title: 'Not found' });
    const params = match.slice(1).map((p) => decodeURIComponent(p));
    node = await page(params, query);
  } catch (err) {
    node = errorBox(err);
  }
  if (seq !== renderSeq) return;
  clear(el.content);
  append(el.content, [node]);
  document.title = `${document.querySelector('h1')?.textContent ?? 'Dashboard'} · beckett`;
}

layout();
setReloader(() => {
  void render();
  void refreshSummary();
});
window.addEventListener('hashchange', () => void render());
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) void refreshSummary();
});
void render();
void refreshSummary();
