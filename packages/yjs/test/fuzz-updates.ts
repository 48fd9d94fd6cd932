/**
 * Differential fuzzing of validateUpdate against Y.applyUpdate: real updates of this backend,
 * taken apart (update-model.ts) and mutated or recombined, seeded. An update that
 * validateUpdate accepts must apply without throwing — on a fresh document and on one holding
 * earlier updates of the same history — and must not make a later honest update of that
 * history throw either. Used by validate-fuzz.test.ts; `node
 * packages/yjs/dist/test/fuzz-updates.js <seed> <cases>` runs it longer and prints findings.
 */
import * as Y from 'yjs'
import type { JsonObject, JsonValue } from '@convergent/core'
import { seededRandom } from '@convergent/core/testing'
import { yjsBackend } from '../src/index.js'
import { validateUpdate } from '../src/validate.js'
import { decodeUpdate, encodeUpdate, structLength, type Content, type Group, type Id, type Struct, type UpdateModel } from './update-model.js'

const backend = yjsBackend()

type Rand = () => number
const int = (rand: Rand, n: number): number => Math.floor(rand() * n)
const pick = <T>(rand: Rand, xs: readonly T[]): T => xs[int(rand, xs.length)]!

const actor = (n: number): Uint8Array => Uint8Array.from({ length: 16 }, (_, i) => (i < 4 ? [0, 0, 1, n][i]! : i))

/** Every update an honest history of three replicas produced, in a causal order. */
export function honestHistory(rand: Rand): Uint8Array[] {
  const docs = [1, 2, 3].map((n) => backend.create(actor(n)))
  const out: Uint8Array[] = []
  const keys = ['a', 'b', 'c', 'o', 'list']
  const scalar = (): JsonValue => pick(rand, [1, 2, 'x', 'yy', true, null, 2.5, -7])
  const value = (depth: number): JsonValue => {
    const r = rand()
    if (depth > 1 || r < 0.5) return scalar()
    if (r < 0.75) return Array.from({ length: int(rand, 4) }, () => value(depth + 1))
    const o: JsonObject = {}
    for (const k of keys) if (rand() < 0.4) o[k] = value(depth + 1)
    return o
  }
  for (let step = 0; step < 14; step++) {
    const i = int(rand, docs.length)
    const doc = docs[i]!
    const r = rand()
    if (r < 0.55) {
      const v: JsonObject = { ...(backend.read(doc) ?? {}) }
      for (const k of keys) if (rand() < 0.4) v[k] = value(0)
      if (rand() < 0.2) delete v[pick(rand, keys)]
      const d = backend.put(doc, v).delta
      if (d !== null) out.push(d)
    } else if (r < 0.65) {
      const d = backend.delete(doc).delta
      if (d !== null) out.push(d)
    } else {
      const from = pick(rand, docs)
      const d = backend.deltaSince(from, backend.version(doc))
      if (d !== null) {
        backend.applyDelta(doc, d)
        out.push(d)
      }
    }
  }
  if (out.length === 0) out.push(backend.put(docs[0]!, { a: 1 }).delta!)
  const saved = docs[int(rand, docs.length)]!
  if (saved.store.clients.size > 0) out.push(backend.save(saved))
  return out
}

/** Every id a history's updates name: struct clocks, origins, parents, deleted ranges. */
function idPool(models: readonly UpdateModel[]): Id[] {
  const ids: Id[] = []
  for (const m of models) {
    for (const g of m.groups) {
      let clock = g.clock
      for (const s of g.structs) {
        ids.push({ client: g.client, clock }, { client: g.client, clock: clock + structLength(s) - 1 })
        if (s.kind === 'item') for (const ref of [s.origin, s.rightOrigin, s.parent && 'id' in s.parent ? s.parent.id : null]) if (ref) ids.push(ref)
        clock += structLength(s)
      }
    }
    for (const e of m.ds) for (const [clock, len] of e.ranges) ids.push({ client: e.client, clock }, { client: e.client, clock: clock + len - 1 })
  }
  return ids
}

