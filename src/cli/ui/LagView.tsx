import { Box, Text } from 'ink';
import type { LagSnapshot, SubscriptionLag } from '../../operations/lagSnapshot.js';
import { formatAge, formatRate, truncate } from './format.js';

export interface LagViewProps {
  /** Undefined until the first snapshot arrives. */
  snapshot: LagSnapshot | undefined;
  /** Index of the selected subscription, counting across groups in display order. */
  selected: number;
  /** Columns to render in (the terminal's width). */
  width: number;
  /** The outcome of the last key action, such as "retried 3 checkpoints". */
  notice?: string | undefined;
  /** The last refresh failed with this message (the view keeps the previous snapshot). */
  error?: string | undefined;
}

const COLUMNS = [
  { title: 'STATUS', width: 13 },
  { title: 'LAG', width: 9 },
  { title: 'OLDEST', width: 8 },
  { title: 'MSG/S', width: 8 },
  { title: 'RETRY', width: 7 },
  { title: 'FAILED', width: 7 },
] as const;
const FIXED = 2 + COLUMNS.reduce((n, c) => n + c.width, 0);
const MIN_NAME = 14;
/** The narrowest width the table fits in. */
export const MIN_WIDTH = FIXED + MIN_NAME;

/** Subscriptions in display order: the order `selected` counts in. */
export function flattenSubscriptions(snapshot: LagSnapshot | undefined): SubscriptionLag[] {
  return snapshot ? snapshot.groups.flatMap((g) => g.subscriptions) : [];
}

function lagText(s: SubscriptionLag): string {
  return s.undispatchedCapped ? `${s.lag}+` : String(s.lag);
}

function row(s: SubscriptionLag, nameWidth: number): string {
  const cells = [
    s.status,
    lagText(s),
    formatAge(s.oldestUnprocessedAgeSeconds),
    formatRate(s.throughput),
    String(s.retry),
    String(s.failed),
  ];
  return (
    truncate(s.name, nameWidth - 1).padEnd(nameWidth) +
    cells
      .map((c, i) => (i === 0 ? c.padEnd(COLUMNS[i]?.width ?? 0) : c.padStart(COLUMNS[i]?.width ?? 0)))
      .join('')
  );
}

/**
 * The live lag view: per group, its workers and global reader; per subscription, lag, age of the
 * oldest unprocessed message, throughput, retry and failed checkpoints; a warning when a long-open
 * transaction holds readers back. Pure: everything it shows comes from props.
 */
export function LagView({ snapshot, selected, width, notice, error }: LagViewProps) {
  const nameWidth = Math.max(MIN_NAME, width - FIXED);
  const header = (
    <Box gap={2}>
      <Text bold>beckett lag</Text>
      {snapshot ? (
        <Text dimColor>
          {truncate(
            `schema ${snapshot.schema} · head ${snapshot.head} · readable ${snapshot.readable} · ${snapshot.takenAt.slice(11, 19)}Z`,
            width - 13,
          )}
        </Text>
      ) : null}
    </Box>
  );
  if (!snapshot) {
    return (
      <Box flexDirection="column" width={width}>
        {header}
        <Text dimColor>{error ? truncate(`error: ${error}`, width) : 'loading…'}</Text>
      </Box>
    );
  }
  let index = -1;
  const b = snapshot.blocking;
  return (
    <Box flexDirection="column" width={width}>
      {header}
      <Text dimColor>
        {truncate('q quit · ↑/↓ select · r retry the selected subscription’s failed checkpoints', width)}
      </Text>
      {b ? (
        <Text color="yellow">
          {truncate(
            `⚠ transaction pid ${b.pid}${b.applicationName ? ` (${b.applicationName})` : ''} open ${formatAge(b.ageSeconds)} holds every reader back at ${snapshot.readable}: ${b.query}`,
            width,
          )}
        </Text>
      ) : null}
      {snapshot.groups.length === 0 ? (
        <Text dimColor>
          {truncate('No subscription groups yet: start one with es worker --group NAME.', width)}
        </Text>
      ) : null}
      {snapshot.groups.map((g) => (
        <Box key={g.name} flexDirection="column" marginTop={1}>
          <Text>
            <Text bold color="cyan">
              {truncate(g.name, Math.max(8, width - 50))}
            </Text>
            <Text color={g.liveWorkers === 0 ? 'red' : 'green'}>
              {`  ${g.liveWorkers} live worker${g.liveWorkers === 1 ? '' : 's'}`}
            </Text>
            <Text dimColor>
              {g.readerPosition === null
                ? '  reader: -'
                : `  reader ${g.readerPosition}/${snapshot.head}${g.readerAgeSeconds === null ? '' : ` (${formatAge(g.readerAgeSeconds)} ago)`}`}
            </Text>
          </Text>
          {g.subscriptions.length === 0 ? (
            <Box paddingLeft={2}>
              <Text dimColor>(no subscriptions registered)</Text>
            </Box>
          ) : (
            <Text dimColor>
              {`  ${'SUBSCRIPTION'.padEnd(nameWidth)}${COLUMNS.map((c, i) => (i === 0 ? c.title.padEnd(c.width) : c.title.padStart(c.width))).join('')}`}
            </Text>
          )}
          {g.subscriptions.map((s) => {
            index += 1;
            const isSelected = index === selected;
            const color = s.failed > 0 ? 'red' : s.retry > 0 ? 'yellow' : undefined;
            return (
              <Text key={s.name} inverse={isSelected} {...(color ? { color } : {})}>
                {`${isSelected ? '›' : ' '} ${row(s, nameWidth)}`}
              </Text>
            );
          })}
        </Box>
      ))}
      {notice || error ? (
        <Box marginTop={1}>
          {error ? (
            <Text color="red">{truncate(`error: ${error}`, width)}</Text>
          ) : (
            <Text>{truncate(notice ?? '', width)}</Text>
          )}
        </Box>
      ) : null}
    </Box>
  );
}
