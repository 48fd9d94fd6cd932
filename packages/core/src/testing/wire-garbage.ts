// Bad input a peer can put on a gossip topic, shared by the loopback and the libp2p replication
// tests: each case, the drop reason it must be counted under, and the check that it changed
// nothing. The collection is 'p' (Yjs); the receiver's maxMessageBytes is GARBAGE_LIMIT.
import assert from 'node:assert/strict'
import type { Collection } from '../collection.js'
import { encodeMessage, MessageType } from '../replication/messages/index.js'

export const GARBAGE_LIMIT = 64 * 1024

function unknownVersion(): Uint8Array {
  const m = encodeMessage(MessageType.Push, { c: 'p', b: 'yjs', o: 'x', s: 1, e: [] })
  m[1] = 99
  return m
}

export const GARBAGE_CASES: [what: string, bytes: () => Uint8Array, reason: string][] = [
  ['garbage bytes', () => new Uint8Array([1, 2, 3, 4, 5, 6, 7]), 'malformed'],
  [
    'a truncated envelope',
    () => encodeMessage(MessageType.Push, { c: 'p', b: 'yjs', o: 'x', s: 1, e: [['k', new Uint8Array(40)]] }).subarray(0, 20),
    'malformed',
  ],
  ['an unknown envelope version', unknownVersion, 'unsupportedVersion'],
  ['an oversized message', () => new Uint8Array(GARBAGE_LIMIT + 1), 'tooLarge'],
  [
    'a delta naming an unknown backend',
    () => encodeMessage(MessageType.Push, { c: 'p', b: 'json-crdt', o: 'x', s: 1, e: [['k', new Uint8Array([1])]] }),
    'unknownBackend',
  ],
  [
    'a delta that fails to apply',
    () => encodeMessage(MessageType.Push, { c: 'p', b: 'yjs', o: 'x', s: 1, e: [['k', new Uint8Array([0, 9, 9, 9, 200, 1, 7])]] }),
    'invalidDelta',
  ],
  [
    'a delta for a collection of another backend',
    () => encodeMessage(MessageType.Push, { c: 'p', b: 'automerge', o: 'x', s: 1, e: [['k', new Uint8Array([1, 2])]] }),
    'backendMismatch',
  ],
  ['a wrong message type on a gossip topic', () => encodeMessage(MessageType.Ack, { n: 1 }), 'malformed'],
]

/** The collection still holds only { k: { v: 1 } } with one feed entry, and still takes writes. */
export async function expectUntouchedAndServing(col: Collection<Record<string, unknown>>): Promise<void> {
  assert.deepEqual(await col.get('k'), { v: 1 })
  let feed = 0
  for await (const _ of col.changes()) feed++
  assert.equal(feed, 1)
  await col.put('k2', { v: 2 })
  assert.deepEqual(await col.get('k2'), { v: 2 })
}
