import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

interface HealthFlags {
  group?: string;
  maxLag?: string;
  staleAfter?: string;
  maxQueueAge?: string;
  json?: boolean;
}

export function registerHealth(program: Command): void {
  program
    .command('health')
    .description(
      'check subscription groups (live workers, no failed checkpoints, lag under a limit) and queues (no dead letters)',
    )
    .option('-g, --group <name>', 'only this group')
    .option('--max-lag <n>', 'a subscription lagging by more than N messages is unhealthy')
    .option('--stale-after <seconds>', 'a worker without a heartbeat for this long is not live', '30')
    .option(
      '--max-queue-age <seconds>',
      'a queue whose oldest ready job waited longer than this is unhealthy',
    )
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ es health
  $ es health --group Payments --max-lag 1000
  $ es health --json | jq '.groups[] | select(.healthy | not)'

Exit 0 when every group checked is healthy, 11 when one is not (no live worker heartbeat, failed
checkpoints, or lag above --max-lag) or a queue of the config is not (dead letters, or its oldest
ready job waited longer than --max-queue-age; with --group, the group's queues), 8 for an unknown group, 4 when the database is unreachable.
For a load balancer or Kubernetes probe of one worker process, use es worker --http-port instead.`,
    )
    .action(async (opts: HealthFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parseNonNegativeInt, parsePositiveInt } = await import('../parse.js');
      const maxLag = opts.maxLag === undefined ? undefined : parseNonNegativeInt(opts.maxLag, '--max-lag');
      const stale = parsePositiveInt(opts.staleAfter ?? '30', '--stale-after');
      const maxQueueAge =
        opts.maxQueueAge === undefined ? undefined : parseNonNegativeInt(opts.maxQueueAge, '--max-queue-age');
      const { withContext } = await import('../context.js');
      const { checkHealth } = await import('../../host/checkHealth.js');
      const { ExitCode } = await import('../../errors.js');
      const { setExitCode } = await import('../main.js');
      const { print, table } = await import('../output.js');
      await withContext(globals, { poolSize: 4, readsLog: true }, async (ctx) => {
        const result = await checkHealth(ctx.pool, ctx.store.sqlContext, {
          config: ctx.config,
          staleWorkerSeconds: stale,
          ...(opts.group ? { group: opts.group } : {}),
          ...(maxLag !== undefined ? { maxLag } : {}),
          ...(maxQueueAge !== undefined ? { maxQueueAgeSeconds: maxQueueAge } : {}),
        });
        if (opts.json) print(JSON.stringify(result));
        else if (result.groups.length === 0 && result.queues.length === 0)
          print('No subscription groups and no queues: nothing to check.');
        else {
          if (result.groups.length > 0)
            print(
              table(
                ['GROUP', 'HEALTH', 'WORKERS', 'LAG', 'FAILED', 'PROBLEMS'],
                result.groups.map((g) => [
                  g.name,
                  g.healthy ? 'healthy' : 'UNHEALTHY',
                  String(g.liveWorkers),
                  String(g.subscriptions.reduce((n, s) => n + s.lag, 0)),
                  String(g.subscriptions.reduce((n, s) => n + s.failed, 0)),
                  g.problems.join('; '),
                ]),
              ),
            );
          if (result.queues.length > 0)
            print(
              table(
                ['QUEUE', 'HEALTH', 'READY', 'IN FLIGHT', 'DEAD', 'READY FOR', 'PROBLEMS'],
                result.queues.map((q) => [
                  q.queue,
                  q.healthy ? 'healthy' : 'UNHEALTHY',
                  String(q.ready),
                  String(q.inFlight),
                  String(q.dead),
                  `${Math.round(q.readyAgeSeconds)}s`,
                  q.problems.join('; '),
                ]),
              ),
            );
          if (result.blocking) {
            const { describeBlocker } = await import('../../store/readLog.js');
            print(`warning: every reader is held back by ${describeBlocker(result.blocking)}`);
          }
        }
        if (!result.healthy) setExitCode(cmd, ExitCode.unhealthy);
      });
    });
}
