import type { Backend, ChangeMeta } from '../backend.js'
import type { Clock } from '../clock.js'
import type { CollectionState, Entities } from '../entities.js'
import { StoreCorruptError } from '../errors.js'
import { metasPastDamage, type DamagedMeta } from '../meta-scan.js'
import { concatBytes } from '../hash.js'
import type { Logger } from '../logger.js'
import type { StoreOp, Store } from '../store.js'
import type { Access } from '../trust/access.js'
import { actorOwnedBy, isBoundActor } from '../trust/actor-binding.js'
import {
  checkStatement,
  claimOf,
  claimedHead,
  MAX_LEAVES,
  headKey,
  HEAD_PREFIX,
  headPrefixOf,
  heldHeadKey,
  HELD_SUFFIX,
  HeadVerifier,
  signHeads,
  UNSIGNED_PREFIX,
  decodeHeadProof,
  type HeadClaim,
  type HeadLeaf,
  type HeadProof,
  type VerifiedHead,
} from '../trust/signed-heads.js'
import { PeerBudget } from '../peer-budget.js'
import { Cursor } from '../trust/head-proof-reader.js'
import { decodeBounded } from './messages/envelope.js'
import type { PushHeads } from './messages/index.js'
import type { OutgoingHead } from './messages/head-table.js'
import { asArray, asBytes, asRecord, invalid } from './messages/fields.js'
import { cborHead } from './messages/cbor-write.js'

/**
 * Signed heads on the wire and on disk (trust/signed-heads.ts says what they prove).
 *
 * - A delta that anti-entropy (or a rights answer, or a holds repair) sends to a peer that reads
 *   them travels *headed*: `HEADED_MAGIC ‖ CBOR { d: delta, h: [head proof, …] }`, with the
 *   heads of every actor whose changes the peer lacks. Wrapping the delta bytes, rather than
 *   adding a field to each message, keeps every path — inline, in parts, uploads — the same.
 *   Only Automerge deltas are headed (they start with Automerge's own magic bytes, never these).
 * - A gossip push carries its author's heads for the push's entities beside the deltas.
 * - A receiver stores the heads that vouched for what it applied (meta records
 *   `head/<collection> NUL <id> NUL <actor>`, in the batch of the change), to relay them: per
 *   actor the newest, which may be the head of a change still waiting in its document (a push
 *   that overtook the one it depends on). Then it also keeps, in that batch, the newest head
 *   whose change the document holds (heldHeadKey), and sends both with its whole document or
 *   while changes wait in it: the delta of what it applied (waiting changes are not in it)
 *   reaches a peer that lacks them only with that one (the newest names a change the peer
 *   cannot hold yet, and it would wait for it every round until this relay's queue drains).
 * - The author stores its own heads when it signs them (per push, gossiped or not).
 */
const HEADED_MAGIC = new Uint8Array([0x43, 0x56, 0x48, 0x01]) // 'CVH' 1
/** Heads one delta may carry: one per actor that wrote the entity (a process of a replica that wrote it). */
export const MAX_HEADS_PER_DELTA = 65_536

export function isHeaded(delta: Uint8Array): boolean {
  return delta.byteLength >= 4 && delta[0] === HEADED_MAGIC[0] && delta[1] === HEADED_MAGIC[1] && delta[2] === HEADED_MAGIC[2] && delta[3] === HEADED_MAGIC[3]
}

/**
 * `HEADED_MAGIC ‖ CBOR { d: delta, h: heads }`, framed here rather than by cborg.encode (once per
 * entity a catch-up sends: ~1.3 µs against ~6 µs). The bytes are exactly cborg's — a map of
 * two one-letter keys in its order, byte strings and an array with definite lengths — and a
 * property test holds them to that (signed-heads.test.ts).
 */
export function encodeHeaded(delta: Uint8Array, heads: readonly Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = [HEADED_MAGIC, HEADED_D, cborHead(2, delta.byteLength), delta, HEADED_H, cborHead(4, heads.length)]
  for (const head of heads) parts.push(cborHead(2, head.byteLength), head)
  return concatBytes(parts)
}

/** The delta headed with these heads' records; the delta itself with none. */
export function withHeads(delta: Uint8Array, heads: readonly { record: Uint8Array }[]): Uint8Array {
  return heads.length === 0
    ? delta
    : encodeHeaded(
        delta,
        heads.map((h) => h.record),
      )
}

/** withHeads(delta, heads).byteLength, without making it. */
export function withHeadsLength(delta: Uint8Array, heads: readonly { record: Uint8Array }[]): number {
  if (heads.length === 0) return delta.byteLength
  let n = HEADED_MAGIC.byteLength + HEADED_D.byteLength + cborHead(2, delta.byteLength).byteLength + delta.byteLength
  n += HEADED_H.byteLength + cborHead(4, heads.length).byteLength
  for (const { record } of heads) n += cborHead(2, record.byteLength).byteLength + record.byteLength
  return n
}

/** `{ d:` and `h:` of a headed delta's map: a map of 2, then a text of one letter. */
const HEADED_D = new Uint8Array([0xa2, 0x61, 0x64])
const HEADED_H = new Uint8Array([0x61, 0x68])

