import { Box, Text } from 'ink';
import type { GroupLag, LagSnapshot, SubscriptionLag } from '../../operations/lagSnapshot.js';
import type { QueueSummary } from '../../queues/queueOperations.js';
import { formatAge, formatRate, truncate } from './format.js';

/** What the view shows: a lag snapshot and, unless the view is of one group, the queues. */
export type LagViewSnapshot = LagSnapshot & { queues?: QueueSummary[] };

export interface LagViewProps {
  /** Undefined until the first snapshot arrives. */
  snapshot: LagViewSnapshot | undefined;
  /** Index of the selected subscription, counting across groups in display order. */
  selected: number;
  /** Columns to render in (the terminal's width): no line is longer, so nothing wraps. */
  width: number;
  /**
   * Rows to render in (the terminal's height). A frame taller than the terminal scrolls and leaves
   * stale copies behind: subscriptions that do not fit are left out around the selection.
   */
  height?: number | undefined;
  /** The outcome of the last key action, such as "retried 3 checkpoints". */
  notice?: string | undefined;
  /** The last refresh failed with this message (the view keeps the previous snapshot). */
  error?: string | undefined;
}

interface Column {
  title: string;
  width: number;
  /** Lower is dropped first when the terminal is too narrow. */
  keep: number;
  cell: (s: SubscriptionLag) => string;
}

const COLUMNS: Column[] = [
  { title: 'STATUS', width: 13, keep: 3, cell: (s) => s.status },
  { title: 'LAG', width: 9, keep: 6, cell: (s) => (s.undispatchedCapped ? `${s.lag}+` : String(s.lag)) },
  { title: 'OLDEST', width: 8, keep: 2, cell: (s) => formatAge(s.oldestUnprocessedAgeSeconds) },
  { title: 'MSG/S', width: 8, keep: 1, cell: (s) => formatRate(s.throughput) },
  { title: 'RETRY', width: 7, keep: 4, cell: (s) => String(s.retry) },
  { title: 'FAILED', width: 7, keep: 5, cell: (s) => String(s.failed) },
];
const MIN_NAME = 10;
/** The narrowest width the name and the LAG column fit in. */
export const MIN_WIDTH = 2 + MIN_NAME + 9;

/**
 * The columns that fit in `width`, dropped by priority (MSG/S, then OLDEST, STATUS, RETRY,
 * FAILED), and the name column's width: the rest of the line.
 */
export function layoutColumns(width: number): { columns: Column[]; nameWidth: number } {
  let columns = COLUMNS;
  const used = (cs: Column[]) => 2 + cs.reduce((n, c) => n + c.width, 0);
  while (columns.length > 1 && used(columns) + MIN_NAME > width) {
    const drop = columns.reduce((a, b) => (b.keep < a.keep ? b : a));
    columns = columns.filter((c) => c !== drop);
  }
  // The name takes what is left, but a very wide terminal does not push the numbers far away.
  return { columns, nameWidth: Math.max(MIN_NAME, Math.min(width - used(columns), 48)) };
}

interface QueueColumn {
  title: string;
  width: number;
  /** Lower is dropped first when the terminal is too narrow. */
  keep: number;
  cell: (q: QueueSummary) => string;
}

const QUEUE_COLUMNS: QueueColumn[] = [
  { title: 'READY', width: 9, keep: 6, cell: (q) => String(q.ready) },
  { title: 'IN FLIGHT', width: 10, keep: 5, cell: (q) => String(q.inFlight) },
  { title: 'DELAYED', width: 9, keep: 2, cell: (q) => String(q.delayed) },
  { title: 'DEAD', width: 7, keep: 4, cell: (q) => String(q.dead) },
  {
    title: 'OLDEST',
    width: 8,
    keep: 3,
    cell: (q) => (q.oldestAgeSeconds > 0 ? formatAge(q.oldestAgeSeconds) : '-'),
  },
  { title: 'DONE/MIN', width: 9, keep: 1, cell: (q) => formatRate(q.completedPerMinute) },
];

