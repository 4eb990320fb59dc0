import { render } from 'ink-testing-library';
import { describe, expect, it } from 'vitest';
import { LagApp } from '../../src/cli/ui/LagApp.js';
import { flattenSubscriptions, LagView, visibleRange } from '../../src/cli/ui/LagView.js';
import { smoothThroughput } from '../../src/cli/ui/useLagSnapshot.js';
import type { LagSnapshot } from '../../src/operations/lagSnapshot.js';
import type { QueueSummary } from '../../src/queues/queueOperations.js';

const snapshot: LagSnapshot = {
  takenAt: '2026-11-24T23:40:01.000Z',
  schema: 'beckett',
  head: 1234,
  readable: 1200,
  blocking: {
    pid: 4242,
    ageSeconds: 73.4,
    state: 'idle in transaction',
    query: 'UPDATE accounts SET balance = balance - 1 WHERE id = 7',
    applicationName: 'psql',
    database: 'app',
    own: false,
  },
  groups: [
    {
      name: 'InventoryAllocation',
      readerPosition: 1190,
      readerWorkerId: 'w1',
      readerAgeSeconds: 0.4,
      liveWorkers: 2,
      workers: [],
      subscriptions: [
        {
          group: 'InventoryAllocation',
          name: 'allocate',
          status: 'active',
          logPosition: 1190,
          lag: 34,
          behind: 30,
          undispatched: 4,
          undispatchedCapped: false,
          checkpointsCapped: false,
          streamsBehind: 3,
          oldestUnprocessedAgeSeconds: 2.1,
          retry: 1,
          failed: 0,
          processed: 5000,
          throughput: 120.5,
        },
        {
          group: 'InventoryAllocation',
          name: 'notify',
          status: 'paused',
          logPosition: 1234,
          lag: 0,
          behind: 0,
          undispatched: 0,
          undispatchedCapped: false,
          checkpointsCapped: false,
          streamsBehind: 0,
          oldestUnprocessedAgeSeconds: null,
          retry: 0,
          failed: 2,
          processed: 800,
          throughput: null,
        },
      ],
    },
    {
      name: 'Billing',
      readerPosition: null,
      readerWorkerId: null,
      readerAgeSeconds: null,
      liveWorkers: 0,
      workers: [],
      subscriptions: [],
    },
  ],
};

const ESC = String.fromCharCode(27);
const strip = (s: string | undefined) => (s ?? '').replace(new RegExp(`${ESC}\\[[0-9;]*m`, 'g'), '');

describe('LagView', () => {
  it('renders groups, subscriptions, the selection and the blocking transaction at a fixed width', () => {
    const { lastFrame } = render(<LagView snapshot={snapshot} selected={1} width={80} notice="retried 2" />);
    const lines = strip(lastFrame()).split('\n');
    expect(lines[0]).toBe('beckett lag  schema beckett · head 1234 · readable 1200 · 23:40:01Z');
    expect(lines).toContain(
      '⚠ transaction pid 4242 (psql, foreign) open 1m13s holds readers back at 1200: U…',
    );
    expect(lines).toContain('InventoryAllocation  2 live workers  reader at 1190 of 1234 (0.4s ago)');
    expect(lines).toContain(
      '  SUBSCRIPTION              STATUS             LAG  OLDEST   MSG/S  RETRY FAILED',
    );
    expect(lines).toContain(
      '  allocate                  active              34    2.1s     121      1      0',
    );
    expect(lines).toContain(
      '› notify                    paused               0       -       -      0      2',
    );
    expect(lines).toContain('Billing  0 live workers  reader: -');
    expect(lines).toContain('  (no subscriptions registered)');
    expect(lines.at(-1)).toBe('retried 2');
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
  });

  it('moves the selection marker with the selected prop and narrows the name column to the width', () => {
    const { lastFrame } = render(<LagView snapshot={snapshot} selected={0} width={70} />);
    const lines = strip(lastFrame()).split('\n');
    expect(lines).toContain('  SUBSCRIPTION    STATUS             LAG  OLDEST   MSG/S  RETRY FAILED');
    expect(lines).toContain('› allocate        active              34    2.1s     121      1      0');
    expect(lines).toContain('  notify          paused               0       -       -      0      2');
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(70);
  });

  it('names a prepared transaction left behind', () => {
    const prepared = { ...snapshot.blocking!, pid: 0, state: 'prepared', query: "PREPARE TRANSACTION 'x1'" };
    const lines = strip(
      render(<LagView snapshot={{ ...snapshot, blocking: prepared }} selected={0} width={100} />).lastFrame(),
    ).split('\n');
    expect(lines).toContain(
      "⚠ prepared transaction open 1m13s holds readers back at 1200: PREPARE TRANSACTION 'x1'",
    );
  });

  it('shows no warning without a blocking transaction, and "loading" before the first snapshot', () => {
    const calm = render(<LagView snapshot={{ ...snapshot, blocking: null }} selected={0} width={80} />);
    expect(strip(calm.lastFrame())).not.toContain('⚠');
    const loading = render(<LagView snapshot={undefined} selected={0} width={80} />);
    expect(strip(loading.lastFrame())).toBe('beckett lag\nloading…');
  });

  it('flattens subscriptions in display order (what the selection counts in)', () => {
    expect(flattenSubscriptions(snapshot).map((s) => s.name)).toEqual(['allocate', 'notify']);
  });
});

