import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

interface DemoFlags {
  orders?: string;
  timeout?: string;
}

const GROUP = 'InventoryAllocation';
const PRODUCTS = ['p1', 'p2', 'p3'];

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('see it work: append orders and run the inventory-allocation worker, no config needed')
    .option('--orders <n>', 'orders to create (two items each)', '3')
    .option('--timeout <ms>', 'give up when allocations take longer than this', '30000')
    .addHelpText(
      'after',
      `
Examples:
  $ es demo                         embedded database, schema beckett
  $ es demo --schema shop --orders 10

It migrates the schema, appends order_item_added messages to orders-<n> streams (the category
orders), runs the InventoryAllocation group of the shipped example (beckett.config.example.ts) in
this process until every item is allocated (inventory_allocated in inventory-<product>), prints
what happened and stops the worker cleanly. Then, in the same folder:
  $ npx es tail orders --from 0 --exit-at-end   the demo's orders
  $ npx es worker --group InventoryAllocation   the same group (without a beckett.config.ts, es
                                                worker uses beckett.config.example.ts beside it)
  $ npx es lag

The schema is the one every other command uses (the config's, default beckett), except in a
project with a config of its own, where the demo keeps to beckett_demo.`,
    )
    .action(async (opts: DemoFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parsePositiveInt } = await import('../parse.js');
      const orders = parsePositiveInt(opts.orders ?? '3', '--orders');
      const timeoutMs = parsePositiveInt(opts.timeout ?? '30000', '--timeout');
      const { fileURLToPath } = await import('node:url');
      const { loadConfig } = await import('../../config/load.js');
      const { withContext, maskUrl } = await import('../context.js');
      const { migrate } = await import('../../db/migrate.js');
      const { createWorker } = await import('../../subscriptions/workerRuntime.js');
      const { createMessageStore } = await import('../../store/messageStore.js');
      const { BeckettError, ExitCode } = await import('../../errors.js');
      const { print } = await import('../output.js');
      // dist/cli/commands/demo.js (or src/...) -> the package root.
      const examplePath = fileURLToPath(new URL('../../../beckett.config.example.ts', import.meta.url));
      const example = await loadConfig({ path: examplePath });
      // Where `es tail orders`, `es worker`, `es lag` look without flags: the config's schema, unless
      // the folder has a config of its own (the demo's orders stay out of the application's schema).
      const { basename } = await import('node:path');
      const { EXAMPLE_CONFIG } = await import('../../config/load.js');
      const here = await loadConfig(globals.config ? { path: globals.config } : {});
      const ownConfig = here.path !== undefined && basename(here.path) !== EXAMPLE_CONFIG;
      const schema = globals.schema ?? (ownConfig ? 'beckett_demo' : here.database.schema);
      await withContext({ ...globals, schema }, { poolSize: 12 }, async (ctx) => {
        print(
          `Database ${ctx.source === 'embedded' ? '(embedded) ' : ''}${maskUrl(ctx.url)}, schema ${schema}`,
        );
        const m = await migrate(ctx.pool, schema);
        print(`Migrated: ${m.applied.length} applied, ${m.alreadyApplied} already there.`);
        const store = createMessageStore({ pool: ctx.pool, schema, messages: example.messages });

        const run = Date.now().toString(36);
        const appended: { id: string; stream: string; productId: string; quantity: number }[] = [];
        for (let n = 1; n <= orders; n++) {
          const orderId = `${run}${n}`;
          const stream = `orders-${orderId}`;
          const items = [0, 1].map((i) => ({
            productId: PRODUCTS[(n + i) % PRODUCTS.length]!,
            quantity: ((n + i) % 3) + 1,
          }));
          const messages = items.map((it) => ({
            type: 'order_item_added',
            data: { orderId, productId: it.productId, quantity: it.quantity },
            id: crypto.randomUUID(),
          }));
          const r = await store.append(stream, messages);
          for (const [i, msg] of messages.entries()) {
            appended.push({ id: msg.id, stream, ...items[i]! });
            print(
              `appended order_item_added  ${stream}@${r.streamVersion - messages.length + i + 1}  ${items[i]!.productId} x ${items[i]!.quantity}`,
            );
          }
        }

        const worker = createWorker({
          pool: ctx.pool,
          config: example,
          schema,
          group: GROUP,
          maxPollMs: 200,
        });
        const started = Date.now();
        await worker.start();
        print(`Worker ${worker.id} running group ${GROUP}...`);
        const wanted = new Set(appended.map((a) => a.id));
        const found = new Map<string, string>();
        try {
          while (found.size < wanted.size) {
            if (Date.now() - started > timeoutMs) {
              throw new BeckettError(
                'DEMO_TIMEOUT',
                `Only ${found.size} of ${wanted.size} items were allocated within ${timeoutMs} ms.`,
                {
                  exitCode: ExitCode.unexpected,
                  hint: 'A long-open transaction on the server holds gap-safe readers back: check es lag.',
                },
              );
            }
            await new Promise((r) => setTimeout(r, 50));
            const fresh = [];
            for (const product of PRODUCTS) {
              for (const msg of await store.readStream(`inventory-${product}`, { limit: 10_000 })) {
                const cause = msg.metadata.causationId;
                if (typeof cause === 'string' && wanted.has(cause) && !found.has(cause)) {
                  found.set(cause, `${msg.streamName}@${msg.streamPosition}`);
                  fresh.push(msg);
                }
              }
            }
            for (const msg of fresh.sort((a, b) => a.globalPosition - b.globalPosition)) {
              const d = msg.data as { orderId: string; quantity: number };
              print(
                `allocated inventory_allocated  ${msg.streamName}@${msg.streamPosition} (global ${msg.globalPosition})  order ${d.orderId} x ${d.quantity}`,
              );
            }
          }
        } finally {
          await worker.stop();
          await store.close();
        }
        print(`Done: ${found.size} items allocated in ${Date.now() - started} ms; worker stopped.`);
        const flag = schema === here.database.schema ? '' : ` --schema ${schema}`;
        print(
          [
            'Next, try:',
            `  npx es tail orders --from 0 --exit-at-end${flag}   the orders above`,
            `  npx es read inventory-p1${flag}                     one product's allocations`,
            `  npx es worker --group InventoryAllocation${flag}   run the group yourself (Ctrl-C stops)`,
            `  npx es lag${flag}                                   live lag of the group`,
          ].join('\n'),
        );
      });
    });
}
