import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/db/groupCommit.js';

/*
 * How batches form (no database: the jobs are settled by hand). The callers a committed batch
 * releases queue their next jobs in the microtasks after it; a slot that is free while another
 * batch runs must wait for them rather than start with the first one alone.
 */

interface Job {
  name: string;
  settle(): void;
}

function harness(maxInFlight: number, evenShares = false) {
  const batches: string[][] = [];
  const running: (() => void)[] = [];
  const group = new GroupCommit<Job>({
    one: (job) =>
      new Promise<void>((resolve) => {
        batches.push([job.name]);
        running.push(() => {
          job.settle();
          resolve();
        });
      }),
    many: (batch) =>
      new Promise<void>((resolve) => {
        batches.push(batch.map((j) => j.name));
        running.push(() => {
          for (const j of batch) j.settle();
          resolve();
        });
      }),
    lost: () => undefined,
    maxInFlight,
    maxBatch: 100,
    fillTurn: true,
    evenShares,
  });
  const push = (name: string) => new Promise<void>((settle) => group.push({ name, settle }));
  return { batches, running, group, push };
}

const turn = () => new Promise((r) => setImmediate(r));

describe('group commit: how batches form', () => {
  it('a lone job starts at once, alone', () => {
    const { batches, push } = harness(2);
    void push('a');
    expect(batches).toEqual([['a']]);
  });

  it('jobs queued in one turn while a batch runs share the free slot', async () => {
    const { batches, push } = harness(2);
    void push('a');
    // Three jobs in the same turn while 'a' runs: one batch, not 'b' alone and then 'c' + 'd'.
    void push('b');
    void push('c');
    void push('d');
    await turn();
    expect(batches).toEqual([['a'], ['b', 'c', 'd']]);
  });

  it('the callers a finished batch released go together into the slot it freed', async () => {
    const { batches, running, push } = harness(2);
    // Writers that append again as soon as their append is settled, through a few awaits (as the
    // store's layers do), while another batch is still running.
    const writer = async (name: string, times: number) => {
      for (let i = 0; i < times; i++) {
        await Promise.resolve();
        await push(`${name}${i}`);
      }
    };
    void push('x'); // holds the other slot
    const writers = ['a', 'b', 'c'].map((n) => writer(n, 2));
    await turn();
    await turn();
    expect(batches).toEqual([['x'], ['a0', 'b0', 'c0']]);
    running[1]!(); // the writers' batch commits; 'x' still runs
    for (let i = 0; i < 5; i++) await turn();
    expect(batches).toEqual([['x'], ['a0', 'b0', 'c0'], ['a1', 'b1', 'c1']]);
    running[2]!();
    running[0]!();
    await Promise.all(writers);
  });

  it('with even shares, a batch takes its share of the jobs queued and running', async () => {
    const { batches, running, push } = harness(2, true);
    void push('x'); // one job running in the other slot
    const jobs = Array.from({ length: 15 }, (_, i) => push(`j${i}`));
    await turn();
    // (15 queued + 1 running) / 2 slots: 8 now, not all 15 beside a batch of one.
    expect(batches.map((b) => b.length)).toEqual([1, 8]);
    running[0]!(); // 'x' commits: the other 7 take its slot
    await turn();
    await turn();
    expect(batches.map((b) => b.length)).toEqual([1, 8, 7]);
    running[1]!();
    running[2]!();
    await Promise.all(jobs);
  });

  it('with even shares, writers stuck in a batch of 15 and one of 1 spread over both slots', async () => {
    // 16 writers appending without pause; the batches commit in the order they started. Without
    // even shares the 15 and the 1 refill their own batches for ever.
    const sizesAfter = async (evenShares: boolean) => {
      const { batches, running, push } = harness(2, evenShares);
      let stop = false;
      const writer = async (name: string) => {
        for (let i = 0; !stop; i++) await push(`${name}.${i}`);
      };
      void writer('w0'); // alone: a batch of 1
      const rest = Array.from({ length: 15 }, (_, k) => writer(`w${k + 1}`));
      await turn();
      let settled = 0;
      for (let round = 0; round < 12; round++) {
        running[settled++]!();
        for (let t = 0; t < 3; t++) await turn();
      }
      const last = batches.slice(-4).map((b) => b.length);
      stop = true;
      while (settled < running.length) {
        running[settled++]!();
        await turn();
      }
      await Promise.all(rest);
      return last;
    };
    expect(await sizesAfter(false)).toEqual([1, 15, 1, 15]);
    for (const size of await sizesAfter(true)) expect(size).toBe(8);
  });

  it('runAlone runs a lone job directly; jobs pushed meanwhile wait and batch, close() waits for it', async () => {
    const { batches, running, group, push } = harness(1);
    let finish!: (v: string) => void;
    const alone = group.runAlone(() => new Promise<string>((r) => (finish = r)));
    expect(alone).toBeInstanceOf(Promise);
    // It holds the only slot: these queue, and a second lone job is refused (undefined: push it).
    const queued = [push('a'), push('b')];
    expect(group.runAlone(async () => 'never')).toBeUndefined();
    expect(batches).toEqual([]);
    let closed = false;
    const closing = group.close().then(() => {
      closed = true;
    });
    await turn();
    expect(closed).toBe(false);
    finish('done');
    expect(await alone).toBe('done');
    await turn();
    expect(batches).toEqual([['a', 'b']]);
    running[0]!();
    await Promise.all(queued);
    await closing;
    expect(closed).toBe(true);
    expect(() => group.runAlone(async () => 'late')).toThrow(/closed/i);
  });

  it('runAlone gives back its slot when the job throws before it returns a promise', async () => {
    const { batches, running, group, push } = harness(1);
    const boom = group.runAlone(() => {
      throw new Error('boom');
    });
    await expect(boom).rejects.toThrow('boom');
    // The slot is free again: a pushed job starts at once, and close() does not wait for the throw.
    const job = push('a');
    expect(batches).toEqual([['a']]);
    running[0]!();
    await job;
    await group.close();
  });
});
