// Shared by the op-refs tests (op-refs.test.ts and the reviews): hand-made changes, and a
// replica's life through the backend as core lives it.
import * as A from '@automerge/automerge'
import { ConvergentError, documentUntouched } from '@convergent/core'
import { automergeBackend, type AutomergeDoc } from '../src/index.js'

export type Op = A.DecodedChange['ops'][number] & { elemId?: string; insert?: boolean }
export type Doc = A.Doc<Record<string, unknown>>

export const WRITER = 'aa'.repeat(16)
export const OTHER = 'bb'.repeat(16)
export const HOSTILE = 'ff'.repeat(16)

export const backend = automergeBackend()

export function crafted(doc: Doc, actor: string, ops: Op[], header: Partial<A.DecodedChange> = {}): Uint8Array {
  const fork = A.change(A.clone(doc, { actor }), { time: 0 }, (d) => void (d['zz'] = 1))
  const { hash: _hash, ...change } = A.decodeChange(A.getLastLocalChange(fork)!)
  return A.encodeChange({ ...change, ops, ...header })
}

export function idAt(doc: Doc, obj: string, key: string | number): string {
  const all = A.getBackend(doc).getAll(obj, key)
  return String(all[0]![all[0]!.length - 1])
}

export function objAt(doc: Doc, key: string): string {
  return String(A.getBackend(doc).getAll('_root', key)[0]![1])
}

/** WRITER's {m: {x: 1}, l: [1, 2, 3], k: 1, c: Counter}; `moved` also holds OTHER's concurrent k = 2. */
export function start(): { base: Doc; moved: Doc; otherChange: Uint8Array } {
  const base = A.change(A.init<Record<string, unknown>>({ actor: WRITER }), { time: 0 }, (d) => {
    d['m'] = { x: 1 }
    d['l'] = [1, 2, 3]
    d['k'] = 1
    d['c'] = new A.Counter(0)
  })
  const other = A.change(A.clone(base, { actor: OTHER }), { time: 0 }, (d) => void (d['k'] = 2))
  const otherChange = A.getLastLocalChange(other)!
  return { base, moved: A.loadIncremental(A.clone(base), otherChange), otherChange }
}

/** WRITER's {m: {x: 1}, l: [1, 2, 3], k: 1}. */
export function plainDoc(): Doc {
  return A.change(A.init<Record<string, unknown>>({ actor: WRITER }), { time: 0 }, (d) => {
    d['m'] = { x: 1 }
    d['l'] = [1, 2, 3]
    d['k'] = 1
  })
}

/** A bad change by `actor` on `doc`: a delete of k whose pred names an op that never exists. */
export function badOn(doc: Doc, actor = HOSTILE, header: Partial<A.DecodedChange> = {}): Uint8Array {
  return crafted(doc, actor, [{ action: 'del', obj: '_root', key: 'k', pred: [idAt(doc, '_root', 'k'), `500@${WRITER}`] }], header)
}

/** An honest change by `actor` on `doc`, and the document after it. */
export function step(doc: Doc, actor: string, edit: (d: Record<string, unknown>) => void): { doc: Doc; change: Uint8Array } {
  const next = A.change(A.clone(doc, { actor }), { time: 0 }, edit)
  return { doc: next, change: A.getLastLocalChange(next)! }
}

export function replicaOf(doc: Doc): AutomergeDoc {
  return backend.load(A.save(doc), [], new Uint8Array(16))
}

/** What run() saw: each delta's verdict, and the replica as loaded again from what it stored. */
export interface Run {
  verdicts: string[]
  /** The value (JSON), and parsed. */
  value: string
  state: Record<string, unknown>
  /** Whether it loads once saved ('loads', else why not). */
  loads: string
  /** Deltas applied to a rebuilt document (stored whole). */
  rebuilds: number
  /** Changes still waiting. */
  pending: boolean
}

/**
 * Each delta applied in turn through the backend (a refusal reloads the stored state), stored as
 * core stores it (a rebuilt document whole, as a snapshot: Backend.rebuilt), then loaded again.
 */
export function run(doc: Doc, deltas: Uint8Array[]): Run {
  let snapshot = A.save(doc)
  let stored: Uint8Array[] = []
  let rebuilds = 0
  let replica = backend.load(snapshot, [], new Uint8Array(16))
  const verdicts = deltas.map((delta) => {
    try {
      replica = backend.applyDelta(replica, delta)
      if (backend.rebuilt?.(replica) === true) {
        rebuilds++
        snapshot = backend.save(replica)
        stored = []
      } else stored.push(delta)
      return 'applied'
    } catch (err) {
      replica = backend.load(snapshot, stored, new Uint8Array(16))
      return err instanceof ConvergentError ? err.code : `threw ${String(err)}`
    }
  })
  // As after a restart: from what is stored.
  backend.dispose?.(replica)
  replica = backend.load(snapshot, stored, new Uint8Array(16))
  const state: Record<string, unknown> = A.toJS(replica)
  const pending = backend.hasPending(replica)
  let loads = 'loads'
  try {
    A.free(A.load(A.save(replica)))
  } catch (err) {
    loads = `does not load once saved: ${String(err instanceof Error ? err.message : err).slice(0, 90)}`
  }
  backend.dispose?.(replica)
  return { verdicts, value: JSON.stringify(state), state, loads, rebuilds, pending }
}

/** Changes `from` holds that `to` lacks (as anti-entropy sends them). */
export function changesSince(from: Doc, to: Doc): Uint8Array {
  return A.saveSince(
    from,
    A.getHeads(to).filter((h) => A.hasHeads(from, [h])),
  )
}

/** Every document's changes to every other (as batches), through `take`. */
export function exchangeAll(docs: readonly Doc[], take: (to: number, delta: Uint8Array) => void): void {
  for (let i = 0; i < docs.length; i++) {
    for (let j = 0; j < docs.length; j++) {
      const since = changesSince(docs[i]!, docs[j]!)
      if (i !== j && since.byteLength > 0) take(j, since)
    }
  }
}

/** A hostile and an honest change in all four deliveries: each alone in either order, and together in either order. */
export function inEveryOrder(base: Doc, hostile: Uint8Array, honest: Uint8Array): ReturnType<typeof run>[] {
  return [
    run(base, [hostile, honest]),
    run(base, [honest, hostile]),
    run(base, [backend.mergeDeltas([honest, hostile])]),
    run(base, [backend.mergeDeltas([hostile, honest])]),
  ]
}

/** `change` with its header edited (a new hash). */
export function edited(change: Uint8Array, header: Partial<A.DecodedChange>): Uint8Array {
  const { hash: _h, ...decoded } = A.decodeChange(change)
  return A.encodeChange({ ...decoded, ...header })
}

/** What applying `delta` to `doc` does: 'applied', or the error and whether the backend marked it as thrown before touching the document. */
export function outcome(doc: Doc, delta: Uint8Array): 'applied' | { message: string; untouched: boolean } {
  try {
    backend.applyDelta(doc, delta)
    return 'applied'
  } catch (err) {
    return { message: (err as Error).message, untouched: documentUntouched(err) }
  }
}