/**
 * The delta and the head proofs of a headed delta; InvalidMessageError if it is malformed. As
 * encodeHeaded writes it, read by position with the delta and proofs as views of `bytes` (a
 * receiver of a catch-up reads one per entity: copies were an ArrayBuffer per proof and delta);
 * anything else through the general reader, which gives the same or the error.
 */
export function decodeHeaded(bytes: Uint8Array): { delta: Uint8Array; heads: Uint8Array[] } {
  const read = readHeaded(bytes)
  if (read !== undefined && isHeaded(read.delta)) throw invalid('a headed delta inside a headed delta')
  return read ?? decodeHeadedInGeneral(bytes)
}

/** encodeHeaded's exact bytes read by position (see decodeHeaded), or undefined. */
export function readHeaded(bytes: Uint8Array): { delta: Uint8Array; heads: Uint8Array[] } | undefined {
  const c = new Cursor(bytes)
  c.pos = HEADED_MAGIC.byteLength
  for (const b of HEADED_D) if (bytes[c.pos++] !== b) return undefined
  const delta = c.bytes(Number.MAX_SAFE_INTEGER)
  if (delta === undefined || !c.key(0x68)) return undefined // 'h'
  const n = c.arg(4)
  if (n < 0 || n > MAX_HEADS_PER_DELTA) return undefined
  const heads = new Array<Uint8Array>(n)
  for (let i = 0; i < n; i++) {
    const head = c.bytes(Number.MAX_SAFE_INTEGER)
    if (head === undefined) return undefined
    heads[i] = head
  }
  return c.done ? { delta, heads } : undefined
}

/** decodeHeaded through the general CBOR reader (exported for the equivalence test of readHeaded). */
export function decodeHeadedInGeneral(bytes: Uint8Array): { delta: Uint8Array; heads: Uint8Array[] } {
  const r = asRecord(decodeBounded(bytes.subarray(HEADED_MAGIC.byteLength), 6 + MAX_HEADS_PER_DELTA, 'headed delta'), 'headed delta')
  const delta = asBytes(r.d, 'headed delta bytes')
  if (isHeaded(delta)) throw invalid('a headed delta inside a headed delta')
  return { delta, heads: asArray(r.h, 'headed delta heads', MAX_HEADS_PER_DELTA).map((h, i) => asBytes(h, `head ${i}`)) }
}

/** The newest change of each actor among some changes. */
export function latestPerActor(changes: readonly ChangeMeta[]): Map<string, ChangeMeta> {
  const latest = new Map<string, ChangeMeta>()
  for (const c of changes) {
    const seen = latest.get(c.actor)
    if (seen === undefined || c.seq > seen.seq) latest.set(c.actor, c)
  }
  return latest
}

/** The leaves of `actors`' newest changes in a whole entity's bytes (loaded to read its history; none if they do not load). */
function ownLeaves(backend: Backend, id: string, whole: Uint8Array, actors: readonly string[]): HeadLeaf[] {
  let doc: unknown
  try {
    doc = backend.load(undefined, [whole], new Uint8Array(16))
  } catch {
    return []
  }
  try {
    const latest = latestPerActor(backend.history!.changesSince(doc, new Uint8Array(0)))
    return actors.flatMap((actor) => {
      const change = latest.get(actor)
      return change === undefined ? [] : [{ id, actor, seq: change.seq, hash: change.hash }]
    })
  } finally {
    backend.dispose?.(doc)
  }
}

/** Entities whose lost heads are asked of peers at most, and in how many rounds each (SignedHeads.wanted). */
const MAX_WANTED = 10_000
const MAX_HEAD_ASKS = 20

/** Meta records naming the entities whose lost heads are asked of peers, so that a restart does not forget them. */
const LOST_HEAD_PREFIX = 'lost-head/'
const lostHeadKey = (collection: string, id: string): string => `${LOST_HEAD_PREFIX}${collection}\u0000${id}`

/** Signature checks of heads not remembered, per peer and minute (see verifyAll). */
const MAX_VERIFIES_PER_MINUTE = 20_000

/** A head proof as it came, and decoded (not verified). */
interface Claimed {
  record: Uint8Array
  claim: HeadClaim
}

/** The newest two of an actor's heads by seq (one per seq: the first that came), after `next` came. */
function newestTwo(next: Claimed, first: Claimed | undefined, second: Claimed | undefined): [Claimed, Claimed | undefined] {
  const seq = next.claim.leaf.seq
  if (first === undefined) return [next, second]
  if (seq > first.claim.leaf.seq) return [next, first]
  if (seq < first.claim.leaf.seq && (second === undefined || seq > second.claim.leaf.seq)) return [first, next]
  return [first, second]
}

/** A head proof decoded, not verified (claimOf); undefined if it does not decode. */
function claimIn(record: Uint8Array): HeadClaim | undefined {
  try {
    return claimOf(record)
  } catch {
    return undefined
  }
}

/** A head stored here: its leaf, its record and that decoded, and the author its statement names. */
export interface StoredHead {
  leaf: HeadLeaf
  record: Uint8Array
  proof: HeadProof
  author: string
}

