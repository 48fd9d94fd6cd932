import type { Collection } from './collection.js'
import { ConvergentError } from './errors.js'
import { checkId } from './json.js'

/**
 * A bounded counter (escrow), one per entity id: its value never drops below `min` on any
 * replica, under any partition, loss, duplication or crash — without coordination.
 *
 * Each replica holds *rights*: the amount it may decrement on its own. Increments give rights
 * to the replica that made them; rights move explicitly (transfer) or on request (a replica
 * short of rights asks a peer, which transfers part of its spare). Every field of the state is
 * written by one replica only and only grows, so any merge order gives the same result:
 *   `p|i|i`  increments made by i        `p|i|j`  rights i transferred to j
 *   `n|i`    decrements made by i
 *   rights(i) = p|i|i + Σ p|j|i − Σ p|i|j − n|i        value = min + Σ p|i|i − Σ n|i
 * Σ rights = value − min ≥ 0, and a replica only ever spends rights it holds.
 *
 * The state lives in an Automerge document on purpose: Automerge delivers changes causally
 * (a change waits for the changes it depends on), so every replica's view is a state that
 * really existed and its value is ≥ min at every moment, not only after convergence. Yjs
 * integrates different map keys independently and could show a decrement before the transfer
 * that funded it.
 */
export type CounterState = Record<string, number>

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
}

const P = 'p|'
const N = 'n|'
const MIN = 'min'

export function rightsOf(state: CounterState | undefined, replica: string): number {
  if (state === undefined) return 0
  let r = 0
  for (const [key, v] of Object.entries(state)) {
    if (key.startsWith(P)) {
      const [from, to] = key.slice(2).split('|')
      if (to === replica) r += v
      if (from === replica && to !== replica) r -= v
    } else if (key === N + replica) r -= v
  }
  return r
}

export function valueOf(state: CounterState | undefined, min: number): number {
  if (state === undefined) return min
  let v = min
  for (const [key, n] of Object.entries(state)) {
    if (key.startsWith(P)) {
      const [from, to] = key.slice(2).split('|')
      if (from === to) v += n
    } else if (key.startsWith(N)) v -= n
  }
  return v
}

/** Every replica named in the state with its rights, most first. */
export function holdersOf(state: CounterState | undefined): [string, number][] {
  const names = new Set<string>()
  for (const key of Object.keys(state ?? {})) {
    if (key.startsWith(P))
      key
        .slice(2)
        .split('|')
        .forEach((n) => names.add(n))
    else if (key.startsWith(N)) names.add(key.slice(2))
  }
  return [...names].map((n) => [n, rightsOf(state, n)] as [string, number]).sort((a, b) => b[1] - a[1])
}

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
    const key = `${P}${this.env.me}|${this.env.me}`
    const state = await this.mutate(id, (s) => void (s[key] = (s[key] ?? 0) + n))
    return valueOf(state, this.min)
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
        const state = await this.mutate(id, (s) => {
          const have = rightsOf(s, this.env.me)
          if (have < n) {
            throw new ConvergentError(
              'ERR_INSUFFICIENT_RIGHTS',
              `Replica ${this.env.me} holds ${have} right(s) on '${this.name}/${id}', needs ${n}. Wait for rights to arrive (decrement with { waitMs }) or transfer some here.`,
            )
          }
          s[N + this.env.me] = (s[N + this.env.me] ?? 0) + n
        })
        if (this.lowWater > 0 && rightsOf(state, this.env.me) < this.lowWater) void this.refill(id, state, this.lowWater).catch(() => undefined)
        return valueOf(state, this.min)
      } catch (err) {
        if (!(err instanceof ConvergentError && err.code === 'ERR_INSUFFICIENT_RIGHTS') || this.env.now() >= deadline) throw err
        const state = await this.collection.get(id)
        await Promise.race([this.refill(id, state, n - rightsOf(state, this.env.me)), this.env.sleep(Math.max(1, deadline - this.env.now()))])
        if (rightsOf(await this.collection.get(id), this.env.me) < n) await this.env.sleep(Math.min(50, Math.max(1, deadline - this.env.now())))
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
    const key = `${P}${this.env.me}|${to}`
    await this.mutate(id, (s) => {
      const have = rightsOf(s, this.env.me)
      if (have < n) {
        throw new ConvergentError('ERR_INSUFFICIENT_RIGHTS', `Replica ${this.env.me} holds ${have} right(s) on '${this.name}/${id}'; cannot transfer ${n}.`)
      }
      s[key] = (s[key] ?? 0) + n
    })
  }

  /** The value as this replica sees it now (≥ min, always). */
  async value(id: string): Promise<number> {
    return valueOf(await this.collection.get(id), this.min)
  }

  /** Rights held by a replica (default: this one), as this replica sees it. */
  async rights(id: string, replica: string = this.env.me): Promise<number> {
    return rightsOf(await this.collection.get(id), replica)
  }

  /** Value and every replica's rights, as this replica sees them. */
  async inspect(id: string): Promise<{ value: number; rights: Record<string, number> }> {
    const s = await this.collection.get(id)
    return { value: valueOf(s, this.min), rights: Object.fromEntries(holdersOf(s)) }
  }

  /** Ids of every counter in this collection. */
  keys(): AsyncGenerator<string> {
    return this.collection.keys()
  }

  subscribe(listener: (e: { id: string; value: number; origin: 'local' | 'remote' }) => void): () => void {
    return this.collection.subscribe((e) => listener({ id: e.id, value: valueOf(e.value, this.min), origin: e.origin }))
  }

  /**
   * @internal Serves a peer's request for rights: gives up to what it asked for, at most half
   * of what this replica holds beyond its own low-water mark, and never so much that the
   * requester ends with more than this replica keeps (repeated requests split the rights
   * evenly; they cannot drain a replica). Returns the amount given.
   */
  async grant(id: string, to: string, want: number): Promise<number> {
    const state = await this.collection.get(id)
    const mine = rightsOf(state, this.env.me)
    const spare = mine - this.lowWater
    const give = Math.min(want, Math.ceil(spare / 2), Math.ceil((mine - rightsOf(state, to)) / 2))
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
  private refill(id: string, state: CounterState | undefined, want: number): Promise<void> {
    const running = this.refills.get(id)
    if (running !== undefined) return running
    const holders = holdersOf(state)
      .filter(([name, r]) => name !== this.env.me && r > 0)
      .map(([name]) => name)
    const p = this.env.askForRights(this.name, id, Math.max(1, want), holders).finally(() => this.refills.delete(id))
    this.refills.set(id, p)
    return p
  }

  /** Read-modify-write of the counter state (created if absent), atomic on this replica. */
  private mutate(id: string, fn: (s: CounterState) => void): Promise<CounterState> {
    return this.collection.update(
      id,
      (s) => {
        if (s[MIN] !== undefined && s[MIN] !== this.min) {
          throw new ConvergentError(
            'ERR_INVALID_ARGUMENT',
            `Counter '${this.name}/${id}' has min ${s[MIN]}, not ${this.min}; use the same min on every replica.`,
          )
        }
        s[MIN] = this.min
        fn(s)
      },
      { upsert: true },
    )
  }
}
