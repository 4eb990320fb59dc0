import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { setupDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/until.js';

/*
 * A client that reads nothing while many messages are appended must not grow the server: the SSE
 * writer stops reading from the database while the socket's buffer is full. Measured in a server
 * process of its own (RSS after a full GC), against about 32 MB of events it would otherwise buffer.
 */

const MESSAGES = 2_000;
const BATCH = 250;
const MAX_GROWTH_BYTES = 12 * 1024 * 1024;

interface Stats {
  rss: number;
  buffered: number;
  needDrain: boolean;
  events: number;
  open: number;
}

let db: TestDb;
let child: ChildProcess;
let socket: Socket | undefined;

function stats(): Promise<Stats> {
  const reply = once(child, 'message') as Promise<[Stats]>;
  child.send('stats');
  return reply.then(([s]) => s);
}

beforeAll(async () => {
  db = await setupDb('api_slow');
  child = fork(fileURLToPath(new URL('./fixtures/sseServer.ts', import.meta.url)), [], {
    execArgv: ['--expose-gc', '--import', 'jiti/register'],
    env: { ...process.env, DATABASE_URL: db.url, BECKETT_SCHEMA: db.schema },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
});

afterAll(async () => {
  socket?.destroy();
  if (child && child.exitCode === null) {
    // Wait for the exit itself; SIGKILL only if the child has not gone after 5 s.
    const exited = once(child, 'exit');
    child.send('exit');
    const escalate = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(escalate);
  }
  await db?.close();
});

it('holds a client that reads nothing at one batch and a socket buffer, then delivers everything', async () => {
  const [{ port }] = (await once(child, 'message')) as [{ port: number }];
  socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(`GET /api/events HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n`);
  socket.pause();
  await until(async () => (await stats()).open === 1, 'the server to hold the stream');
  const before = await stats();

  const pad = 'x'.repeat(16_000);
  for (let b = 0; b < MESSAGES / BATCH; b++)
    await db.store.append(
      `load-${b}`,
      Array.from({ length: BATCH }, (_, i) => ({ type: 'loaded', data: { i: b * BATCH + i, pad } })),
    );

  // The server writes until the socket's buffers are full, then waits for 'drain'.
  await until(
    async () => {
      const s = await stats();
      return s.needDrain && s.buffered > 0;
    },
    'the server to stop writing to the slow client',
    60_000,
  );
  const blocked = await stats();
  expect(blocked.rss - before.rss).toBeLessThan(MAX_GROWTH_BYTES);
  expect(blocked.events).toBeGreaterThan(0);
  expect(blocked.events).toBeLessThan(MESSAGES);

  // Reading again, the client gets the rest: nothing was dropped while it was slow.
  socket.resume();
  socket.on('data', () => undefined);
  await until(async () => (await stats()).events === MESSAGES, 'every message to be written', 60_000);
}, 240_000);