/** What a receiver needs of a headed delta (see SignedHeads.needed). */
export type NeededHeads = Map<string, ChangeMeta> | 'all'

/**
 * A verified head a sender sent with a delta (the newest of its actor), and the newest older one
 * of that actor it sent too, verified as well: a relay's held head (heldHeadKey), of a change it
 * holds, beside a newest one of a change waiting there. Either vouches, by the same rule (head-judge.ts).
 */
export type CarriedHead = VerifiedHead & { earlier?: VerifiedHead }

export class SignedHeads {
  readonly verifier: HeadVerifier
  /** Peers known to read headed deltas (they said so in a roots request or response), and whether they read head tables too. */
  private readonly readers = new Map<string, { compact: boolean }>()
  private readonly failures = new PeerBudget(10)
  private readonly verifies = new PeerBudget(MAX_VERIFIES_PER_MINUTE)
  /**
   * Collections that may hold held heads (heldHeadKey): every one until checkStored has scanned
   * all the heads stored (undefined), then those it met one in; and those one was stored in
   * since. A whole send (outgoingHeads with 'all': every entity of a catch-up) reads held heads
   * only there — a point read per actor of every entity sent, saved where none can be.
   */
  private heldFound: Set<string> | undefined
  private readonly heldStored = new Set<string>()

  constructor(private readonly opts: { namespace: string; peerId: string; store: Store; entities: Entities; access: Access; clock: Clock; logger: Logger }) {
    this.verifier = new HeadVerifier(opts.namespace, (peer, data, signature) => opts.access.verifyBy(peer, data, signature))
  }

  markReader(peer: string, compact = false): void {
    if (this.readers.size >= 10_000) this.readers.clear()
    this.readers.set(peer, { compact })
  }

  /** A peer that no longer says it reads heads (a downgrade): bare deltas again. */
  unmarkReader(peer: string): void {
    this.readers.delete(peer)
  }

  readsHeads(peer: string): boolean {
    return this.readers.has(peer)
  }

  /** The peer reads batches whose heads come in a table, each statement once (messages/head-table.ts). */
  readsHeadTables(peer: string): boolean {
    return this.readers.get(peer)?.compact === true
  }

  /**
   * Which heads a peer at `theirVersion` needs with a delta from `doc` (synchronous: call it
   * while the entity is held): the newest change of each bound actor it lacks. 'all' (the heads
   * of every actor in the bytes sent) while changes wait in `doc`; headsFor also asks for 'all'
   * without a document at hand (the stored bytes are sent whole).
   */
  needed(backend: Backend, doc: unknown, theirVersion: Uint8Array): NeededHeads {
    const history = backend.history
    if (history === undefined) return new Map()
    // Changes queued here for a missing dependency are not in changesSince, but a whole document
    // holds them (Automerge's save keeps the queue) and a peer that has their dependency applies
    // them: chosen from the applied changes alone, a queued change of an actor with none applied
    // went without its head, and the peer refused this honest relay as a forger (found by the
    // simulator). So the heads of every actor in the bytes sent go (heads of changes the peer
    // holds already are ignored there).
    if (backend.hasPending(doc)) return 'all'
    const latest = latestPerActor(history.changesSince(doc, theirVersion))
    for (const actor of [...latest.keys()]) if (!isBoundActor(actor)) latest.delete(actor)
    return latest
  }

  /**
   * The delta as it goes to `peer`: headed with the heads it needs, if the peer reads them and
   * the collection's backend has a history; else as it is. Heads this replica lacks for its
   * own actors (a crash between a write and its signing) are signed now.
   */
  async outgoing(backend: Backend, collection: string, id: string, delta: Uint8Array, needed: NeededHeads, peer: string): Promise<Uint8Array> {
    return withHeads(delta, await this.outgoingHeads(backend, collection, id, delta, needed, peer))
  }

