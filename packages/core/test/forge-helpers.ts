// Forged and dangling Yjs content, for attacks on divergence detection and gap rounds.
import * as Y from 'yjs'
import { expect } from 'chai'
import { yjsBackend } from '@convergent/yjs'
import type { Replica } from '../src/index.js'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { ctxOf } from './counter-helpers.js'

/**
 * Writes `{ text: 'MARKER-AAAA-<id>' }` at `a` and gives `b` the same operations (client, clock)
 * with 'BBBB' for 'AAAA' (rewriting the update bytes).
 */
export async function forge(a: Replica, b: Replica, id: string, collection = 'notes'): Promise<void> {
  await a.collection(collection, { backend: 'yjs' }).put(id, { text: `MARKER-AAAA-${id}` })
  const ctx = ctxOf(a)
  const entity = await ctx.entities.acquire(ctx.entities.collections.get(collection)!, id)
  let update: Uint8Array
  try {
    update = Y.encodeStateAsUpdate(entity.doc as Y.Doc)
  } finally {
    ctx.entities.release(entity)
  }
  const text = Buffer.from(update).toString('latin1')
  expect(text.split('MARKER-AAAA')).to.have.length(2)
  const forged = Buffer.from(text.replace('MARKER-AAAA', 'MARKER-BBBB'), 'latin1')
  b.collection(collection, { backend: 'yjs' })
  expect(await applyRemoteDelta(ctxOf(b), 'x', collection, 'yjs', id, forged)).to.equal('applied')
  expect(await b.collection(collection).get(id)).to.deep.equal({ text: `MARKER-BBBB-${id}` })
}

/**
 * A Yjs delta of entity content that waits for good: the second write of a throwaway document
 * (its actor made of `n`), whose first write no replica ever gets. (Not 0x80…: a ManualClock's
 * random() is 0.5, so a replica on one draws that actor.)
 */
export function danglingYjs(n: number): Uint8Array {
  const b = yjsBackend()
  const actor = new Uint8Array(16).fill(0x11)
  new DataView(actor.buffer).setUint32(0, n)
  const first = b.put(b.create(actor), { text: `first ${n}` })
  return b.put(first.doc, { text: `second ${n}` }).delta!
}
