import type { Command } from 'commander';
import type { GlobalOptions } from '../context.js';

interface HealthFlags {
  group?: string;
  maxLag?: string;
  staleAfter?: string;
  json?: boolean;
}

export function registerHealth(program: Command): void {
  program
    .command('health')
    .description('check subscription groups: live workers, no failed checkpoints, lag under a limit')
    .option('-g, --group <name>', 'only this group')
    .option('--max-lag <n>', 'a subscription lagging by more than N messages is unhealthy')
    .option('--stale-after <seconds>', 'a worker without a heartbeat for this long is not live', '30')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ es health
  $ es health --group Payments --max-lag 1000
  $ es health --json | jq '.groups[] | select(.healthy | not)'

Exit 0 when every group checked is healthy, 11 when one is not (no live worker heartbeat, failed
checkpoints, or lag above --max-lag), 8 for an unknown group, 4 when the database is unreachable.
For a load balancer or Kubernetes probe of one worker process, use es worker --http-port instead.`,
    )
    .action(async (opts: HealthFlags, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const { parseNonNegativeInt, parsePositiveInt } = await import('../parse.js');
      const maxLag = opts.maxLag === undefined ? undefined : parseNonNegativeInt(opts.maxLag, '--max-lag');
      const stale = parsePositiveInt(opts.staleAfter ?? '30', '--stale-after');
      const { withContext } = await import('../context.js');
      const { checkHealth } = await import('../../telemetry/checkHealth.js');
      const { ExitCode } = await import('../../errors.js');
      const { setExitCode } = await import('../main.js');
      const { print, table } = await import('../output.js');
      await withContext(globals, { poolSize: 4 }, async (ctx) => {
        const result = await checkHealth(ctx.pool, ctx.store.sqlContext, {
          config: ctx.config,
          staleWorkerSeconds: stale,
          ...(opts.group ? { group: opts.group } : {}),
          ...(maxLag !== undefined ? { maxLag } : {}),
        });
        if (opts.json) print(JSON.stringify(result));
        else if (result.groups.length === 0) print('No subscription groups: nothing to check.');
        else {
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
          if (result.blocking)
            print(
              `warning: a transaction open for ${Math.round(result.blocking.ageSeconds)} s (pid ${result.blocking.pid}) holds every reader back.`,
            );
        }
        if (!result.healthy) setExitCode(cmd, ExitCode.unhealthy);
      });
    });
}
