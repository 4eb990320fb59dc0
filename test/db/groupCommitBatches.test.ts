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

function harness(maxInFlight: number) {
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
});
