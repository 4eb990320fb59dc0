import { InvalidInputError } from '../errors.js';

/** A checkpoint's key. Its id, as the CLI shows and takes it, is `group/subscription/stream`. */
export interface CheckpointKey {
  group: string;
  subscription: string;
  stream: string;
}

export function checkpointId(k: CheckpointKey): string {
  return `${k.group}/${k.subscription}/${k.stream}`;
}

/** Parse `group/subscription/stream` (group and subscription names have no `/`; a stream may). */
export function parseCheckpointId(id: string): CheckpointKey {
  const first = id.indexOf('/');
  const second = first < 0 ? -1 : id.indexOf('/', first + 1);
  if (first <= 0 || second <= first + 1 || second === id.length - 1) {
    throw new InvalidInputError(
      `Invalid checkpoint id ${JSON.stringify(id)}: expected group/subscription/stream.`,
      'List checkpoints and their ids with: es checkpoints --status failed',
    );
  }
  return {
    group: id.slice(0, first),
    subscription: id.slice(first + 1, second),
    stream: id.slice(second + 1),
  };
}

/** Which checkpoints an operation applies to: these ids, or every one matching the filters. */
export type CheckpointSelector =
  | { ids: CheckpointKey[] }
  | { group?: string; subscription?: string; status?: 'active' | 'retry' | 'failed' };

/** SQL condition (on alias `c`) and parameters, numbered from `$first`, for a selector. */
export function selectorSql(sel: CheckpointSelector, first: number): { where: string; params: unknown[] } {
  const p = (i: number) => `$${first + i}`;
  if ('ids' in sel) {
    return {
      where: `(c.group_name, c.subscription_name, c.stream_name) IN
                (SELECT * FROM unnest(${p(0)}::text[], ${p(1)}::text[], ${p(2)}::text[]))`,
      params: [sel.ids.map((k) => k.group), sel.ids.map((k) => k.subscription), sel.ids.map((k) => k.stream)],
    };
  }
  return {
    where: `(${p(0)}::text IS NULL OR c.group_name = ${p(0)})
        AND (${p(1)}::text IS NULL OR c.subscription_name = ${p(1)})
        AND (${p(2)}::text IS NULL OR c.status = ${p(2)})`,
    params: [sel.group ?? null, sel.subscription ?? null, sel.status ?? null],
  };
}
