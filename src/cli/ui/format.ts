/** Short human durations: 0.4s, 12s, 3m05s, 2h10m, 3d04h. */
export function formatAge(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '-';
  if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)}s`;
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  const pad = (n: number) => String(n).padStart(2, '0');
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m${pad(Math.floor(seconds % 60))}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${pad(m % 60)}m`;
  return `${Math.floor(h / 24)}d${pad(h % 24)}h`;
}

export function formatRate(perSecond: number | null): string {
  if (perSecond === null) return '-';
  if (perSecond >= 100) return String(Math.round(perSecond));
  return perSecond.toFixed(1);
}

/** Cut a string to `width` characters, ending with an ellipsis when cut. */
export function truncate(text: string, width: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  if (width <= 0) return '';
  return flat.length <= width ? flat : `${flat.slice(0, Math.max(0, width - 1))}…`;
}
