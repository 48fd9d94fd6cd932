/**
 * The write ledger: every update the workload issued, when it was acknowledged, and when each
 * replica first showed it (via collection.subscribe).
 *
 * How a write is recognised, soundly: writer w only ever sets its own register field in an
 * entity (`n<w>`, or `w<w>.n` with nested values) to its own counter, which only grows. Those
 * writes are causally ordered (each is made on top of the last, on the same replica or on
 * its restarted self, which reloads every acknowledged write from its store), and no one else
 * writes that field and nothing deletes it. So in any replica the field holds w's latest
 * write it has received, and `value ≥ n` means write n (or a causally later one that
 * supersedes it) is visible there. A value that goes down, or a field that disappears, is a
 * lost or reordered write — checked on every event as the monotonic-registers invariant.
 */
export interface WriteRecord {
  readonly idx: number
  readonly writer: number
  readonly collection: string
  readonly entity: string
  readonly n: number
  readonly issuedAt: number
  /** NaN until acknowledged (the write's promise resolved). */
  ackedAt: number
  /** Error code if the write was rejected. */
  failed: string | undefined
  /** First time each node (by index, nodes that existed when it was issued) showed it; NaN = not yet. */
  readonly arrivals: Float64Array
}

export interface Violation {
  at: number
  node: number
  collection: string
  entity: string
  writer: number
  kind: 'went-back' | 'vanished'
  from: number
  to: number | undefined
}

const MAX_VIOLATIONS_KEPT = 50

export class Ledger {
  readonly writes: WriteRecord[] = []
  /** collection\0entity\0writer → that register's writes, by n. */
  private readonly byRegister = new Map<string, WriteRecord[]>()
  /** Per node: collection\0entity → writer → highest n seen. */
  private readonly seen: Map<string, Map<number, number>>[] = []
  private readonly expected: number[] = []
  private readonly arrived: number[] = []
  readonly violations: Violation[] = []
  violationCount = 0

  addNode(): void {
    this.seen.push(new Map())
    this.expected.push(0)
    this.arrived.push(0)
  }

  get nodeCount(): number {
    return this.seen.length
  }

  issue(writer: number, collection: string, entity: string, n: number, now: number): WriteRecord {
    const w: WriteRecord = {
      idx: this.writes.length,
      writer,
      collection,
      entity,
      n,
      issuedAt: now,
      ackedAt: NaN,
      failed: undefined,
      arrivals: new Float64Array(this.seen.length).fill(NaN),
    }
    this.writes.push(w)
    const key = registerKey(collection, entity, writer)
    const list = this.byRegister.get(key)
    if (list === undefined) this.byRegister.set(key, [w])
    else list.push(w)
    return w
  }

  /** Acknowledged: every node that existed when it was issued must show it eventually. */
  ack(w: WriteRecord, now: number): void {
    w.ackedAt = now
    for (let node = 0; node < w.arrivals.length; node++) this.expected[node]!++
  }

  fail(w: WriteRecord, code: string): void {
    w.failed = code
  }

  /** A subscribe() event: node shows `value` for the entity now. */
  observe(node: number, collection: string, entity: string, value: Record<string, unknown> | undefined, now: number): void {
    const registers = readRegisters(value)
    const ekey = `${collection}\u0000${entity}`
    const mine = this.seen[node]!
    let known = mine.get(ekey)
    if (known === undefined) mine.set(ekey, (known = new Map<number, number>()))
    for (const [writer, n] of registers) {
      const prev = known.get(writer) ?? 0
      if (n > prev) {
        known.set(writer, n)
        this.arrive(node, collection, entity, writer, prev, n, now)
      } else if (n < prev) {
        this.violate({ at: now, node, collection, entity, writer, kind: 'went-back', from: prev, to: n })
      }
    }
    for (const [writer, prev] of known) {
      if (!registers.has(writer)) this.violate({ at: now, node, collection, entity, writer, kind: 'vanished', from: prev, to: undefined })
    }
  }

  private arrive(node: number, collection: string, entity: string, writer: number, after: number, upTo: number, now: number): void {
    const list = this.byRegister.get(registerKey(collection, entity, writer))
    if (list === undefined) return
    let lo = 0
    let hi = list.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (list[mid]!.n <= after) lo = mid + 1
      else hi = mid
    }
    for (let i = lo; i < list.length && list[i]!.n <= upTo; i++) {
      const w = list[i]!
      if (node < w.arrivals.length && Number.isNaN(w.arrivals[node]!)) {
        w.arrivals[node] = now
        this.arrived[node]!++
      }
    }
  }

  private violate(v: Violation): void {
    this.violationCount++
    if (this.violations.length < MAX_VIOLATIONS_KEPT) this.violations.push(v)
  }

  /** Acknowledged writes the live nodes have not shown yet, and how many nodes lag. */
  divergence(live: number[]): { missing: number; behind: number } {
    let missing = 0
    let behind = 0
    for (const node of live) {
      const gap = this.expected[node]! - this.arrived[node]!
      if (gap > 0) {
        missing += gap
        behind++
      }
    }
    return { missing, behind }
  }

  /** Highest acknowledged n per register: what every replica must show at the end. */
  ackedMaxima(): Map<string, { n: number; write: WriteRecord }> {
    const out = new Map<string, { n: number; write: WriteRecord }>()
    for (const w of this.writes) {
      if (Number.isNaN(w.ackedAt)) continue
      const key = registerKey(w.collection, w.entity, w.writer)
      const cur = out.get(key)
      if (cur === undefined || w.n > cur.n) out.set(key, { n: w.n, write: w })
    }
    return out
  }

  /** Writes a node showed, of writer `writer`, for the restart invariant. */
  seenBy(node: number, collection: string, entity: string, writer: number): number {
    return this.seen[node]?.get(`${collection}\u0000${entity}`)?.get(writer) ?? 0
  }
}

export function registerKey(collection: string, entity: string, writer: number): string {
  return `${collection}\u0000${entity}\u0000${writer}`
}

/** writer → n from an entity value (flat `n<w>` fields or nested `w<w>: { n }`). */
export function readRegisters(value: Record<string, unknown> | undefined): Map<number, number> {
  const out = new Map<number, number>()
  if (value === undefined) return out
  for (const [k, v] of Object.entries(value)) {
    if (k.length < 2) continue
    const c = k.charCodeAt(0)
    if (c === 110 /* n */ && typeof v === 'number') out.set(Number(k.slice(1)), v)
    else if (c === 119 /* w */ && typeof v === 'object' && v !== null && typeof (v as { n?: unknown }).n === 'number') {
      out.set(Number(k.slice(1)), (v as { n: number }).n)
    }
  }
  return out
}
