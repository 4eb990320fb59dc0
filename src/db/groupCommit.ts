import { StoreClosedError } from '../errors.js';
import { isStatementError } from './sqlstate.js';

/*
 * Group commit on the client: jobs that arrive while earlier ones are in flight wait for one of
 * them to finish and then run together (one statement, one transaction, one WAL flush for all).
 * Nothing waits on a timer: a job that finds fewer than `maxInFlight` batches running starts at
 * once, so a lone caller's latency is unchanged; busy callers fill the batches. With `fillTurn`
 * (the append batchers), a batch that would start while another is running (in a free slot, or in
 * the slot a batch just freed) starts one event-loop turn later (setImmediate) and takes every job
 * queued in the current turn: the callers a committed batch released queue their next jobs in the
 * microtasks after it, and without the turn the first of them would take the free slot alone and
 * the others would wait behind it (16 writers, bench/append.cpu: 0.23 statements per append
 * without the turn, 0.16 with it). With `evenShares` (both append batchers), a batch takes at
 * most its share of the work, (jobs queued + jobs in running batches) / maxInFlight, so the
 * batches in flight stay about the same size and the server runs them side by side on as many
 * backends. Without it, 16 writers settled into one batch of about 15 and one of 1 (the callers
 * of each batch come back together and refill it): one backend did nearly all the work while the
 * other slot turned over a single append (10 conditional writers: batches of 9 and of 1, 0.30
 * statements per append; 5 and 5 with it, 0.20, and 9 of 10 interleaved rounds faster, bench/README
 * session 18). A batch the server refused (a statement error: nothing of it
 * written) is rerun one job at a time, so each job gets its own outcome. A batch whose connection
 * was lost is never rerun: its COMMIT may have succeeded with only the reply lost, and a rerun
 * would collide with its own rows; each of its jobs gets `lost()` instead.
 */

export interface GroupCommitOptions<J> {
  /** Run one job and settle it (resolve or reject it); never rejects itself. */
  one: (job: J) => Promise<void>;
  /** Run several jobs as one statement and settle them all, or reject (with pg's error). */
  many: (batch: J[]) => Promise<void>;
  /** Settle a job of a batch whose outcome is unknown (`err`: not a statement error). */
  lost: (job: J, err: unknown) => void;
  /** Batches running at once; the rest queue into the next ones. */
  maxInFlight: number;
  /** Jobs per batch. */
  maxBatch: number;
  /**
   * Start a batch while another is running only after one event-loop turn (see above), so that it
   * takes every job queued in the current turn. Default false: such a batch starts at once.
   */
  fillTurn?: boolean;
  /**
   * Cap each batch at its share of the jobs queued and running (see above). Default false: a batch
   * takes up to `maxBatch` jobs.
   */
  evenShares?: boolean;
  /** Whether `job` may join `batch` (default: any job may); a job that may not waits for another. */
  fits?: (batch: readonly J[], job: J) => boolean;
}

export class GroupCommit<J> {
  readonly #opts: GroupCommitOptions<J>;
  #queue: J[] = [];
  #inFlight = 0;
  /** Jobs in the batches running now. */
  #inFlightJobs = 0;
  #closed = false;
  #idle: (() => void)[] = [];
  /** A pump deferred to the next event-loop turn is pending. */
  #deferred = false;

  constructor(opts: GroupCommitOptions<J>) {
    this.#opts = opts;
  }

  /** Queue `job`; throws StoreClosedError after close(). */
  push(job: J): void {
    if (this.#closed) throw new StoreClosedError();
    this.#queue.push(job);
    this.#pump();
  }

  /**
   * Run a lone job directly when nothing is running or queued: `run` is the job's `one` without the
   * queue around it (no promise of its own to settle, no batch array). It counts as a batch in
   * flight, so jobs pushed meanwhile queue and batch as ever. Undefined (nothing run) when another
   * job is running or queued: push it then. Throws StoreClosedError after close().
   */
  runAlone<T>(run: () => Promise<T>): Promise<T> | undefined {
    if (this.#closed) throw new StoreClosedError();
    if (this.#inFlight > 0 || this.#queue.length > 0) return undefined;
    return this.#hold(1, run);
  }

  /** Run `start` as a batch in flight of `jobs` jobs; its slot is given back once it settles. */
  #hold<T>(jobs: number, start: () => Promise<T>): Promise<T> {
    this.#inFlight++;
    this.#inFlightJobs += jobs;
    let running: Promise<T>;
    try {
      running = start();
    } catch (err) {
      running = Promise.reject(err);
    }
    return running.finally(() => {
      this.#inFlight--;
      this.#inFlightJobs -= jobs;
      this.#pump();
    });
  }

  /** Take no more jobs; resolves once every job taken is settled. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    if (this.#queue.length === 0 && this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #pump(): void {
    if (
      this.#opts.fillTurn &&
      this.#inFlight > 0 &&
      this.#inFlight < this.#opts.maxInFlight &&
      this.#queue.length > 0
    ) {
      if (!this.#deferred) {
        this.#deferred = true;
        setImmediate(() => {
          this.#deferred = false;
          this.#start();
        });
      }
      return;
    }
    this.#start();
  }

  #start(): void {
    while (this.#inFlight < this.#opts.maxInFlight && this.#queue.length > 0) {
      const batch = this.#take();
      void this.#hold(batch.length, () => this.#run(batch));
    }
    if (this.#inFlight === 0 && this.#queue.length === 0) for (const idle of this.#idle.splice(0)) idle();
  }

  async #run(batch: J[]): Promise<void> {
    const { one, many } = this.#opts;
    if (batch.length === 1) return one(batch[0]!);
    try {
      await many(batch);
    } catch (err) {
      if (isStatementError(err)) await Promise.all(batch.map(one));
      else for (const job of batch) this.#opts.lost(job, err);
    }
  }

  /** The oldest job and, in order, the queued jobs that fit with it, up to the batch's size. */
  #take(): J[] {
    const { fits, maxInFlight, evenShares } = this.#opts;
    const maxBatch = evenShares
      ? Math.min(this.#opts.maxBatch, Math.ceil((this.#queue.length + this.#inFlightJobs) / maxInFlight))
      : this.#opts.maxBatch;
    if (!fits) return this.#queue.splice(0, maxBatch);
    const batch = [this.#queue[0]!];
    const rest: J[] = [];
    for (let i = 1; i < this.#queue.length; i++) {
      const job = this.#queue[i]!;
      if (batch.length < maxBatch && fits(batch, job)) batch.push(job);
      else rest.push(job);
    }
    this.#queue = rest;
    return batch;
  }
}
