import type { ChildProcess } from 'node:child_process';

/**
 * Runs P worker processes and restarts any that dies (with backoff), until stopped. The child
 * processes are spawned by the caller (the CLI knows its own command line); the supervisor only
 * decides when. Each spawn gets a fresh worker id, so the leases of a dead child can be released
 * by id the moment its exit is observed, without waiting for them to expire.
 */
export interface SupervisorOptions {
  processes: number;
  /** Start child `index` with worker id `workerId`. */
  spawn: (index: number, workerId: string) => ChildProcess;
  /** Makes the id of each spawn. */
  workerId: (index: number, spawnCount: number) => string;
  /** Called once a child has exited (whatever the reason), before any restart. */
  onExit?: (workerId: string, code: number | null, signal: NodeJS.Signals | null) => Promise<void>;
  /** Lines for the operator; the library never prints. */
  log?: (line: string) => void;
  /** Restart delay: doubles on each crash in a row, from initialMs to maxMs. Default 500 ms to 30 s. */
  restartBackoff?: { initialMs: number; maxMs: number };
  /** A child that ran this long is healthy again: the backoff resets. Default 30 s. */
  healthyAfterMs?: number;
}

export interface Supervisor {
  start(): void;
  /** First call: ask every child to drain (SIGTERM). Resolves true when all exited with 0. */
  stop(): Promise<boolean>;
  /** Kill the children now (SIGKILL). */
  force(): void;
  /** Children currently running, by worker id. */
  children(): Map<string, ChildProcess>;
  /** Restarts done so far. */
  restarts(): number;
}

export function createSupervisor(opts: SupervisorOptions): Supervisor {
  const live = new Map<string, ChildProcess>();
  const backoff = opts.restartBackoff ?? { initialMs: 500, maxMs: 30_000 };
  const healthyAfter = opts.healthyAfterMs ?? 30_000;
  const log = opts.log ?? (() => undefined);
  let stopping = false;
  let restarts = 0;
  let clean = true;
  const pendingExits = new Set<Promise<void>>();
  const timers = new Set<NodeJS.Timeout>();
  let allExited: (() => void) | undefined;

  function launch(index: number, spawnCount: number, crashesInARow: number): void {
    if (stopping) return;
    const id = opts.workerId(index, spawnCount);
    const child = opts.spawn(index, id);
    const startedAt = Date.now();
    live.set(id, child);
    child.once('exit', (code, signal) => {
      live.delete(id);
      // A crash before the stop was handled by a restart; only the drain decides the exit status.
      if (stopping && code !== 0) clean = false;
      const done = (opts.onExit?.(id, code, signal) ?? Promise.resolve())
        .catch(() => undefined)
        .then(() => {
          if (!stopping) {
            const healthy = Date.now() - startedAt >= healthyAfter;
            const crashes = healthy ? 0 : crashesInARow + 1;
            const wait = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, crashes - 1));
            log(`worker process ${id} exited (${signal ?? `code ${code}`}); restarting in ${wait} ms`);
            restarts++;
            const timer = setTimeout(() => {
              timers.delete(timer);
              launch(index, spawnCount + 1, crashes);
            }, wait);
            timers.add(timer);
          }
        });
      pendingExits.add(done);
      void done.then(() => {
        pendingExits.delete(done);
        if (stopping && live.size === 0 && pendingExits.size === 0) allExited?.();
      });
    });
  }

  let stopped: Promise<boolean> | undefined;
  return {
    start() {
      for (let i = 0; i < opts.processes; i++) launch(i, 0, 0);
    },
    stop() {
      stopped ??= new Promise<boolean>((resolve) => {
        stopping = true;
        for (const t of timers) clearTimeout(t);
        timers.clear();
        allExited = () => resolve(clean);
        if (live.size === 0 && pendingExits.size === 0) return resolve(clean);
        for (const child of live.values()) child.kill('SIGTERM');
      });
      return stopped;
    },
    force() {
      stopping = true;
      clean = false;
      for (const child of live.values()) child.kill('SIGKILL');
    },
    children: () => new Map(live),
    restarts: () => restarts,
  };
}
