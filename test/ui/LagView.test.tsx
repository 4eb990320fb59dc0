import { render } from 'ink-testing-library';
import { describe, expect, it } from 'vitest';
import { LagApp } from '../../src/cli/ui/LagApp.js';
import { flattenSubscriptions, LagView } from '../../src/cli/ui/LagView.js';
import type { LagSnapshot } from '../../src/operations/lagSnapshot.js';

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
      '⚠ transaction pid 4242 (psql) open 1m13s holds every reader back at 1200: UPDAT…',
    );
    expect(lines).toContain('InventoryAllocation  2 live workers  reader 1190/1234 (0.4s ago)');
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