/** The queue columns that fit in `width` (DONE/MIN, then DELAYED, OLDEST, DEAD, IN FLIGHT go first). */
export function layoutQueueColumns(width: number): { columns: QueueColumn[]; nameWidth: number } {
  let columns = QUEUE_COLUMNS;
  const used = (cs: QueueColumn[]) => 2 + cs.reduce((n, c) => n + c.width, 0);
  while (columns.length > 1 && used(columns) + MIN_NAME > width) {
    const drop = columns.reduce((a, b) => (b.keep < a.keep ? b : a));
    columns = columns.filter((c) => c !== drop);
  }
  return { columns, nameWidth: Math.max(MIN_NAME, Math.min(width - used(columns), 48)) };
}

/** Lines the queue section takes: a blank, its title, the table header and one per queue. */
function queueLines(queues: QueueSummary[] | undefined): number {
  return queues && queues.length > 0 ? 3 + queues.length : 0;
}

/**
 * The queues under the groups: per queue, jobs ready, in flight, delayed, dead, the age of the
 * oldest job not done, and jobs completed per minute (5-minute average). Red when it has dead
 * letters, yellow when jobs are ready but the oldest has waited for a worker over 10 s.
 */
export function QueuesSection({ queues, width }: { queues: QueueSummary[]; width: number }) {
  const { columns, nameWidth } = layoutQueueColumns(width);
  return (
    <Box flexDirection="column" marginTop={1}>
      <Text bold color="cyan">
        {truncate('queues', width)}
      </Text>
      <Text dimColor>
        {cut(
          `  ${'QUEUE'.padEnd(nameWidth)}${columns.map((c) => c.title.padStart(c.width)).join('')}`,
          width,
        )}
      </Text>
      {queues.map((q) => {
        const color = q.dead > 0 ? 'red' : q.readyAgeSeconds > 10 ? 'yellow' : undefined;
        return (
          <Text key={q.queue} {...(color ? { color } : {})}>
            {cut(
              `  ${truncate(q.queue, nameWidth - 1).padEnd(nameWidth)}${columns.map((c) => c.cell(q).padStart(c.width)).join('')}`,
              width,
            )}
          </Text>
        );
      })}
    </Box>
  );
}

/** Subscriptions in display order: the order `selected` counts in. */
export function flattenSubscriptions(snapshot: LagSnapshot | undefined): SubscriptionLag[] {
  return snapshot ? snapshot.groups.flatMap((g) => g.subscriptions) : [];
}

function row(s: SubscriptionLag, nameWidth: number, columns: Column[]): string {
  return (
    truncate(s.name, nameWidth - 1).padEnd(nameWidth) +
    columns
      .map((c) =>
        c.title === 'STATUS' ? truncate(c.cell(s), c.width - 1).padEnd(c.width) : c.cell(s).padStart(c.width),
      )
      .join('')
  );
}

/**
 * Where the group's reader stands: "caught up" once no message of the log waits to be dispatched
 * to any of its subscriptions (a subscription's position moves only on messages it matches, so
 * "0/20012" would read as stuck), else how far it has read.
 */
export function readerText(g: GroupLag, head: number): string {
  if (g.readerPosition === null) return 'reader: -';
  const age = g.readerAgeSeconds === null ? '' : ` (${formatAge(g.readerAgeSeconds)} ago)`;
  const waiting = g.subscriptions.reduce((n, s) => n + s.undispatched, 0);
  return waiting === 0 ? `reader caught up${age}` : `reader at ${g.readerPosition} of ${head}${age}`;
}

/**
 * Which subscriptions to show in `rows` lines: all when they fit, else a window holding the
 * selection. Returns the indexes shown (across groups, as `selected` counts).
 */
export function visibleRange(total: number, selected: number, rows: number): { from: number; to: number } {
  if (rows >= total) return { from: 0, to: total };
  const n = Math.max(1, rows);
  const from = Math.min(Math.max(0, selected - Math.floor(n / 2)), total - n);
  return { from, to: from + n };
}

/**
 * The live lag view: per group, its workers and global reader; per subscription, lag, age of the
 * oldest unprocessed message, throughput, retry and failed checkpoints; a warning when a long-open
 * transaction holds readers back. Pure: everything it shows comes from props.
 */
