import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');

// Against the built package (npm run build first, as for the CLI tests): a strict TypeScript
// project that imports 'beckett/testing' through package.json's exports.
it("import { createInMemoryStore, DeciderSpecification } from 'beckett/testing' type-checks in a strict project", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'beckett-types-'));
  try {
    await mkdir(join(dir, 'node_modules'));
    await symlink(root, join(dir, 'node_modules', 'beckett'), 'dir');
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'user', type: 'module', private: true }),
    );
    await writeFile(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noUncheckedIndexedAccess: true,
          exactOptionalPropertyTypes: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [join(root, 'node_modules', '@types')],
        },
        files: ['spec.ts'],
      }),
    );
    await writeFile(
      join(dir, 'spec.ts'),
      `import type { Decider } from 'beckett';
import { createInMemoryStore, DeciderSpecification, type MessageStoreApi } from 'beckett/testing';

type Cmd = { type: 'open'; id: string };
const account: Decider<{ open: boolean }, Cmd> = {
  initialState: () => ({ open: false }),
  evolve: () => ({ open: true }),
  decide: (c, s) => (s.open ? [] : [{ type: 'opened', data: { id: c.id } }]),
};

export async function run(): Promise<number> {
  await DeciderSpecification.for(account).given([]).when({ type: 'open', id: 'a' }).then([{ type: 'opened', data: { id: 'a' } }]);
  await DeciderSpecification.for(account).given([{ type: 'opened', data: {} }]).when({ type: 'open', id: 'a' }).thenNothing();
  const store: MessageStoreApi = createInMemoryStore();
  const r = await store.append('account-a', { type: 'opened', data: {} }, { expectedVersion: 'no_stream' });
  // @ts-expect-error a command of the wrong shape does not type-check
  DeciderSpecification.for(account).when({ type: 'close' });
  // @ts-expect-error expected versions are typed
  await store.append('account-a', { type: 'x', data: {} }, { expectedVersion: 'latest' });
  return r.streamVersion;
}
`,
    );
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const result = await execa(process.execPath, [tsc, '-p', dir], { reject: false, cwd: dir });
    expect(result.stdout + result.stderr).toBe('');
    expect(result.exitCode).toBe(0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