describe("LagView at the terminal's width", () => {
  const caughtUp: LagSnapshot = {
    ...snapshot,
    blocking: null,
    head: 20012,
    readable: 20012,
    groups: [
      {
        ...snapshot.groups[0]!,
        name: 'InventoryAllocationWithAVeryLongGroupName',
        readerPosition: 0,
        subscriptions: snapshot.groups[0]!.subscriptions.map((s) => ({
          ...s,
          name: `${s.name}-subscription-with-a-long-name`,
          lag: 0,
          undispatched: 0,
          behind: 0,
        })),
      },
    ],
  };
  const frameAt = (width: number, snap: LagSnapshot = caughtUp) =>
    strip(render(<LagView snapshot={snap} selected={0} width={width} />).lastFrame()).split('\n');

  it('at 120 columns shows every column and the reader as caught up, not "0/20012"', () => {
    const lines = frameAt(120);
    expect(lines).toContain(
      'InventoryAllocationWithAVeryLongGroupName  2 live workers  reader caught up (0.4s ago)',
    );
    expect(lines.find((l) => l.includes('SUBSCRIPTION'))).toMatch(
      /STATUS +LAG +OLDEST +MSG\/S +RETRY +FAILED$/,
    );
    expect(lines).toContain(
      '› allocate-subscription-with-a-long-name          active               0    2.1s     121      1      0',
    );
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(120);
  });

  it('at 80 columns keeps every column and cuts long names', () => {
    const lines = frameAt(80);
    expect(lines.find((l) => l.includes('SUBSCRIPTION'))).toMatch(/MSG\/S +RETRY +FAILED$/);
    expect(lines).toContain(
      'InventoryAllocationWithAVeryLongGr…  2 live workers  reader caught up (0.4s ago)',
    );
    expect(lines).toContain(
      '› allocate-subscription-wi… active               0    2.1s     121      1      0',
    );
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
  });

  it('at 60 columns drops MSG/S first, and no line wraps', () => {
    const lines = frameAt(60);
    const header = lines.find((l) => l.includes('SUBSCRIPTION')) ?? '';
    expect(header).toBe('  SUBSCRIPTION  STATUS             LAG  OLDEST  RETRY FAILED');
    expect(lines).toContain('InventoryAlloc…  2 live workers  reader caught up (0.4s ago)');
    expect(lines).toContain('› allocate-sub… active               0    2.1s      1      0');
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(60);
    // Narrower still: the name and LAG stay.
    const tiny = frameAt(30);
    for (const l of tiny) expect(l.length).toBeLessThanOrEqual(30);
    expect(tiny.find((l) => l.includes('SUBSCRIPTION'))).toBe('  SUBSCRIPTION      LAG FAILED');
  });

  it('fits the terminal height: rows around the selection, and how many more', () => {
    expect(visibleRange(10, 0, 3)).toEqual({ from: 0, to: 3 });
    expect(visibleRange(10, 9, 3)).toEqual({ from: 7, to: 10 });
    expect(visibleRange(10, 5, 3)).toEqual({ from: 4, to: 7 });
    const many: LagSnapshot = {
      ...caughtUp,
      groups: [
        {
          ...caughtUp.groups[0]!,
          subscriptions: Array.from({ length: 30 }, (_, i) => ({
            ...caughtUp.groups[0]!.subscriptions[0]!,
            name: `sub${String(i).padStart(2, '0')}`,
          })),
        },
      ],
    };
    const lines = strip(
      render(<LagView snapshot={many} selected={20} width={80} height={15} />).lastFrame(),
    ).split('\n');
    expect(lines.length).toBeLessThanOrEqual(15);
    expect(lines.some((l) => l.startsWith('› sub20'))).toBe(true);
    expect(lines.at(-1)).toMatch(/… \d+ more subscriptions \(↑\/↓ to scroll\)/);
  });

  it('follows a resize: the next frame fits the new width', async () => {
    const app = render(
      <LagApp fetch={async () => caughtUp} intervalMs={10_000} retryFailed={async () => 0} />,
    );
    const frame = () => strip(app.lastFrame()).split('\n');
    await until(() => frame().some((l) => l.includes('allocate')), 'first frame');
    expect(frame().find((l) => l.includes('SUBSCRIPTION'))).toContain('MSG/S');
    Object.defineProperty(app.stdout, 'columns', { value: 60, configurable: true });
    app.stdout.emit('resize');
    await until(() => !frame().some((l) => l.includes('MSG/S')), 'a frame at 60 columns');
    for (const l of frame()) expect(l.length).toBeLessThanOrEqual(59);
    app.unmount();
  });
});