  /** The heads that go with a delta to `peer` (see outgoing), decoded: none if it does not read them. */
  async outgoingHeads(backend: Backend, collection: string, id: string, delta: Uint8Array, needed: NeededHeads, peer: string): Promise<OutgoingHead[]> {
    if (backend.history === undefined || !this.readsHeads(peer)) return []
    // The actors concerned are known (from the document, or the delta's actor tables): one point
    // read each, rather than a scan of every head stored for the entity.
    let actors: string[]
    try {
      actors = needed === 'all' ? backend.history.actorsIn(delta).filter(isBoundActor) : [...needed.keys()]
    } catch {
      return [] // unreadable stored bytes: the peer refuses them whatever comes with them
    }
    // Decoded (stored), not sent as they lie: a record that does not decode, or is of another
    // entity or actor (a store without checksums, a record of another format), would make the
    // peer count this replica a forger (badSignature) and, after ten, refuse all its heads for a
    // minute. Left out, the peer lacks that head (and refuses those changes, as forbidden).
    // Held heads too, where the collection may hold one: with 'all' (changes wait here), and with
    // needed (none wait) as well — a queue can be emptied without its changes applying (a rebuild
    // that drops it: Backend.rebuilt), and then the stored newest head may name a change this
    // replica will never hold (a member's, waiting on one that does not exist): sent alone, a
    // peer lacking the actor's changes answered `later` to all of the entity, for good
    // (review-s33-waits HOLE 1).
    const [stored, held] = await Promise.all([
      this.stored(collection, id, actors),
      this.mayHoldHeld(collection) ? this.storedHeld(collection, id, actors) : new Map<string, StoredHead>(),
    ])
    const heads: OutgoingHead[] = []
    const own: HeadLeaf[] = []
    if (needed === 'all') {
      for (const [actor, { record, proof, leaf }] of stored) {
        heads.push({ record, proof })
        const beside = held.get(actor)
        if (beside !== undefined && beside.leaf.seq < leaf.seq) heads.push({ record: beside.record, proof: beside.proof })
      }
      // Our own actors without a stored head (a write whose push is being signed right now, or a
      // crash in between): signed now, from the entity's changes, or the peer would wait a round.
      const unsigned = actors.filter((actor) => !stored.has(actor) && actorOwnedBy(actor, this.opts.peerId))
      // Sent, not stored: the push of a later write may be storing a newer head of that actor meanwhile.
      const leaves = unsigned.length === 0 ? [] : ownLeaves(backend, id, delta, unsigned)
      if (leaves.length > 0) {
        for (const record of (await this.sign(collection, leaves)).proofs) heads.push({ record, proof: decodeHeadProof(record) })
      }
    } else {
      for (const [actor, change] of needed) {
        const have = stored.get(actor)
        if (have !== undefined && have.leaf.seq >= change.seq) {
          heads.push({ record: have.record, proof: have.proof })
          // The held head beside it, when it covers what the peer lacks too (its change is held here).
          const beside = held.get(actor)
          if (beside !== undefined && beside.leaf.seq >= change.seq && beside.leaf.seq < have.leaf.seq)
            heads.push({ record: beside.record, proof: beside.proof })
        } else if (actorOwnedBy(actor, this.opts.peerId)) own.push({ id, actor, seq: change.seq, hash: change.hash })
        // Else a relay without the author's head: the peer refuses those changes (it never happens
        // to an honest replica, which stores the heads of all it applied).
      }
    }
    if (own.length > 0) {
      for (const record of (await this.signOwn(collection, own)).proofs) heads.push({ record, proof: decodeHeadProof(record) })
    }
    return heads
  }

  /**
   * Signs heads of this replica's own actors and stores them (in the next batch), with the
   * markers of the local changes they cover (their meta keys: unsignedKey) deleted in the same batch.
   */
  async signOwn(
    collection: string,
    leaves: readonly HeadLeaf[],
    markers: readonly string[] = [],
  ): Promise<Awaited<ReturnType<typeof signHeads>> & { stored: Promise<void> }> {
    const signed = await this.sign(collection, leaves)
    const ops: StoreOp[] = signed.proofs.map((record, i) => ({ type: 'meta', key: headKey(collection, leaves[i]!.id, leaves[i]!.actor), bytes: record }))
    for (const key of markers) ops.push({ type: 'delMeta', key })
    // Not awaited by senders: a crash before it lands leaves the markers, signed again at the next open.
    const stored = this.opts.entities.addToTick(ops)
    stored.catch(() => undefined)
    return { ...signed, stored }
  }

  /** Heads of this replica's own actors, signed with its key (not stored). */
  private sign(collection: string, leaves: readonly HeadLeaf[]): ReturnType<typeof signHeads> {
    return signHeads({ namespace: this.opts.namespace, collection, author: this.opts.peerId, time: this.opts.clock.now() }, leaves, (data) =>
      this.opts.access.signOwn(data),
    )
  }

  /**
   * The heads a push carries for its entries (one statement over their leaves: checked once, not
   * entry by entry), per entry by actor (undefined: none) — or why they do not check out (the
   * deltas then wait for anti-entropy; `k` is outside the push's signature, so a relay may
   * have garbled it).
   */
  async verifyPush(
    collection: string,
    heads: PushHeads,
    ids: readonly string[],
    peer: string,
  ): Promise<(Map<string, VerifiedHead> | undefined)[] | { refused: string; reason: 'badSignature' | 'rateLimited' }> {
    const now = this.opts.clock.now()
    if (heads.leaves.length !== ids.length) return { refused: `push heads for ${heads.leaves.length} of ${ids.length} entries`, reason: 'badSignature' }
    if (!this.failures.has(peer, now)) return { refused: `${peer}'s signed heads failed too many checks this minute`, reason: 'rateLimited' }
    const present = heads.leaves.flatMap((leaf, entry) => (leaf === null ? [] : [{ leaf, entry }]))
    if (present.length === 0) return ids.map(() => undefined)
    const checked = await checkStatement(this.verifier, { ...heads, leaves: present.map((p) => p.leaf) }, { collection }, () => this.verifies.take(peer, now))
    if (!Array.isArray(checked)) {
      if (checked.rateLimited !== true) this.failures.take(peer, now)
      return { refused: checked.refused, reason: checked.rateLimited === true ? 'rateLimited' : 'badSignature' }
    }
    const out: (Map<string, VerifiedHead> | undefined)[] = ids.map(() => undefined)
    for (let i = 0; i < present.length; i++) {
      const head = checked[i]!
      const entry = present[i]!.entry
      if (head.id !== ids[entry]) {
        this.failures.take(peer, now)
        return { refused: `a push head of '${head.id}' for entry '${ids[entry]}'`, reason: 'badSignature' }
      }
      out[entry] = new Map([[head.actor, head]])
    }
    return out
  }

