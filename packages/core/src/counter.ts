import type { Collection } from './collection.js'
import {
  cloneRow,
  emptyRow,
  giveTo,
  holdersIn,
  legacyRows,
  rightsIn,
  rowKey,
  setAmount,
  valueIn,
  writeLegacyRow,
  type Row,
  type Rows,
  type SignedRows,
} from './counter-rows.js'
import { ConvergentError } from './errors.js'
import { checkId } from './json.js'

/**
 * A bounded counter (escrow), one per entity id: its value never drops below `min` on any
 * replica, under any partition, loss, duplication or crash — without coordination.
 *
 * Each replica holds *rights*: the amount it may decrement on its own. Increments give rights
 * to the replica that made them; rights move explicitly (transfer) or on request (a replica
 * short of rights asks a peer, which transfers part of its spare). The state is one row per
 * replica, written by that replica only, whose numbers only grow, so any merge order gives the
 * same result (counter-rows.ts): Σ rights = value − min ≥ 0, and a replica only ever spends
 * rights it holds. In a cluster every row is signed by its replica's key, so no member can
 * take another's rights, undo its decrements or change min (see SignedRows).
 *
 * The state lives in an Automerge document on purpose: Automerge delivers changes causally
 * (a change waits for the changes it depends on), so every replica's view is a state that
 * really existed and its value is ≥ min at every moment, not only after convergence. Yjs
 * integrates different map keys independently and could show a decrement before the transfer
 * that funded it.
 */
export type CounterState = Record<string, number | string>

export interface CounterOptions {
  /** The bound. The counter starts at it (no entity = value min). Default 0. Must be equal on every replica. */
  min?: number
  /**
   * When a decrement leaves this replica with fewer rights than this, it asks peers for more
   * in the background. Default 0 (only asks when a decrement is short).
   */
  lowWater?: number
}

export interface DecrementOptions {
  /**
   * If local rights are short, ask peers for rights and wait up to this long (ms) before
   * rejecting with ERR_INSUFFICIENT_RIGHTS. Default 0: reject at once (no coordination).
   */
  waitMs?: number
}

/** What the counter needs from its replica: who it is, and a way to ask peers for rights. */
export interface CounterEnvironment {
  readonly me: string
  /** Asks peers (spare-rights holders first) for `want` rights; resolves when answers are applied. */
  askForRights(collection: string, id: string, want: number, holders: string[]): Promise<void>
  /** Resolves after ms (through the replica's clock). */
  sleep(ms: number): Promise<void>
  /** The replica's clock time (ms). */
  now(): number
  /** False for a replica the cluster policy does not let write this counter (no rights go to it). */
  mayHoldRights?(replica: string): boolean
  /** In a cluster: rows are signed and only rows whose signature verifies count. */
  signedRows?: SignedRows
}

/** Thrown inside an update when the state moved since the row was signed: sign again. */
class StaleRow extends Error {}

/** A signed counter operation waiting for its row to be written. */
interface QueuedOp {
  fn: (mine: Row, rows: Rows) => void
  resolve(rows: Rows): void
  reject(err: unknown): void
}

/** Attempts of a signed write before giving up (each one found a row arrive unchecked between its read and its write). */
const MAX_SIGNED_ATTEMPTS = 50

const MIN = 'min'

function checkAmount(n: unknown): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', `A counter amount must be a positive safe integer, got ${String(n)}.`)
  }
  return n
}

export class Counter {
  readonly min: number
  private readonly lowWater: number
  /** Rights requests in flight, per id. */
  private readonly refills = new Map<string, Promise<void>>()
  /** Signed operations waiting per id, and the ids whose queue is being written (see mutate). */
  private readonly queued = new Map<string, QueuedOp[]>()
  private readonly signing = new Set<string>()

  /** @internal — use replica.counter(name, options). */
  constructor(
    private readonly collection: Collection<CounterState>,
    private readonly env: CounterEnvironment,
    options: CounterOptions,
  ) {
    this.min = options.min ?? 0
    this.lowWater = options.lowWater ?? 0
    if (!Number.isSafeInteger(this.min)) throw new ConvergentError('ERR_INVALID_ARGUMENT', 'counter min must be a safe integer')
  }