export function LagView({ snapshot, selected, width, height, notice, error }: LagViewProps) {
  const { columns, nameWidth } = layoutColumns(width);
  const header = (
    <Text>
      <Text bold>{truncate('beckett lag', width)}</Text>
      {snapshot && width > 15 ? (
        <Text dimColor>
          {`  ${truncate(
            `schema ${snapshot.schema} · head ${snapshot.head} · readable ${snapshot.readable} · ${snapshot.takenAt.slice(11, 19)}Z`,
            width - 13,
          )}`}
        </Text>
      ) : null}
    </Text>
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
  const total = flattenSubscriptions(snapshot).length;
  // Lines besides subscription rows: title, keys, blocking, per group a blank, its line and the
  // table header, the notice (two lines), and one for "… more".
  const others =
    2 +
    (b ? 1 : 0) +
    (snapshot.groups.length === 0 ? 1 : 0) +
    snapshot.groups.length * 3 +
    (notice || error ? 2 : 0) +
    queueLines(snapshot.queues) +
    1;
  const shown = visibleRange(total, selected, height === undefined ? total : height - others);
  const hidden = total - (shown.to - shown.from);
  return (
    <Box flexDirection="column" width={width}>
      {header}
      <Text dimColor>
        {truncate('q quit · ↑/↓ select · r retry the selected subscription’s failed checkpoints', width)}
      </Text>
      {b ? (
        <Text color="yellow">
          {truncate(
            b.state === 'prepared'
              ? `⚠ prepared transaction open ${formatAge(b.ageSeconds)} holds readers back at ${snapshot.readable}: ${b.query}`
              : `⚠ transaction pid ${b.pid} (${b.applicationName ? `${b.applicationName}, ` : ''}${b.own ? "beckett's own" : 'foreign'}) open ${formatAge(b.ageSeconds)} holds readers back at ${snapshot.readable}: ${b.query}`,
            width,
          )}
        </Text>
      ) : null}
      {snapshot.groups.length === 0 && queueLines(snapshot.queues) === 0 ? (
        <Text dimColor>
          {truncate('No subscription groups yet: start one with es worker --group NAME.', width)}
        </Text>
      ) : null}
      {snapshot.groups.map((g) => (
        <Box key={g.name} flexDirection="column" marginTop={1}>
          <Text>{groupLine(g, snapshot.head, width)}</Text>
          {g.subscriptions.length === 0 ? (
            <Box paddingLeft={2}>
              <Text dimColor>(no subscriptions registered)</Text>
            </Box>
          ) : (
            <Text dimColor>
              {`  ${'SUBSCRIPTION'.padEnd(nameWidth)}${columns.map((c) => (c.title === 'STATUS' ? c.title.padEnd(c.width) : c.title.padStart(c.width))).join('')}`}
            </Text>
          )}
          {g.subscriptions.map((s) => {
            index += 1;
            if (index < shown.from || index >= shown.to) return null;
            const isSelected = index === selected;
            const color = s.failed > 0 ? 'red' : s.retry > 0 ? 'yellow' : undefined;
            return (
              <Text key={s.name} inverse={isSelected} {...(color ? { color } : {})}>
                {`${isSelected ? '›' : ' '} ${row(s, nameWidth, columns)}`}
              </Text>
            );
          })}
        </Box>
      ))}
      {snapshot.queues && snapshot.queues.length > 0 ? (
        <QueuesSection queues={snapshot.queues} width={width} />
      ) : null}
      {hidden > 0 ? (
        <Text dimColor>
          {truncate(`  … ${hidden} more subscription${hidden === 1 ? '' : 's'} (↑/↓ to scroll)`, width)}
        </Text>
      ) : null}
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

/** `text` cut to `width` characters (leading spaces kept), ending with an ellipsis when cut. */
function cut(text: string, width: number): string {
  if (width <= 0) return '';
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}

/** A group's line, cut to `width`: its name, live workers and reader (the name gives way first). */
function groupLine(g: GroupLag, head: number, width: number) {
  const workers = `  ${g.liveWorkers} live worker${g.liveWorkers === 1 ? '' : 's'}`;
  const reader = `  ${readerText(g, head)}`;
  const name = truncate(g.name, Math.max(6, width - workers.length - reader.length));
  const workersShown = cut(workers, width - name.length);
  return (
    <>
      <Text bold color="cyan">
        {name}
      </Text>
      <Text color={g.liveWorkers === 0 ? 'red' : 'green'}>{workersShown}</Text>
      <Text dimColor>{cut(reader, width - name.length - workersShown.length)}</Text>
    </>
  );
}