  /**
   * Signs what a crash left unsigned: local changes whose heads were not stored yet (their
   * markers, signed-heads.ts). Per entity, this replica's own actors whose newest change has no
   * stored head at least as recent get one. Run in the background after open; an entity that
   * cannot be read stays marked (tried again at the next open), and so do the markers after a
   * damaged one (the scan stops there). A marker that names nothing to sign is deleted.
   */
  async recover(collections: ReadonlyMap<string, CollectionState>): Promise<number> {
    const marked = await this.markers()
    let signed = 0
    for (const [collection, ids] of marked) {
      const col = collections.get(collection)
      const leaves: HeadLeaf[] = []
      const done: string[] = []
      for (const [id, keys] of ids) {
        if (col !== undefined && col.backend.history !== undefined) {
          try {
            const own = await this.ownHeadsMissing(col, id)
            leaves.push(...own)
          } catch (err) {
            this.opts.logger.warn(`could not sign the heads of '${id}' in '${collection}' (tried again at the next open): ${(err as Error).message}`, {
              collection,
            })
            continue
          }
        } // else dropped since, or another backend: nothing to sign
        done.push(...keys)
      }
      for (let i = 0; i < leaves.length; i += MAX_LEAVES) {
        const last = i + MAX_LEAVES >= leaves.length
        await (
          await this.signOwn(collection, leaves.slice(i, i + MAX_LEAVES), last ? done : [])
        ).stored
      }
      signed += leaves.length
      if (leaves.length === 0 && done.length > 0) await this.opts.entities.addToTick(done.map((key) => ({ type: 'delMeta', key })))
    }
    return signed
  }

  /** The markers of unsigned local changes: collection → entity id → marker keys (until a damaged one, if any). */
  private async markers(): Promise<Map<string, Map<string, string[]>>> {
    const marked = new Map<string, Map<string, string[]>>()
    const store = this.opts.store
    if (store.metas === undefined) return marked
    try {
      for await (const [key, value] of store.metas(UNSIGNED_PREFIX)) {
        const rest = key.slice(UNSIGNED_PREFIX.length)
        const collection = rest.slice(0, Math.max(0, rest.lastIndexOf('\u0000')))
        let ids = marked.get(collection)
        if (ids === undefined) marked.set(collection, (ids = new Map<string, string[]>()))
        const id = new TextDecoder().decode(value)
        ids.set(id, [...(ids.get(id) ?? []), key])
      }
    } catch (err) {
      this.opts.logger.warn(`could not read every marker of unsigned changes (the rest is tried at the next open): ${(err as Error).message}`, {})
    }
    return marked
  }

  /** Heads of this replica's own actors in an entity whose newest change has no stored head as recent. */
  private async ownHeadsMissing(col: CollectionState, id: string): Promise<HeadLeaf[]> {
    const entity = await this.opts.entities.acquire(col, id)
    let own: Map<string, ChangeMeta>
    try {
      own = latestPerActor(col.backend.history!.changesSince(entity.doc, new Uint8Array(0)).filter((c) => actorOwnedBy(c.actor, this.opts.peerId)))
    } finally {
      this.opts.entities.release(entity)
    }
    const stored = await this.stored(col.name, id, [...own.keys()])
    return [...own].filter(([actor, change]) => (stored.get(actor)?.leaf.seq ?? 0) < change.seq).map(([, change]) => ({ id, ...change }))
  }

  /** The heads stored for an entity, as verified heads (this replica checked or made them on arrival; not checked again). */
  async storedVerified(collection: string, id: string): Promise<Map<string, VerifiedHead>> {
    const out = new Map<string, VerifiedHead>()
    for (const [actor, { leaf, record, author }] of await this.stored(collection, id)) out.set(actor, { ...leaf, author, record })
    return out
  }

  /**
   * The heads stored for an entity, by actor — of `actors` only (one point read each), or of
   * every actor (a scan). A record that does not decode, is not the head its key names (another
   * entity's or actor's), or fails the store's check, is left out (the last logged): it is not
   * relayed, the peer gets that head from another replica.
   */
  async stored(collection: string, id: string, actors?: readonly string[]): Promise<Map<string, StoredHead>> {
    return this.decoded(id, await this.records(collection, id, actors))
  }

  /** The held heads (heldHeadKey) stored for `actors` of an entity, by actor (one point read each; checked as in stored). */
  async storedHeld(collection: string, id: string, actors: readonly string[]): Promise<Map<string, StoredHead>> {
    return this.decoded(id, await this.records(collection, id, actors, heldHeadKey))
  }