describe('LagView queues', () => {
  const queue = (q: Partial<QueueSummary> & { queue: string }): QueueSummary => ({
    ready: 0,
    inFlight: 0,
    delayed: 0,
    retrying: 0,
    waitingOnKey: 0,
    dead: 0,
    oldestAgeSeconds: 0,
    readyAgeSeconds: 0,
    completedPerMinute: 0,
    failedPerMinute: 0,
    ...q,
  });
  const queues = [
    queue({
      queue: 'emails',
      ready: 12,
      inFlight: 4,
      delayed: 3,
      dead: 2,
      oldestAgeSeconds: 185,
      readyAgeSeconds: 1,
      completedPerMinute: 240,
    }),
    queue({ queue: 'thumbnails', ready: 0, inFlight: 1, oldestAgeSeconds: 0.5 }),
    queue({ queue: 'idle' }),
  ];
  const withQueues = { ...snapshot, blocking: null, queues };

  it('shows a section with ready, in flight, delayed, dead, oldest age and rate per queue', () => {
    const lines = strip(render(<LagView snapshot={withQueues} selected={0} width={80} />).lastFrame()).split(
      '\n',
    );
    const at = lines.indexOf('queues');
    expect(at).toBeGreaterThan(lines.indexOf('Billing  0 live workers  reader: -'));
    expect(lines.slice(at, at + 5)).toEqual([
      'queues',
      '  QUEUE                         READY IN FLIGHT  DELAYED   DEAD  OLDEST DONE/MIN',
      '  emails                           12         4        3      2   3m05s      240',
      '  thumbnails                        0         1        0      0    0.5s      0.0',
      '  idle                              0         0        0      0       -      0.0',
    ]);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
  });

  it('drops the rate, then DELAYED, when narrow; no line wraps', () => {
    const lines = strip(render(<LagView snapshot={withQueues} selected={0} width={50} />).lastFrame()).split(
      '\n',
    );
    expect(lines).toContain('  QUEUE             READY IN FLIGHT   DEAD  OLDEST');
    expect(lines).toContain('  emails               12         4      2   3m05s');
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(50);
  });

  it('leaves the section out without queues, and the subscriptions share the height with it', () => {
    const none = strip(
      render(<LagView snapshot={{ ...withQueues, queues: [] }} selected={0} width={80} />).lastFrame(),
    );
    expect(none).not.toContain('QUEUE');
    const many: LagSnapshot = {
      ...withQueues,
      groups: [
        {
          ...snapshot.groups[0]!,
          subscriptions: Array.from({ length: 30 }, (_, i) => ({
            ...snapshot.groups[0]!.subscriptions[0]!,
            name: `sub${String(i).padStart(2, '0')}`,
          })),
        },
      ],
    };
    const lines = strip(
      render(<LagView snapshot={{ ...many, queues }} selected={0} width={80} height={20} />).lastFrame(),
    ).split('\n');
    expect(lines.length).toBeLessThanOrEqual(20);
    expect(lines).toContain(
      '  idle                              0         0        0      0       -      0.0',
    );
  });

  it('LagApp shows the queues its fetch returns, refreshed', async () => {
    let ready = 1;
    const app = render(
      <LagApp
        fetch={async () => ({ ...withQueues, queues: [queue({ queue: 'emails', ready: ready++ })] })}
        intervalMs={30}
        width={80}
        retryFailed={async () => 0}
      />,
    );
    const row = () =>
      strip(app.lastFrame())
        .split('\n')
        .find((l) => l.startsWith('  emails')) ?? '';
    await until(() => /^ {2}emails +1 /.test(row()), 'the first queue row');
    await until(() => /^ {2}emails +[3-9] /.test(row()), 'a refreshed queue row');
    app.unmount();
  });
});

