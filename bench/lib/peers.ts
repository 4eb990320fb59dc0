import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type pg from 'pg';
import { REPO_ROOT } from './env.js';

/**
 * Emmett lives in bench/peers/ with its own node_modules: it declares commander@^12 as a peer,
 * which conflicts with the root's commander@14 and would break every later `npm install` at the
 * root. Install it with `npm --prefix bench/peers install`.
 */
const EMMETT_PG = join(REPO_ROOT, 'bench', 'peers', 'node_modules', '@event-driven-io', 'emmett-postgresql');

/** The slice of Emmett's PostgreSQL event store the benchmarks drive. */
export interface EmmettEventStore {
  appendToStream(
    streamName: string,
    events: { type: string; data: Record<string, unknown> }[],
    options?: { expectedStreamVersion?: bigint },
  ): Promise<{ nextExpectedStreamVersion: bigint }>;
  schema: { migrate(): Promise<unknown> };
  close(): Promise<void>;
}

export interface EmmettModule {
  getPostgreSQLEventStore(
    connectionString: string,
    options?: { connectionOptions?: { pooled?: true; pool?: pg.Pool } },
  ): EmmettEventStore;
}

export const emmettInstallHint = 'npm --prefix bench/peers install';

/** Emmett's PostgreSQL event store, or undefined when bench/peers is not installed. */
export async function loadEmmett(): Promise<EmmettModule | undefined> {
  const entry = join(EMMETT_PG, 'dist', 'index.js');
  if (!existsSync(entry)) return undefined;
  return (await import(pathToFileURL(entry).href)) as EmmettModule;
}
