import { type Measurement, rate } from './stats.js';

export function fmtRate(perSecond: number): string {
  if (!Number.isFinite(perSecond)) return '-';
  return `${Math.round(perSecond)}/s`;
}

export function fmtMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '-';
  return ms < 10 ? `${ms.toFixed(2)}ms` : `${ms.toFixed(1)}ms`;
}

export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? r.toFixed(2) : '-';
}

/** Print an aligned plain-text table. */
export function printTable(title: string, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

/** A table of measurements: variant, messages, seconds, rate, p50, p99, ratio to `base`, note. */
export function printMeasurements(title: string, ms: Measurement[], base?: Measurement): void {
  printTable(
    title,
    ['variant', 'messages', 'seconds', 'rate', 'p50', 'p99', base ? `x ${base.label}` : 'ratio', 'note'],
    ms.map((m) => [
      m.label,
      String(m.messages),
      m.seconds.toFixed(2),
      fmtRate(rate(m)),
      fmtMs(m.latencies?.p50),
      fmtMs(m.latencies?.p99),
      base ? fmtRatio(rate(m) / rate(base)) : '',
      m.note ?? '',
    ]),
  );
}

/**
 * The machine-readable summary line of one variant, printed last by every scenario:
 * `<name> ratio=<ours/base> ours=<rate> <baseKey>=<rate> [extra...]`.
 */
export function ratioLine(
  name: string,
  ours: Measurement,
  base: Measurement,
  opts: { baseKey?: string; extra?: Record<string, string>; ratio?: number } = {},
): string {
  const parts = [
    name,
    `ratio=${fmtRatio(opts.ratio ?? rate(ours) / rate(base))}`,
    `ours=${fmtRate(rate(ours))}`,
    `${opts.baseKey ?? 'raw'}=${fmtRate(rate(base))}`,
  ];
  if (ours.latencies) parts.push(`p50=${fmtMs(ours.latencies.p50)}`, `p99=${fmtMs(ours.latencies.p99)}`);
  for (const [k, v] of Object.entries(opts.extra ?? {})) parts.push(`${k}=${v}`);
  return parts.join(' ');
}