  /** The held heads stored for `actors` of an entity, as verified heads (see storedVerified). */
  async heldVerified(collection: string, id: string, actors: readonly string[]): Promise<Map<string, VerifiedHead>> {
    const out = new Map<string, VerifiedHead>()
    if (actors.length === 0) return out
    for (const [actor, { leaf, record, author }] of await this.storedHeld(collection, id, actors)) out.set(actor, { ...leaf, author, record })
    return out
  }

  /** Head records of entity `id` by actor, decoded: one that does not decode, or is not the head its key names, is left out. */
  private decoded(id: string, records: ReadonlyMap<string, Uint8Array>): Map<string, StoredHead> {
    const out = new Map<string, StoredHead>()
    for (const [actor, record] of records) {
      try {
        const claimed = claimedHead(record)
        // Undecodable, or not the head its key names: vouches for nothing.
        if (claimed.leaf.id === id && claimed.leaf.actor === actor) out.set(actor, { ...claimed, record })
      } catch {
        // Undecodable: vouches for nothing.
      }
    }
    return out
  }

  /**
   * The head records stored for an entity, by actor, as stored (see stored). One that fails the
   * store's check is left out and handed to lostHead; the others are read all the same.
   */
  private async records(collection: string, id: string, actors?: readonly string[], keyOf = headKey): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>()
    const store = this.opts.store
    try {
      if (actors !== undefined) {
        const read = await Promise.allSettled(actors.map((actor) => store.getMeta(keyOf(collection, id, actor))))
        for (const [i, r] of read.entries()) {
          if (r.status === 'fulfilled') {
            if (r.value !== undefined) out.set(actors[i]!, r.value)
          } else if (r.reason instanceof StoreCorruptError) await this.lostHead(r.reason)
          else throw r.reason
        }
      } else if (store.metas !== undefined) {
        const prefix = headPrefixOf(collection, id)
        // Held heads (heldHeadKey) share the prefix: only the newest heads are scanned for.
        await this.scanHeads(prefix, (key, record) => {
          if (!key.endsWith(HELD_SUFFIX)) out.set(key.slice(prefix.length), record)
        })
      }
    } catch (err) {
      this.opts.logger.warn(`could not read the signed heads of '${id}' in '${collection}': ${(err as Error).message}`, { collection })
    }
    return out
  }

  /**
   * Every head record under `prefix`, in key order; one that fails the store's check is handed
   * to lostHead (moved aside) and the scan goes on after it (metasPastDamage).
   */
  private async scanHeads(prefix: string, each: (key: string, record: Uint8Array) => void, stop?: AbortSignal): Promise<void> {
    for await (const [key, record] of metasPastDamage(this.opts.store, prefix, (err, removable) => (removable ? this.lostHead(err) : Promise.resolve()))) {
      if (stop?.aborted === true) return
      each(key, record)
    }
  }

  /**
   * Checks every signed head stored here (a scan: ~O(entities × actors that wrote them)), so that
   * a damaged one is found while the peers that can send it again may still be around, rather
   * than when a late joiner that reaches only this replica asks for it. The number found.
   */
  async checkStored(stop?: AbortSignal): Promise<number> {
    if (this.opts.store.metas === undefined) return 0
    await this.loadWanted()
    const before = this.lost
    const found = new Set<string>()
    await this.scanHeads(
      HEAD_PREFIX,
      (key) => {
        if (key.endsWith(HELD_SUFFIX)) found.add(key.slice(HEAD_PREFIX.length, key.indexOf('\u0000', HEAD_PREFIX.length)))
      },
      stop,
    )
    if (stop?.aborted !== true) this.heldFound = found
    return this.lost - before
  }

  /** Whether `collection` may hold held heads (see heldFound). */
  mayHoldHeld(collection: string): boolean {
    return this.heldFound === undefined || this.heldFound.has(collection) || this.heldStored.has(collection)
  }

  /** A held head goes into `collection` (called before its batch is written). */
  storingHeld(collection: string): void {
    this.heldStored.add(collection)
  }

  /** Damaged head records met (see lostHead). */
  private lost = 0

  /**
   * Entities whose head of another author was lost here (lostHead), by collection, with the
   * rounds that asked for them: each round asks the peer for them whole (sync-client.ts,
   * refetchHeads), and the heads that delta brings for actors without a stored head are stored
   * although the document does not change (apply.ts). Asked in at most MAX_HEAD_ASKS rounds (of
   * this run); kept across restarts as meta records (lostHeadKey); at most MAX_WANTED.
   */
  private readonly wanted = new Map<string, Map<string, number>>()

  /** The entities of `collection` whose lost heads to ask a peer for now (each ask counted; given up after MAX_HEAD_ASKS). */
  headsWanted(collection: string): string[] {
    const ids = this.wanted.get(collection)
    if (ids === undefined) return []
    for (const [id, asked] of ids) {
      if (asked < MAX_HEAD_ASKS) {
        ids.set(id, asked + 1)
        continue
      }
      this.unwant(collection, id)
      this.opts.logger.warn(
        `gave up asking peers for the lost signed heads of '${id}' in '${collection}' (${MAX_HEAD_ASKS} rounds): a peer that lacks those changes takes them from another replica`,
        {
          collection,
          entity: id,
        },
      )
    }
    return [...ids.keys()]
  }

  /** Asks peers for the lost heads of (collection, id), also after a restart (a meta record). */
  private want(collection: string, id: string): void {
    if ([...this.wanted.values()].reduce((n, ids) => n + ids.size, 0) >= MAX_WANTED) this.wanted.clear()
    this.wanted.set(collection, (this.wanted.get(collection) ?? new Map<string, number>()).set(id, 0))
    this.opts.entities.addToTick([{ type: 'meta', key: lostHeadKey(collection, id), bytes: new Uint8Array(0) }]).catch(() => undefined)
  }

  private unwant(collection: string, id: string): void {
    this.wanted.get(collection)?.delete(id)
    this.opts.entities.addToTick([{ type: 'delMeta', key: lostHeadKey(collection, id) }]).catch(() => undefined)
  }

  /**
   * The entities a previous run was still asking peers for (their meta records). A damaged one
   * is moved aside, counted and logged; one that names no entity held here (garbage that passes
   * the check: no id, an empty or overlong one, a collection not held) is deleted — asked of a
   * peer, an id it refuses spoiled the ask of every other entity of the collection (review3-damaged-disk).
   */
  private async loadWanted(): Promise<void> {
    const damaged: DamagedMeta = async (err, removable) => {
      this.opts.entities.corruptRecords++
      this.opts.logger.error(
        `${err.message} (a marker of lost signed heads still asked of peers: ${removable ? 'moved aside' : 'left as it is (the store is opened read-only)'}; a peer that lacks the changes of the entity it named takes them from a replica that holds its heads, not from here)`,
        { code: err.code },
      )
      if (removable) await this.opts.store.quarantine(err.record)
    }
    for await (const [key] of metasPastDamage(this.opts.store, LOST_HEAD_PREFIX, damaged)) {
      const parts = key.slice(LOST_HEAD_PREFIX.length).split('\u0000')
      const [collection, id] = parts
      if (parts.length !== 2 || !(await this.heldHere(collection, id))) {
        this.opts.entities.addToTick([{ type: 'delMeta', key }]).catch(() => undefined)
        continue
      }
      if ([...this.wanted.values()].reduce((n, ids) => n + ids.size, 0) >= MAX_WANTED) break
      this.wanted.set(collection!, (this.wanted.get(collection!) ?? new Map<string, number>()).set(id!, 0))
    }
  }

  /**
   * Whether (collection, id) names an entity held here: only those have lost heads to ask peers
   * for (lostHead keeps the entity). An unreadable entity head counts as not held (that entity
   * is fetched again whole, with its heads).
   */
  private async heldHere(collection: string | undefined, id: string | undefined): Promise<boolean> {
    if (collection === undefined || id === undefined || !this.opts.entities.collections.has(collection)) return false
    try {
      return (await this.opts.store.getHead(collection, id)) !== undefined
    } catch {
      return false
    }
  }

  wantsHeads(collection: string, id: string): boolean {
    return this.wanted.get(collection)?.has(id) === true
  }

  /** Stores the verified heads a delta brought for an entity whose heads were lost here, of actors with no head stored. */
  keepHeads(collection: string, id: string, heads: readonly VerifiedHead[]): void {
    if (heads.length === 0) return
    void (async () => {
      const have = await this.stored(
        collection,
        id,
        heads.map((h) => h.actor),
      )
      const ops: StoreOp[] = heads.filter((h) => !have.has(h.actor)).map((h) => ({ type: 'meta', key: headKey(collection, id, h.actor), bytes: h.record }))
      if (ops.length === 0) return
      await this.opts.entities.addToTick(ops)
      this.unwant(collection, id)
      this.opts.logger.warn(`stored ${ops.length} signed head(s) of '${id}' in '${collection}' again, from a peer (one was lost here)`, {
        collection,
        entity: id,
      })
    })().catch(() => undefined)
  }

  /**
   * A stored head failed the store's check: moved aside, counted and logged. The head of an
   * actor of this replica's is signed again when next needed (outgoingHeads). Another author's
   * cannot be: it is asked of peers (wanted); until one sends it, a peer that lacks those changes
   * takes them from a replica that holds the head, not from here (review-damaged-disk HOLE 8, 8b).
   * The entity is kept: dropping it to fetch it again with its heads lost this replica's own
   * writes that no peer held yet (review2-damaged-disk HOLE 3). A held head (heldHeadKey) is
   * not asked of peers: no delta brings one back (keepHeads stores an actor's head only where
   * none is stored, and the newest still is), so the ask refetched the entity whole for
   * MAX_HEAD_ASKS rounds for nothing (review-s31 HOLE 2).
   */
  private async lostHead(err: StoreCorruptError): Promise<void> {
    this.lost++
    const key = err.record.key
    // head/<collection>\0<id>\0<actor>[\0held]; a damaged key may not say (then only moved aside).
    const [collection, id, actor] = key.startsWith(HEAD_PREFIX) ? key.slice(HEAD_PREFIX.length).split('\u0000') : []
    const held = key.endsWith(HELD_SUFFIX)
    const own = !held && actor !== undefined && actorOwnedBy(actor, this.opts.peerId)
    const then = held
      ? `while changes of that actor wait here, a peer that lacks those applied${id !== undefined ? ` of '${id}'` : ''} takes them from another replica, not from here, until one of them is released or a later head of the actor is stored`
      : own
        ? 'this replica signs its own head again'
        : `a peer that lacks that author's changes${id !== undefined ? ` of '${id}'` : ''} takes them from a replica that holds its head, not from here, until a peer sends it again`
    this.opts.logger.error(`${err.message} (the ${held ? 'held ' : ''}signed head ${JSON.stringify(key)}: moved aside; ${then})`, {
      code: err.code,
      ...(collection !== undefined ? { collection } : {}),
      ...(id !== undefined ? { entity: id } : {}),
    })
    await this.opts.store.quarantine(err.record)
    this.opts.entities.corruptRecords++
    // Not for a key that names no entity held here (moved on disk): asked of a peer, an id it
    // refuses spoils the ask of every other entity of the collection.
    if (!own && !held && (await this.heldHere(collection, id))) this.want(collection!, id!)
  }

  /**
   * Verifies head proofs `peer` sent with a delta for (collection, id): the newest per actor
   * (of `wanted` actors only, when the delta's changes are known), by actor, each with the
   * newest older one of its actor if one came too (CarriedHead.earlier: a relay's held head) —
   * or the first refusal. Heads of other actors, and older ones still, are ignored (neither
   * checked nor stored).
   * Bounded per peer: one whose heads failed 10 checks in a minute has the rest of that
   * minute's refused unchecked (honest peers fail none), and signature checks not remembered
   * are at most MAX_VERIFIES_PER_MINUTE per peer (a catch-up of a million entities needs ~16,000).
   */
  async verifyAll(
    records: readonly Uint8Array[],
    where: { collection: string; id: string },
    peer: string,
    wanted?: ReadonlySet<string>,
  ): Promise<{ heads: Map<string, CarriedHead>; refused?: string; reason?: 'badSignature' | 'rateLimited' }> {
    const heads = new Map<string, CarriedHead>()
    const now = this.opts.clock.now()
    if (!this.failures.has(peer, now)) return { heads, refused: `${peer}'s signed heads failed too many checks this minute`, reason: 'rateLimited' }
    const newest = new Map<string, Claimed>()
    const earlier = new Map<string, Claimed>() // the newest below each actor's newest
    for (const record of records) {
      const claim = claimIn(record)
      if (claim === undefined) {
        this.failures.take(peer, now)
        return { heads, refused: 'a malformed head proof', reason: 'badSignature' }
      }
      const { actor } = claim.leaf
      if (wanted !== undefined && !wanted.has(actor)) continue
      const [first, second] = newestTwo({ record, claim }, newest.get(actor), earlier.get(actor))
      newest.set(actor, first)
      if (second !== undefined) earlier.set(actor, second)
    }
    const mayVerify = (): boolean => this.verifies.take(peer, now)
    const verify = async ({ record, claim }: Claimed): Promise<VerifiedHead | { refused: string; reason: 'badSignature' | 'rateLimited' }> => {
      const checked = await this.verifier.check(record, where, mayVerify, claim)
      if (!('refused' in checked)) return checked
      if (checked.rateLimited === true) return { refused: checked.refused, reason: 'rateLimited' }
      this.failures.take(peer, now)
      return { refused: checked.refused, reason: 'badSignature' }
    }
    for (const [actor, claimed] of newest) {
      const head = await verify(claimed)
      if ('refused' in head) return { heads, ...head }
      const older = earlier.get(actor)
      const before = older === undefined ? undefined : await verify(older)
      if (before !== undefined && 'refused' in before) return { heads, ...before }
      heads.set(head.actor, before === undefined ? head : { ...head, earlier: before })
    }
    return { heads }
  }
}

/**
 * A delta as it goes out to `peer`: headed with the heads it needs when it reads them (see
 * SignedHeads.outgoing) — from `doc`, for a peer at `theirVersion` (null: nothing; taken from the
 * document before the first await: call it while holding the entity), or 'whole' for an entity's
 * stored bytes sent whole (the heads of every actor in them).
 */
export async function headed(...args: Parameters<typeof headsFor>): Promise<Uint8Array> {
  const [, , , delta] = args
  return withHeads(delta, await headsFor(...args))
}

/** The heads `headed` would put around a delta, decoded (for a batch that carries them in a table). */
export function headsFor(
  ctx: { heads: SignedHeads | undefined },
  col: { name: string; backend: Backend },
  id: string,
  delta: Uint8Array,
  peer: string,
  from: { doc: unknown; theirVersion: Uint8Array | null } | 'whole',
): Promise<OutgoingHead[]> {
  const heads = ctx.heads
  if (heads === undefined || col.backend.history === undefined || !heads.readsHeads(peer)) return Promise.resolve([])
  const needed = from === 'whole' ? 'all' : heads.needed(col.backend, from.doc, from.theirVersion ?? new Uint8Array(0))
  return heads.outgoingHeads(col.backend, col.name, id, delta, needed, peer)
}