describe('MSG/S smoothing', () => {
  const at = (rate: number | null): LagSnapshot => ({
    ...snapshot,
    groups: [
      {
        ...snapshot.groups[0]!,
        subscriptions: [{ ...snapshot.groups[0]!.subscriptions[0]!, throughput: rate }],
      },
    ],
  });
  const rate = (s: LagSnapshot) => s.groups[0]!.subscriptions[0]!.throughput;

  it('averages jumps between refreshes instead of showing 0, 336, 0', () => {
    let shown = smoothThroughput(at(100), undefined, 1);
    expect(rate(shown)).toBe(100);
    const seen: number[] = [];
    for (const r of [0, 336, 0, 336, 0]) {
      shown = smoothThroughput(at(r), shown, 1);
      seen.push(rate(shown)!);
    }
    for (const v of seen) expect(v).toBeGreaterThan(40);
    for (const v of seen) expect(v).toBeLessThan(200);
    // A steady rate is reached: after 30 s at 50/s it shows about 50.
    for (let i = 0; i < 30; i++) shown = smoothThroughput(at(50), shown, 1);
    expect(rate(shown)).toBeCloseTo(50, 0);
    // A reset (no rate) is shown as such, and the next rate starts afresh.
    shown = smoothThroughput(at(null), shown, 1);
    expect(rate(shown)).toBeNull();
    expect(rate(smoothThroughput(at(7), shown, 1))).toBe(7);
  });
});

describe('LagApp', () => {
  it('refreshes from fetch, moves the selection with the arrows and retries with r', async () => {
    let fetches = 0;
    const retried: string[] = [];
    const fetch = async () => {
      fetches += 1;
      return { ...snapshot, takenAt: new Date(Date.parse(snapshot.takenAt) + fetches * 1000).toISOString() };
    };
    const app = render(
      <LagApp
        fetch={fetch}
        intervalMs={50}
        width={80}
        retryFailed={async (g, s) => {
          retried.push(`${g}/${s}`);
          return 2;
        }}
      />,
    );
    const frame = () => strip(app.lastFrame());
    await until(() => frame().includes('› allocate'), 'first frame');
    await until(() => fetches >= 3, 'fetches');
    app.stdin.write('\u001B[B'); // arrow down
    await until(() => frame().includes('› notify'), `› notify in\n${frame()}`);
    app.stdin.write('r');
    await until(() => frame().includes('retried 2 failed checkpoints of InventoryAllocation/notify'));
    expect(retried).toEqual(['InventoryAllocation/notify']);
    app.stdin.write('\u001B[A'); // arrow up: allocate has no failed checkpoints
    await until(() => frame().includes('› allocate'));
    app.stdin.write('r');
    await until(() => frame().includes('InventoryAllocation/allocate has no failed checkpoints.'));
    expect(retried).toEqual(['InventoryAllocation/notify']);
    app.unmount();
  });

  it('keeps the last snapshot and shows the error when a refresh fails', async () => {
    let calls = 0;
    const app = render(
      <LagApp
        fetch={async () => {
          calls += 1;
          if (calls > 1) throw new Error('connection terminated');
          return snapshot;
        }}
        intervalMs={50}
        width={80}
        retryFailed={async () => 0}
      />,
    );
    await until(() => strip(app.lastFrame()).includes('error: connection terminated'));
    expect(strip(app.lastFrame())).toContain('allocate');
    app.unmount();
  });
});

async function until(check: () => boolean, what = 'a condition', ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
