import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/validate.js';
import { ConfigError } from '../../src/errors.js';

const handler = () => undefined;

describe('handlerTimeout', () => {
  it('defaults to 30 s, takes a group default and a per-subscription value, in ms or as a duration', () => {
    const config = resolveConfig({
      groups: {
        A: { subscriptions: { plain: { handler } } },
        B: {
          handlerTimeout: '2m',
          subscriptions: { inherits: { handler }, own: { handler, handlerTimeout: 1500 } },
        },
      },
    });
    const timeout = (group: string, sub: string) =>
      config.groups.get(group)?.subscriptions.get(sub)?.handlerTimeoutMs;
    expect(timeout('A', 'plain')).toBe(30_000);
    expect(timeout('B', 'inherits')).toBe(120_000);
    expect(timeout('B', 'own')).toBe(1500);
  });

  it('names the key of a value that is not a timeout', () => {
    const bad = () =>
      resolveConfig({
        groups: {
          G: { handlerTimeout: 0, subscriptions: { s: { handler, handlerTimeout: 'soon' } } },
          H: { subscriptions: { t: { handler, handlerTimeout: '30d' } } },
        },
      });
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/groups\.G\.handlerTimeout: expected milliseconds or a duration/);
    expect(bad).toThrow(/groups\.G\.subscriptions\.s\.handlerTimeout: expected .* got "soon"/);
    expect(bad).toThrow(/groups\.H\.subscriptions\.t\.handlerTimeout: expected .* got "30d"/);
  });
});
