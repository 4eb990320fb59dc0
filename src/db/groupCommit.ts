/*
 * Group commit on the client: jobs that arrive while earlier ones are in flight wait for one of
 * them to finish and then run together (one statement, one transaction, one WAL flush for all).
 * Nothing waits on a timer: a job that finds fewer than `maxInFlight` batches running starts at
 * once, alone, so a lone caller's latency is unchanged; busy callers fill the batches. A batch that
 * fails (nothing of it written) is rerun one job at a time, so each job gets its own outcome.
 */

export interface GroupCommitOptions<J> {
  /** Run one job and settle it (resolve or reject it); never rejects itself. */
  one: (job: J) => Promise<void>;
  /** Run several jobs as one statement and settle them all; reject only when it wrote nothing. */
  many: (batch: J[]) => Promise<void>;
  /** Batches running at once; the rest queue into the next ones. */
  maxInFlight: number;
  /** Jobs per batch. */
  maxBatch: number;
  /** Whether `job` may join `batch` (default: any job may); a job that may not waits for another. */
  fits?: (batch: readonly J[], job: J) => boolean;
}

export class GroupCommit<J> {
  readonly #opts: GroupCommitOptions<J>;
  #queue: J[] = [];
  #inFlight = 0;

  constructor(opts: GroupCommitOptions<J>) {
    this.#opts = opts;
  }

  push(job: J): void {
    this.#queue.push(job);
    this.#pump();
  }

  #pump(): void {
    while (this.#inFlight < this.#opts.maxInFlight && this.#queue.length > 0) {
      const batch = this.#take();
      this.#inFlight++;
      void this.#run(batch).finally(() => {
        this.#inFlight--;
        this.#pump();
      });
    }
  }

  async #run(batch: J[]): Promise<void> {
    const { one, many } = this.#opts;
    if (batch.length === 1) return one(batch[0]!);
    try {
      await many(batch);
    } catch {
      await Promise.all(batch.map(one));
    }
  }

  /** The oldest job and, in order, the queued jobs that fit with it. */
  #take(): J[] {
    const { fits, maxBatch } = this.#opts;
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
