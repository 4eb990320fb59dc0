import { BeckettError } from '../errors.js';

/** Whose handler a call is: a subscription's, or a queue's. */
export type HandlerOwner = 'subscription' | 'queue';

/**
 * A handler call that outlived its handlerTimeout: a failed attempt (a subscription retries it; a
 * queue nacks the delivery, which counts towards maxDeliveries).
 */
export class HandlerTimeoutError extends BeckettError {
  constructor(name: string, timeoutMs: number, owner: HandlerOwner = 'subscription') {
    super('HANDLER_TIMEOUT', `The handler of ${owner} "${name}" did not finish within ${timeoutMs} ms.`, {
      hint:
        owner === 'queue'
          ? `Make the handler finish sooner (ctx.signal is aborted at the timeout), or raise queues.${name}.handlerTimeout in the config.`
          : `Make the handler finish sooner (ctx.signal is aborted at the timeout), or raise handlerTimeout on subscription "${name}" or its group.`,
    });
  }
}

/** A handler call still running when the worker's drain timeout passed: left behind, not a failure. */
export class HandlerAbandonedError extends BeckettError {
  constructor(name: string, owner: HandlerOwner = 'subscription') {
    super(
      'HANDLER_ABANDONED',
      `The handler of ${owner} "${name}" was still running when the drain timeout passed.`,
      {
        hint: 'Handlers should return soon after ctx.signal aborts; the worker stopped without waiting further.',
      },
    );
  }
}

/** True for the errors with which boundHandlerCall gives up on a call that has not returned. */
export const isAbandoned = (err: unknown): boolean =>
  err instanceof HandlerTimeoutError || err instanceof HandlerAbandonedError;

/**
 * Call a handler and wait for it at most `timeoutMs`, and no longer than until `force` aborts (the
 * worker's drain timeout). On either, `attempt` is aborted with the reason (the handler's signal)
 * and the call rejects with it; the handler itself cannot be stopped, so whatever it returns or
 * throws later is ignored: the caller has moved on and writes nothing for it.
 */
export function boundHandlerCall(
  call: () => unknown,
  opts: {
    /** The subscription's (or queue's) name, for the errors. */
    subscription: string;
    owner?: HandlerOwner;
    timeoutMs: number;
    /** Aborted with the reason on a timeout or a forced stop (the handler's signal). */
    attempt: { abort(reason?: unknown): void };
    force: AbortSignal | undefined;
  },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (err?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.force?.removeEventListener('abort', onForce);
      if (err === undefined) resolve();
      else reject(err);
    };
    const giveUp = (reason: Error) => {
      if (settled) return;
      opts.attempt.abort(reason);
      settle(reason);
    };
    const onForce = () => giveUp(new HandlerAbandonedError(opts.subscription, opts.owner));
    // Armed before the call: a handler that blocks synchronously is timed from its start.
    const timer = setTimeout(
      () => giveUp(new HandlerTimeoutError(opts.subscription, opts.timeoutMs, opts.owner)),
      opts.timeoutMs,
    );
    if (opts.force?.aborted) return onForce();
    opts.force?.addEventListener('abort', onForce, { once: true });
    (async () => {
      await call();
    })().then(
      () => settle(),
      (err) => settle(err ?? new Error('handler rejected without a reason')),
    );
  });
}
