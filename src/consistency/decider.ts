import type { NewMessage, RecordedMessage } from '../store/types.js';
import type { Query } from './query.js';

/** A message a decider emits; `stream` says where it goes (needed for several streams or a query). */
export type DecidedMessage = NewMessage & { stream?: string };

/** When and how to snapshot a decider's state. */
export interface SnapshotPolicy<State> {
  /** Save a snapshot once at least this many messages were folded since the last one. */
  every: number;
  /**
   * Schema version of the state. Bump it when the state's shape or evolve() changes: snapshots
   * of another version are ignored and the state is rebuilt from the messages.
   */
  stateVersion: number;
  /** State -> JSON (default: the state as is). */
  serialize?: (state: State) => unknown;
  /** JSON -> state (default: the JSON as is). */
  deserialize?: (json: unknown) => State;
}

/**
 * A decider: the state it needs is built by folding messages with `evolve` from `initialState`;
 * `decide` turns a command and that state into new messages (or throws a domain error).
 */
export interface Decider<State, Command> {
  /** Names the decider in snapshot keys (required with `snapshots`). */
  name?: string;
  initialState(): State;
  evolve(state: State, message: RecordedMessage): State;
  decide(command: Command, state: State): DecidedMessage[] | Promise<DecidedMessage[]>;
  snapshots?: SnapshotPolicy<State>;
}

/**
 * Where the decider's state comes from, and what guards the decision:
 * - `{ stream }`: one stream; appended with its version as expected version;
 * - `{ streams }`: several streams folded in log order; appended atomically, each written stream
 *   with its version as expected version (streams only read are not checked);
 * - `{ query }`: the messages matching a query (DCB); appended with the condition "no message
 *   matching the query after the position read".
 */
export type Boundary = { stream: string } | { streams: string[] } | { query: Query };
