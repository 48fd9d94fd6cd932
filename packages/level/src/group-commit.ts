/**
 * Group commit: every add() made in one tick joins one batch, written by ONE call to
 * `commit`. The first add of a tick schedules the flush with setImmediate (after the rest
 * of the tick has queued its ops); while a batch is being written, new adds accumulate
 * into the next batch, which is written as soon as the current one completes. Batches
 * never overlap, so they are applied in call order; if one fails, the batches queued behind it
 * fail too without being written (see Store.write in core).
 *
 * exclusive() runs a task (quarantine, dropCollection) in the same sequence: after every
 * batch added before it, alone, and before any batch added after it — so a task that reads
 * records and then rewrites them sees no batch land in between.
 */
export interface GroupCommitStats {
  /** Batches committed successfully. */
  batches: number
  /** Units (StoreOps) carried by those batches. */
  ops: number
}

interface Batch<Op> {
  kind: 'batch'
  ops: Op[]
  units: number
  done: Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
}

interface Task {
  kind: 'task'
  /** Runs the task and settles its caller's promise; never rejects. */
  run: () => Promise<void>
}

export class GroupCommit<Op> {
  readonly stats: GroupCommitStats = { batches: 0, ops: 0 }
  /** Batches and tasks waiting, in call order. */
  private readonly queue: (Batch<Op> | Task)[] = []
  /** The batch at the queue's tail that adds still join (none once a task is queued behind it). */
  private next: Batch<Op> | undefined
  private inFlight: Promise<void> | undefined
  private scheduled = false
  /** Set from a failed batch until the next macrotask: adds are refused meanwhile (see run()). */
  private failure: Error | undefined

  /**
   * @param commit writes one batch atomically
   * @param toError turns a failed commit into the error every add() of the batch rejects with
   */
  constructor(
    private readonly commit: (ops: Op[]) => Promise<void>,
    private readonly toError: (err: unknown) => Error,
  ) {}

  /** Queues ops; resolves once the batch holding them is written, rejects if it failed. */
  add(ops: readonly Op[], units: number): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    let batch = this.next
    if (batch === undefined) {
      batch = this.next = newBatch<Op>()
      this.queue.push(batch)
      if (this.inFlight === undefined) this.schedule()
    }
    for (const op of ops) batch.ops.push(op)
    batch.units += units
    return batch.done
  }

  /**
   * Runs `task` alone: after the batches added before this call are written (or failed), and
   * before any batch added after it. Its result or error is the task's own.
   */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ kind: 'task', run: () => task().then(resolve, reject) })
      this.next = undefined // adds from now on go behind the task
      if (this.inFlight === undefined) this.schedule()
    })
  }

  /** Writes what is queued now (without waiting for the tick to end) until nothing is left. */
  async drain(): Promise<void> {
    while (this.inFlight !== undefined || this.queue.length !== 0) {
      this.flush()
      await this.inFlight // never rejects: failures go to the batch's writers
    }
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.flush()
    })
  }

  private flush(): void {
    if (this.inFlight !== undefined) return
    const item = this.queue.shift()
    if (item === undefined) return
    if (item === this.next) this.next = undefined
    this.inFlight = (item.kind === 'task' ? item.run() : this.run(item)).finally(() => {
      this.inFlight = undefined
      this.flush() // whatever accumulated meanwhile goes out at once
    })
  }

  private async run(batch: Batch<Op>): Promise<void> {
    try {
      await this.commit(batch.ops)
    } catch (err) {
      batch.reject(this.toError(err))
      // What was queued behind it was built on it (Store.write): it fails too, unwritten — and
      // so does what is added before the writers have heard (until the next macrotask: the
      // failure reaches them through promise reactions queued behind ones already waiting).
      // Tasks queued behind it still run: they build on what is stored, not on the batch.
      const failure = (this.failure = this.toError(
        new Error(`an earlier batch failed (${err instanceof Error ? err.message : String(err)}), and this write came behind it`),
      ))
      setImmediate(() => (this.failure = undefined))
      this.next = undefined
      for (let i = this.queue.length - 1; i >= 0; i--) {
        const item = this.queue[i]!
        if (item.kind !== 'batch') continue
        this.queue.splice(i, 1)
        item.reject(failure)
      }
      return
    }
    this.stats.batches++
    this.stats.ops += batch.units
    batch.resolve()
  }
}

function newBatch<Op>(): Batch<Op> {
  let resolve!: () => void
  let reject!: (err: unknown) => void
  const done = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { kind: 'batch', ops: [], units: 0, done, resolve, reject }
}