/** Where each struct of a group starts. */
function startsOf(g: Group): number[] {
  const starts: number[] = []
  let clock = g.clock
  for (const s of g.structs) {
    starts.push(clock)
    clock += structLength(s)
  }
  return starts
}

const clone = <T>(x: T): T => structuredClone(x)

/** One random change to the model: a field of one struct, the layout of a group, or the delete set. */
function mutate(rand: Rand, m: UpdateModel, donor: UpdateModel, pool: readonly Id[]): void {
  const groups = m.groups.filter((g) => g.structs.length > 0)
  const g = groups.length > 0 ? pick(rand, groups) : undefined
  const si = g ? int(rand, g.structs.length) : 0
  const s = g?.structs[si]
  const self: Id | undefined = g ? { client: g.client, clock: startsOf(g)[si]! } : undefined
  const someId = (): Id | null => {
    const r = rand()
    if (self && r < 0.15) return { ...self }
    if (self && r < 0.25) return { client: self.client, clock: self.clock + 1 + int(rand, 3) }
    if (self && r < 0.35 && self.clock > 0) return { client: self.client, clock: self.clock - 1 - int(rand, Math.min(self.clock, 3)) }
    if (r < 0.8 && pool.length > 0) {
      const id = pick(rand, pool)
      return rand() < 0.7 ? { ...id } : { client: id.client, clock: id.clock + int(rand, 3) - 1 < 0 ? 0 : id.clock + int(rand, 3) - 1 }
    }
    if (r < 0.9) return null
    return { client: pick(rand, [1, 2, 3, 16777217, 16777218, 16777219, 99]), clock: int(rand, 12) }
  }
  const someContent = (): Content =>
    pick(rand, [
      { kind: 'any', values: [int(rand, 5)] },
      { kind: 'any', values: ['p', 'q', 3] },
      { kind: 'type', ref: 0 },
      { kind: 'type', ref: 1 },
      { kind: 'deleted', len: 1 + int(rand, 3) },
    ] as Content[])
  const someStruct = (): Struct => {
    const r = rand()
    if (r < 0.15) return { kind: 'gc', len: 1 + int(rand, 3) }
    if (r < 0.25) return { kind: 'skip', len: 1 + int(rand, 3) }
    const origin = someId()
    const rightOrigin = rand() < 0.5 ? someId() : null
    return {
      kind: 'item',
      origin,
      rightOrigin,
      parent: origin || rightOrigin ? null : someParent(),
      parentSub: rand() < 0.5 ? pick(rand, ['a', 'b', 'deleted', 'o']) : null,
      content: someContent(),
    }
  }
  const someParent = (): { root: string } | { id: Id } => {
    const id = rand() < 0.5 ? someId() : null
    return id ? { id } : { root: pick(rand, ['value', 'meta']) }
  }
  const what = int(rand, 20)
  switch (what) {
    case 0:
    case 1:
      if (s?.kind === 'item') s.origin = someId()
      break
    case 2:
      if (s?.kind === 'item') s.rightOrigin = someId()
      break
    case 3:
      if (s?.kind === 'item') {
        s.origin = null
        s.rightOrigin = null
        s.parent = someParent()
      }
      break
    case 4:
      if (s?.kind === 'item') s.parentSub = rand() < 0.3 ? null : pick(rand, ['a', 'b', 'deleted', 'o', 'list'])
      break
    case 5:
      if (s?.kind === 'item') s.content = someContent()
      break
    case 6:
      if (g) g.clock = pick(rand, [0, Math.max(0, g.clock - 1), g.clock + 1, g.clock + int(rand, 10), int(rand, 20)])
      break
    case 7:
      if (g) g.client = pick(rand, [...new Set(pool.map((id) => id.client)), 5])
      break
    case 8:
      if (g && g.structs.length > 1) g.structs.splice(si, 1)
      break
    case 9:
      if (g && s) g.structs.splice(si + int(rand, 2), 0, clone(s))
      break
    case 10:
      if (g && g.structs.length > 1) {
        const j = int(rand, g.structs.length)
        ;[g.structs[si], g.structs[j]] = [g.structs[j]!, g.structs[si]!]
      }
      break
    case 11:
      if (g) g.structs.splice(int(rand, g.structs.length + 1), 0, someStruct())
      break
    case 12:
      // A group of the donor, added or in place of one of ours.
      if (donor.groups.length > 0) {
        const dg = clone(pick(rand, donor.groups))
        if (g && rand() < 0.5) m.groups[m.groups.indexOf(g)] = dg
        else m.groups.splice(int(rand, m.groups.length + 1), 0, dg)
      }
      break
    case 13:
      if (g) m.groups.push(clone(g))
      break
    case 14:
      m.groups.reverse()
      break
    case 15: {
      const id = pick(rand, [...pool, { client: 1, clock: 0 }])
      const entry = m.ds.find((e) => e.client === id.client) ?? (m.ds.push({ client: id.client, ranges: [] }), m.ds[m.ds.length - 1]!)
      entry.ranges.push([id.clock, 1 + int(rand, 4)])
      entry.ranges.sort((a, b) => a[0] - b[0])
      break
    }
    case 16:
      if (g && s && donor.groups.length > 0) {
        const dg = pick(rand, donor.groups)
        if (dg.structs.length > 0) g.structs.splice(si, 0, clone(pick(rand, dg.structs)))
      }
      break
    case 17:
      // Honest-looking: the tail of a group from some struct on, at its own clock.
      if (g && si > 0) {
        g.clock = startsOf(g)[si]!
        g.structs.splice(0, si)
      }
      break
    case 18:
      if (g && s?.kind === 'item' && s.content.kind === 'any') s.content.values.push(rand() < 0.5 ? 'z' : 9)
      break
    default:
      if (m.ds.length > 0) {
        const e = pick(rand, m.ds)
        if (e.ranges.length > 0) {
          const r = pick(rand, e.ranges)
          r[0] = Math.max(0, r[0] + int(rand, 5) - 2)
          r[1] = Math.max(1, r[1] + int(rand, 5) - 2)
        }
      }
  }
}

