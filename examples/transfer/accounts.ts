import type { Decider } from '../../src/index.js';

/*
 * Money transfer between two account streams: the debit and the credit commit atomically
 * (one multi-stream append with both streams' expected versions), or not at all.
 */

export const accountStream = (accountId: string) => `account-${accountId}`;

export class AccountRuleError extends Error {
  constructor(
    readonly rule: 'account_exists' | 'account_not_found' | 'insufficient_funds' | 'invalid_amount',
    message: string,
  ) {
    super(message);
    this.name = 'AccountRuleError';
  }
}

export interface AccountState {
  open: boolean;
  balance: number;
}

function applyToAccount(state: AccountState, type: string, data: unknown): AccountState {
  const d = data as { amount?: number; initialBalance?: number };
  if (type === 'account_opened') return { open: true, balance: d.initialBalance ?? 0 };
  if (type === 'deposited' || type === 'credited')
    return { ...state, balance: state.balance + (d.amount ?? 0) };
  if (type === 'debited') return { ...state, balance: state.balance - (d.amount ?? 0) };
  return state;
}

export type AccountCommand =
  | { type: 'open'; accountId: string; initialBalance: number }
  | { type: 'deposit'; accountId: string; amount: number };

/** One account on its own stream (snapshotted every 20 messages). */
export const account: Decider<AccountState, AccountCommand> = {
  name: 'account',
  initialState: () => ({ open: false, balance: 0 }),
  evolve: (state, m) => applyToAccount(state, m.type, m.data),
  decide(cmd, state) {
    if (cmd.type === 'open') {
      if (state.open)
        throw new AccountRuleError('account_exists', `Account ${cmd.accountId} is already open.`);
      return [
        { type: 'account_opened', data: { accountId: cmd.accountId, initialBalance: cmd.initialBalance } },
      ];
    }
    if (!state.open) throw new AccountRuleError('account_not_found', `Account ${cmd.accountId} is not open.`);
    if (!(cmd.amount > 0)) throw new AccountRuleError('invalid_amount', 'Deposit a positive amount.');
    return [{ type: 'deposited', data: { amount: cmd.amount } }];
  },
  snapshots: { every: 20, stateVersion: 1 },
};

export interface Transfer {
  transferId: string;
  from: string;
  to: string;
  amount: number;
}

/** Both accounts' states, keyed by stream. */
export type TransferState = Record<string, AccountState>;

/** Debit one account and credit the other: boundary { streams: [from, to] }. */
export const transfer: Decider<TransferState, Transfer> = {
  initialState: () => ({}),
  evolve: (state, m) => ({
    ...state,
    [m.streamName]: applyToAccount(state[m.streamName] ?? { open: false, balance: 0 }, m.type, m.data),
  }),
  decide(cmd, state) {
    const from = state[accountStream(cmd.from)];
    const to = state[accountStream(cmd.to)];
    if (!(cmd.amount > 0)) throw new AccountRuleError('invalid_amount', 'Transfer a positive amount.');
    if (!from?.open) throw new AccountRuleError('account_not_found', `Account ${cmd.from} is not open.`);
    if (!to?.open) throw new AccountRuleError('account_not_found', `Account ${cmd.to} is not open.`);
    if (from.balance < cmd.amount)
      throw new AccountRuleError(
        'insufficient_funds',
        `Account ${cmd.from} has ${from.balance}, not enough to transfer ${cmd.amount}.`,
      );
    return [
      {
        stream: accountStream(cmd.from),
        type: 'debited',
        data: { transferId: cmd.transferId, amount: cmd.amount },
      },
      {
        stream: accountStream(cmd.to),
        type: 'credited',
        data: { transferId: cmd.transferId, amount: cmd.amount },
      },
    ];
  },
};

/** The boundary of a transfer: both account streams. */
export const transferBoundary = (cmd: Transfer) => ({
  streams: [accountStream(cmd.from), accountStream(cmd.to)],
});