  get name(): string {
    return this.collection.name
  }

  /** Adds n; the rights to take it away again are this replica's. Resolves with the new value once durable. */
  async increment(id: string, n = 1): Promise<number> {
    checkAmount(n)
    const rows = await this.mutate(id, (mine) => void (mine.inc += n))
    return valueIn(rows, this.min)
  }

  /**
   * Takes n away — only within this replica's rights, so the value can never drop below min
   * anywhere. Short of rights: rejects with ERR_INSUFFICIENT_RIGHTS (after asking peers and
   * waiting up to options.waitMs, if given). Resolves with the new value once durable.
   */
  async decrement(id: string, n = 1, options: DecrementOptions = {}): Promise<number> {
    checkAmount(n)
    const deadline = options.waitMs ? this.env.now() + options.waitMs : 0
    for (;;) {
      try {
        const rows = await this.mutate(id, (mine, rows) => {
          const have = rightsIn(rows, this.env.me)
          if (have < n) {
            throw new ConvergentError(
              'ERR_INSUFFICIENT_RIGHTS',
              `Replica ${this.env.me} holds ${have} right(s) on '${this.name}/${id}', needs ${n}. Wait for rights to arrive (decrement with { waitMs }) or transfer some here.`,
            )
          }
          mine.dec += n
        })
        if (this.lowWater > 0 && rightsIn(rows, this.env.me) < this.lowWater) void this.refill(id, rows, this.lowWater).catch(() => undefined)
        return valueIn(rows, this.min)
      } catch (err) {
        if (!(err instanceof ConvergentError && err.code === 'ERR_INSUFFICIENT_RIGHTS') || this.env.now() >= deadline) throw err
        const rows = await this.rowsOf(id)
        await Promise.race([this.refill(id, rows, n - rightsIn(rows, this.env.me)), this.env.sleep(Math.max(1, deadline - this.env.now()))])
        if (rightsIn(await this.rowsOf(id), this.env.me) < n) await this.env.sleep(Math.min(50, Math.max(1, deadline - this.env.now())))
      }
    }
  }

  /** Moves n of this replica's rights to another replica (by its peer id). */
  async transfer(id: string, to: string, n: number): Promise<void> {
    checkAmount(n)
    checkId(to, 'id')
    if (to === this.env.me || to.includes('|')) throw new ConvergentError('ERR_INVALID_ARGUMENT', `cannot transfer rights to '${to}'`)
    if (this.env.mayHoldRights?.(to) === false) {
      throw new ConvergentError('ERR_FORBIDDEN', `the cluster policy does not let '${to}' write '${this.name}', so it cannot hold rights on it`)
    }
    await this.mutate(id, (mine, rows) => {
      const have = rightsIn(rows, this.env.me)
      if (have < n) {
        throw new ConvergentError('ERR_INSUFFICIENT_RIGHTS', `Replica ${this.env.me} holds ${have} right(s) on '${this.name}/${id}'; cannot transfer ${n}.`)
      }
      giveTo(mine, to, n)
    })
  }

  /** The value as this replica sees it now (≥ min, always). */
  async value(id: string): Promise<number> {
    return valueIn(await this.rowsOf(id), this.min)
  }

  /** Rights held by a replica (default: this one), as this replica sees it. */
  async rights(id: string, replica: string = this.env.me): Promise<number> {
    return rightsIn(await this.rowsOf(id), replica)
  }

  /** Value and every replica's rights, as this replica sees them. */
  async inspect(id: string): Promise<{ value: number; rights: Record<string, number> }> {
    const rows = await this.rowsOf(id)
    return { value: valueIn(rows, this.min), rights: Object.fromEntries(holdersIn(rows)) }
  }

  /** Ids of every counter in this collection. */
  keys(): AsyncGenerator<string> {
    return this.collection.keys()
  }