export type FindingKind = 'fresh' | 'partial' | 'poison' | 'unexpected'

export interface Finding {
  kind: FindingKind
  /** Where it threw: 'fresh', 'after k updates', or 'honest update i after it'. */
  where: string
  message: string
  /** The first Yjs source line on the stack: what kind of throw it is. */
  site: string
  update: Uint8Array
  seed: number
  index: number
  /** To replay it: the honest history, and how many of its updates the document held before. */
  history: readonly Uint8Array[]
  held: number
}

function siteOf(err: unknown): string {
  const stack = err instanceof Error ? (err.stack ?? '') : ''
  const line = stack.split('\n').find((l) => l.includes('/yjs/') || l.includes('/lib0/'))
  return line?.replace(/^.*\/node_modules\//, '').replace(/\)$/, '') ?? 'unknown'
}

function accepted(bytes: Uint8Array): boolean {
  try {
    validateUpdate(bytes)
    return true
  } catch {
    return false
  }
}

/** A document as the backend makes one, with its roots defined as they are once it has been read. */
function freshDoc(n: number, defineRoots: boolean): Y.Doc {
  const doc = backend.create(actor(100 + n))
  if (defineRoots) backend.read(doc)
  return doc
}

/**
 * Applies `update` (which validateUpdate accepted):
 *  - with Y.applyUpdate to a fresh document: the stateless scan must have refused whatever throws;
 *  - with applyDelta to a document holding a prefix of `history`: it may refuse (throw
 *    ERR_INVALID_DELTA); if it throws after Yjs changed the document, that is a finding of kind
 *    'partial' (allowed by the Backend contract, whose caller discards the document);
 *  - then the rest of `history` with applyDelta: a throw there is kind 'poison' (an accepted
 *    update that makes a later honest one fail).
 */
export function check(update: Uint8Array, history: readonly Uint8Array[], rand: Rand, seed: number, index: number): Finding | null {
  let held = 0
  const finding = (kind: FindingKind, where: string, err: unknown): Finding => ({
    kind,
    where,
    message: err instanceof Error ? err.message : String(err),
    site: siteOf(err),
    update,
    seed,
    index,
    history,
    held,
  })
  try {
    Y.applyUpdate(freshDoc(1, rand() < 0.5), update)
  } catch (err) {
    return finding('fresh', 'fresh', err)
  }
  const k = (held = int(rand, history.length + 1))
  const doc = freshDoc(2, true)
  for (const h of history.slice(0, k)) backend.applyDelta(doc, h)
  const before = Y.encodeStateAsUpdate(doc)
  try {
    backend.applyDelta(doc, update)
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_INVALID_DELTA') return finding('unexpected', `after ${k} updates`, err)
    const touched = Buffer.compare(Buffer.from(before), Buffer.from(Y.encodeStateAsUpdate(doc))) !== 0
    return touched ? finding('partial', `after ${k} updates`, (err as { cause?: unknown }).cause ?? err) : null
  }
  for (let i = k; i < history.length; i++) {
    try {
      backend.applyDelta(doc, history[i]!)
    } catch (err) {
      return finding('poison', `honest update ${i} after it`, (err as { cause?: unknown }).cause ?? err)
    }
  }
  return null
}

/** One of the history's updates with one to three random changes, sometimes merged with another. */
function mutatedUpdate(rand: Rand, history: readonly Uint8Array[], models: readonly UpdateModel[], pool: readonly Id[]): Uint8Array {
  const model = clone(pick(rand, models))
  const donor = pick(rand, models)
  for (let n = 1 + int(rand, 3); n > 0; n--) mutate(rand, model, donor, pool)
  const update = encodeUpdate(model)
  return rand() < 0.1 ? Y.mergeUpdates([update, pick(rand, history)]) : update
}

/** Updates made the way fuzz() makes them, from a seed alone (for property tests). */
export function mutatedUpdates(seed: number, count: number): Uint8Array[] {
  const rand = seededRandom(seed)
  const history = honestHistory(rand)
  const models = history.map(decodeUpdate)
  const pool = idPool(models)
  return Array.from({ length: count }, () => mutatedUpdate(rand, history, models, pool))
}

export interface FuzzResult {
  cases: number
  accepted: number
  findings: Finding[]
}

/** `cases` mutated updates from seed `seed` on; every accepted one is checked. */
export function fuzz(seed: number, cases: number): FuzzResult {
  const findings: Finding[] = []
  let passed = 0
  const rand = seededRandom(seed)
  let history: Uint8Array[] = []
  let models: UpdateModel[] = []
  let pool: Id[] = []
  for (let index = 0; index < cases; index++) {
    if (index % 40 === 0) {
      history = honestHistory(rand)
      models = history.map(decodeUpdate)
      pool = idPool(models)
    }
    const update = mutatedUpdate(rand, history, models, pool)
    if (!accepted(update)) continue
    passed++
    const f = check(update, history, rand, seed, index)
    if (f !== null) findings.push(f)
  }
  return { cases, accepted: passed, findings }
}

// Run as a script: node fuzz-updates.js <seed> <cases> — prints the findings grouped by site.
if (process.argv[1]?.endsWith('fuzz-updates.js')) {
  const seed = Number(process.argv[2] ?? 1)
  const cases = Number(process.argv[3] ?? 20_000)
  const result = fuzz(seed, cases)
  const bySite = new Map<string, Finding[]>()
  for (const f of result.findings) {
    const key = `${f.kind}: ${f.site} | ${f.message.slice(0, 70)}`
    bySite.set(key, [...(bySite.get(key) ?? []), f])
  }
  console.log(`${result.cases} cases, ${result.accepted} accepted, ${result.findings.length} findings`)
  for (const [key, fs] of bySite) {
    console.log(`\n${fs.length}× ${key}`)
    for (const f of fs.slice(0, 2)) console.log(`  seed ${f.seed} case ${f.index} (${f.where}): ${Buffer.from(f.update).toString('hex')}`)
  }
}
