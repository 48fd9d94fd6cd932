/**
 * Deltas that name ops on an old base (op-refs.ts reads the changes since it to judge them):
 * shared by history-reads.test.ts and its review.
 */
import * as A from '@automerge/automerge'

/** The actor of the old base's changes. */
export const WRITER = 'aa'.repeat(16)

/** A document with a list made first, then `n` changes elsewhere: an old base for list inserts. */
export function oldBase(n: number) {
  const handle = A.getBackend(A.init({ actor: WRITER }))
  const list = handle.putObject('_root', 'l', [])
  handle.insert(list, 0, 1, 'int')
  handle.commit(null, 0)
  const first = handle.getHeads()
  for (let i = 1; i <= n; i++) {
    handle.put('_root', 'n', i, 'int')
    handle.commit(null, 0)
  }
  const doc = A.load<Record<string, unknown>>(handle.save())
  handle.free()
  const elem = String(A.getBackend(doc).getAll(list, 0)[0]![2])
  const startOp = A.getBackend(doc).getChangeMetaByHash(first[0]!)!.maxOp + 1
  return { saved: A.save(doc), list, elem, first, startOp }
}

/**
 * An honest-shaped change of `by`: an insert after the list's first element, made on the old
 * base (or `after` another change, its ops starting past that change's one op).
 */
export function insertOnOldBase(base: ReturnType<typeof oldBase>, by: string, value: number, after?: Uint8Array): Uint8Array {
  return A.encodeChange({
    actor: by,
    author: null,
    seq: 1,
    startOp: after === undefined ? base.startOp : base.startOp + 1,
    time: 0,
    message: null,
    deps: after === undefined ? base.first : [A.decodeChange(after).hash],
    ops: [{ action: 'set', obj: base.list, elemId: base.elem, insert: true, value, datatype: 'int', pred: [] } as unknown as A.DecodedChange['ops'][number]],
  })
}

/**
 * D: a change of `dBy` on the old base (one map op, read-free); C: a change of `cBy` after D that
 * inserts after the list's first element (its judgment reads the changes since the base).
 */
export function queuedPair(base: ReturnType<typeof oldBase>, dBy: string, cBy: string): { D: Uint8Array; C: Uint8Array } {
  const D = A.encodeChange({
    actor: dBy,
    author: null,
    seq: 1,
    startOp: base.startOp,
    time: 0,
    message: null,
    deps: base.first,
    ops: [{ action: 'set', obj: '_root', key: 'x', value: 1, datatype: 'int', pred: [] }],
  })
  return { D, C: insertOnOldBase(base, cBy, 5, D) }
}