  subscribe(listener: (e: { id: string; value: number; origin: 'local' | 'remote' }) => void): () => void {
    // Signed rows are checked before they count (async): events stay in order through one chain.
    let chain = Promise.resolve()
    return this.collection.subscribe((e) => {
      chain = chain
        .then(async () => listener({ id: e.id, value: valueIn(await this.rowsFrom(e.id, e.value), this.min), origin: e.origin }))
        .catch(() => undefined)
    })
  }

  /**
   * @internal Serves a peer's request for rights: gives up to what it asked for, at most half
   * of what this replica holds beyond its own low-water mark, and never so much that the
   * requester ends with more than this replica keeps (repeated requests split the rights
   * evenly; they cannot drain a replica). Returns the amount given.
   */
  async grant(id: string, to: string, want: number): Promise<number> {
    const rows = await this.rowsOf(id)
    const mine = rightsIn(rows, this.env.me)
    const spare = mine - this.lowWater
    const give = Math.min(want, Math.ceil(spare / 2), Math.ceil((mine - rightsIn(rows, to)) / 2))
    if (give <= 0) return 0
    try {
      await this.transfer(id, to, give)
      return give
    } catch (err) {
      if (err instanceof ConvergentError && err.code === 'ERR_INSUFFICIENT_RIGHTS') return 0
      throw err
    }
  }

  /**
   * Asks peers for rights on one id. One request per id at a time: a refill asked for while
   * one is in flight shares it (many decrements running low at once send one request).
   */
  private refill(id: string, rows: Rows, want: number): Promise<void> {
    const running = this.refills.get(id)
    if (running !== undefined) return running
    const holders = holdersIn(rows)
      .filter(([name, r]) => name !== this.env.me && r > 0)
      .map(([name]) => name)
    const p = this.env.askForRights(this.name, id, Math.max(1, want), holders).finally(() => this.refills.delete(id))
    this.refills.set(id, p)
    return p
  }

  /** The rows that count in the stored state of one id. */
  private async rowsOf(id: string): Promise<Rows> {
    return this.rowsFrom(id, await this.collection.get(id))
  }

  private async rowsFrom(id: string, state: CounterState | undefined): Promise<Rows> {
    const signed = this.env.signedRows
    if (signed === undefined) return legacyRows(state)
    // Every row is checked before the view is taken: a view never counts a spender's row without the row that funded it.
    await signed.check(this.name, id, state)
    return signed.view(this.name, id, state).rows
  }

  /**
   * Read-modify-write of this replica's own row (the entity is created if absent), atomic on
   * this replica: `fn` changes `mine`, with every row that counts to check rights against.
   * Resolves with the rows after the write.
   */
  private mutate(id: string, fn: (mine: Row, rows: Rows) => void): Promise<Rows> {
    const signed = this.env.signedRows
    if (signed === undefined) return this.mutateUnsigned(id, fn)
    // Signed writes of one id run one batch at a time: the operations that queued while a row was
    // being signed and written go into the next row together — one signature and one row for
    // all of them (a hot SKU's concurrent sales), each still checked against the rights left.
    return new Promise<Rows>((resolve, reject) => {
      const queue = this.queued.get(id) ?? []
      queue.push({ fn, resolve, reject })
      this.queued.set(id, queue)
      if (!this.signing.has(id)) {
        this.signing.add(id)
        void this.drain(id, signed).finally(() => this.signing.delete(id))
      }
    })
  }

  /** Writes the queued operations of one id, batch after batch, until none are left. */
  private async drain(id: string, signed: SignedRows): Promise<void> {
    for (;;) {
      const batch = this.queued.get(id)
      if (batch === undefined || batch.length === 0) break
      this.queued.delete(id)
      try {
        const rows = await this.writeSigned(id, batch, signed)
        for (const op of batch) op.resolve(rows)
      } catch (err) {
        for (const op of batch) op.reject(err)
      }
    }
    this.queued.delete(id)
  }

