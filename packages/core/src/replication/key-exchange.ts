import { sha256 } from '../hash.js'
import { bitmapToBuckets, bucketsToBitmap, ShareDigest } from '../personal/share-digest.js'
import { SubjectKeys } from '../personal/subject-keys.js'
import type { ReplicationContext } from './context.js'
import {
  decodeKeysOffer,
  decodeKeysRequest,
  decodeKeysResponse,
  encodeAck,
  encodeKeysOffer,
  encodeKeysRequest,
  encodeKeysResponse,
  invalid,
  MessageType,
  type MessageTypeValue,
} from './messages/index.js'
import { drop } from './receiver.js'

/**
 * Subject keys and forget tombstones between two replicas (personal fields; see
 * personal/subject-keys.ts). The requester sends a summary of what it would share with the
 * responder, and its bucket digests (personal/share-digest.ts); equal → one message. Else the
 * responder sends what it shares with the requester in the buckets that differ, in pages, and
 * the requester then offers what the responder did not list there. Keys go only to
 * peers that may read their collection (the cluster policy's read control; every peer without
 * a policy) and travel inside libp2p streams, which Noise encrypts; tombstones go to every member.
 */

/** Sends one request and returns the body of the expected answer (the round's budget and stats, or a plain request). */
export type Requester = (data: Uint8Array, expect: MessageTypeValue) => Promise<unknown>

/** The requester side: pull the peer's keys and tombstones, then offer it ours. */
export async function exchangeKeys(ctx: ReplicationContext, peer: string, request: Requester): Promise<void> {
  const keys = ctx.personal
  if (!keys.supported) return
  const listed = new Set<string>()
  const buckets = keys.bucketsFor(peer)
  let after: string | undefined
  // The buckets the responder pages through (undefined: all — a release before buckets).
  let differ: Uint8Array | undefined
  for (;;) {
    const req = after === undefined ? { summary: sha256(buckets), buckets } : { summary: null, after, ...(differ === undefined ? {} : { differ }) }
    const res = decodeKeysResponse(await request(encodeKeysRequest(req), MessageType.KeysResponse))
    if (res.same) return
    if (after === undefined) differ = res.differ
    for (const s of SubjectKeys.sortKeysOf(res.tombstones, res.keys)) listed.add(s)
    const { refused } = await keys.accept(peer, res.tombstones, res.keys)
    if (refused > 0)
      drop(ctx, peer, 'forbidden', `${refused} subject key(s) or tombstone(s) refused (forgotten subject, no read permission, or a bad signature)`)
    if (res.next === undefined) break
    if (after !== undefined && res.next <= after) throw invalid(`peer ${peer} answered a keys page without progress`)
    after = res.next
  }
  for (const page of keys.lacking(peer, listed, differ === undefined ? undefined : bitmapToBuckets(differ)))
    await request(encodeKeysOffer(page.tombstones, page.keys), MessageType.Ack)
}

/**
 * Whether a round's first roots request carried a keys summary that differs from ours (the
 * requester then runs the exchange; an in-sync round stays one message).
 */
export function keysDiffer(ctx: ReplicationContext, from: string, theirs: Uint8Array | undefined): boolean {
  if (theirs === undefined || !ctx.personal.supported) return false
  return !Buffer.from(ctx.personal.summaryFor(from)).equals(Buffer.from(theirs))
}

/** The responder side of KeysRequest. */
export function serveKeysRequest(ctx: ReplicationContext, from: string, body: unknown): Uint8Array {
  const req = decodeKeysRequest(body)
  const keys = ctx.personal
  if (!keys.supported) return encodeKeysResponse({ same: true, tombstones: [], keys: [] })
  let differ: Set<number> | undefined
  if (req.summary !== null && req.after === undefined) {
    const ours = keys.bucketsFor(from)
    if (Buffer.from(sha256(ours)).equals(Buffer.from(req.summary))) return encodeKeysResponse({ same: true, tombstones: [], keys: [] })
    if (req.buckets !== undefined) differ = ShareDigest.differing(ours, req.buckets)
  } else if (req.differ !== undefined) differ = bitmapToBuckets(req.differ)
  const page = keys.page(from, req.after, differ)
  return encodeKeysResponse({
    same: false,
    tombstones: page.tombstones,
    keys: page.keys,
    ...(page.next === undefined ? {} : { next: page.next }),
    ...(differ === undefined ? {} : { differ: bucketsToBitmap(differ) }),
  })
}

/** The responder side of KeysOffer: takes what it may (see SubjectKeys.accept). */
export async function serveKeysOffer(ctx: ReplicationContext, from: string, body: unknown): Promise<Uint8Array> {
  const offer = decodeKeysOffer(body)
  if (!ctx.personal.supported) return encodeAck(0)
  const { refused, taken } = await ctx.personal.accept(from, offer.tombstones, offer.keys)
  if (refused > 0) drop(ctx, from, 'forbidden', `${refused} subject key(s) or tombstone(s) refused (forgotten subject, no read permission, or a bad signature)`)
  return encodeAck(taken)
}