  private async mutateUnsigned(id: string, fn: (mine: Row, rows: Rows) => void): Promise<Rows> {
    const state = await this.collection.update(
      id,
      (s) => {
        this.checkMin(id, s[MIN])
        s[MIN] = this.min
        const rows = legacyRows(s)
        const mine = cloneRow(rows.get(this.env.me) ?? emptyRow())
        fn(mine, rows)
        writeLegacyRow(s, this.env.me, mine)
      },
      { upsert: true },
    )
    return legacyRows(state)
  }

  /**
   * The write of a signed row: read and check the rows, apply the batch's operations to this
   * replica's row (one that fails — short of rights — is rejected alone and leaves the row as
   * it was), sign the new row (async), then write it — in one update that first checks the row
   * it replaces is still this replica's latest and nothing unchecked arrived (else read and sign
   * again). Others' rows only grow meanwhile, so rights checked before signing hold at the write.
   * Removes the operations it rejected from `batch`; resolves with the rows after the write.
   */
  private async writeSigned(id: string, batch: QueuedOp[], signed: SignedRows): Promise<Rows> {
    const me = this.env.me
    for (let attempt = 0; attempt < MAX_SIGNED_ATTEMPTS; attempt++) {
      const state = await this.collection.get(id)
      await signed.check(this.name, id, state)
      const view = signed.view(this.name, id, state)
      const current = view.best.get(me)
      // Unsigned entries (development mode, or an earlier release) are not carried over: anyone
      // could have written them. A replica's first signed row starts from nothing.
      let mine = cloneRow(view.rows.get(me) ?? emptyRow())
      for (let i = 0; i < batch.length; i++) {
        const op = batch[i]!
        const trial = cloneRow(mine)
        const rows = new Map(view.rows).set(me, trial)
        try {
          op.fn(trial, rows)
          if (rightsIn(rows, me) < 0)
            throw new ConvergentError('ERR_INSUFFICIENT_RIGHTS', `Replica ${me} would hold ${rightsIn(rows, me)} right(s) on '${this.name}/${id}'.`)
          mine = trial
        } catch (err) {
          op.reject(err)
          batch.splice(i--, 1)
        }
      }
      if (batch.length === 0) return view.rows
      const version = (current?.version ?? 0) + 1
      // Receipts: the rights every other holder's rows gave this replica, as counted here.
      const received: Record<string, number> = {}
      for (const [holder, row] of view.rows) if (holder !== me && Object.hasOwn(row.out, me) && row.out[me]! > 0) setAmount(received, holder, row.out[me]!)
      const value = await signed.seal(this.name, id, me, { ...mine, version, received })
      try {
        const written = await this.collection.update(
          id,
          (s) => {
            const now = signed.view(this.name, id, s)
            if ((now.best.get(me)?.version ?? 0) !== (current?.version ?? 0) || now.unchecked > 0) throw new StaleRow()
            // Its receipts still given here (its change's own past): receivers count no more (rowsVerdict).
            for (const [from, n] of Object.entries(received)) {
              const gave = now.rows.get(from)
              if (gave === undefined || !Object.hasOwn(gave.out, me) || gave.out[me]! < n) throw new StaleRow()
            }
            for (const key of now.keys.get(me) ?? []) delete s[key]
            s[rowKey(me, version, value)] = value
          },
          { upsert: true },
        )
        return signed.view(this.name, id, written).rows
      } catch (err) {
        if (!(err instanceof StaleRow)) throw err
      }
    }
    throw new ConvergentError(
      'ERR_TIMEOUT',
      `Counter '${this.name}/${id}': ${MAX_SIGNED_ATTEMPTS} attempts to write this replica's row found its state changed meanwhile; try again.`,
    )
  }

  private checkMin(id: string, min: unknown): void {
    if (min !== undefined && min !== this.min) {
      throw new ConvergentError(
        'ERR_INVALID_ARGUMENT',
        `Counter '${this.name}/${id}' has min ${JSON.stringify(min)}, not ${this.min}; use the same min on every replica.`,
      )
    }
  }
}
