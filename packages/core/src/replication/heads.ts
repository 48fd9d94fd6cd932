import type { Backend, ChangeMeta } from '../backend.js'
import type { Clock } from '../clock.js'
import type { CollectionState, Entities } from '../entities.js'
import { concatBytes } from '../hash.js'
import type { Logger } from '../logger.js'
import type { StoreOp, Store } from '../store.js'
import type { Access } from '../trust/access.js'
import { actorOwnedBy, isBoundActor } from '../trust/actor-binding.js'
import {
  checkStatement,
  claimOf,
  claimedAuthor,
  MAX_LEAVES,
  headKey,
  headPrefixOf,
  HeadVerifier,
  signHeads,
  unsignedKey,
  UNSIGNED_PREFIX,
  type HeadClaim,
  type HeadLeaf,
  type VerifiedHead,
} from '../trust/signed-heads.js'
import { VerifyBudget } from '../trust/verify-budget.js'
import { decodeBounded } from './messages/envelope.js'
import type { PushHeads } from './messages/index.js'
import { asArray, asBytes, asRecord, invalid } from './messages/fields.js'
import { encode } from 'cborg'

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
 *   `head/<collection> NUL <id> NUL <actor>`, in the batch of the change), to relay them.
 * - The author stores its own heads when it signs them (per push, gossiped or not).
 */
const HEADED_MAGIC = new Uint8Array([0x43, 0x56, 0x48, 0x01]) // 'CVH' 1
/** Heads one delta may carry: one per actor that wrote the entity (a process of a replica that wrote it). */
export const MAX_HEADS_PER_DELTA = 65_536

export function isHeaded(delta: Uint8Array): boolean {
  return delta.byteLength >= 4 && delta[0] === HEADED_MAGIC[0] && delta[1] === HEADED_MAGIC[1] && delta[2] === HEADED_MAGIC[2] && delta[3] === HEADED_MAGIC[3]
}

export function encodeHeaded(delta: Uint8Array, heads: readonly Uint8Array[]): Uint8Array {
  return concatBytes([HEADED_MAGIC, encode({ d: delta, h: heads })])
}

/** The delta and the head proofs of a headed delta; InvalidMessageError if it is malformed. */
export function decodeHeaded(bytes: Uint8Array): { delta: Uint8Array; heads: Uint8Array[] } {
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

/** Signature checks of heads not remembered, per peer and minute (see verifyAll). */
const MAX_VERIFIES_PER_MINUTE = 20_000

/** A head proof decoded, not verified (claimOf); undefined if it does not decode. */
function claimIn(record: Uint8Array): HeadClaim | undefined {
  try {
    return claimOf(record)
  } catch {
    return undefined
  }
}

/** What a receiver needs of a headed delta (see SignedHeads.needed). */
export type NeededHeads = Map<string, ChangeMeta> | 'all'

export class SignedHeads {
  readonly verifier: HeadVerifier
  /** Peers known to read headed deltas (they said so in a roots request or response). */
  private readonly readers = new Set<string>()
  private readonly failures = new VerifyBudget(10)
  private readonly verifies = new VerifyBudget(MAX_VERIFIES_PER_MINUTE)

  constructor(private readonly opts: { namespace: string; peerId: string; store: Store; entities: Entities; access: Access; clock: Clock; logger: Logger }) {
    this.verifier = new HeadVerifier(opts.namespace, (peer, data, signature) => opts.access.verifyBy(peer, data, signature))
  }

  markReader(peer: string): void {
    if (this.readers.size >= 10_000) this.readers.clear()
    this.readers.add(peer)
  }

  /** A peer that no longer says it reads heads (a downgrade): bare deltas again. */
  unmarkReader(peer: string): void {
    this.readers.delete(peer)
  }

  readsHeads(peer: string): boolean {
    return this.readers.has(peer)
  }

  /**
   * Which heads a peer at `theirVersion` needs with a delta from `doc` (synchronous: call it
   * while the entity is held): the newest change of each bound actor it lacks. 'all' without a
   * document at hand (the stored bytes are sent whole, with the heads of every actor in them).
   */
  needed(backend: Backend, doc: unknown, theirVersion: Uint8Array): NeededHeads {
    const history = backend.history
    if (history === undefined) return new Map()
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
    if (backend.history === undefined || !this.readsHeads(peer)) return delta
    // The actors concerned are known (from the document, or the delta's actor tables): one point
    // read each, rather than a scan of every head stored for the entity.
    let actors: string[]
    try {
      actors = needed === 'all' ? backend.history.actorsIn(delta).filter(isBoundActor) : [...needed.keys()]
    } catch {
      return delta // unreadable stored bytes: the peer refuses them whatever comes with them
    }
    const stored = await this.storedOf(collection, id, actors)
    const records: Uint8Array[] = []
    const own: HeadLeaf[] = []
    if (needed === 'all') {
      for (const { record } of stored.values()) records.push(record)
    } else {
      for (const [actor, change] of needed) {
        const have = stored.get(actor)
        if (have !== undefined && have.seq >= change.seq) records.push(have.record)
        else if (actorOwnedBy(actor, this.opts.peerId)) own.push({ id, actor, seq: change.seq, hash: change.hash })
        // Else a relay without the author's head: the peer refuses those changes (it never happens
        // to an honest replica, which stores the heads of all it applied).
      }
    }
    if (own.length > 0) {
      records.push(...(await this.signOwn(collection, own)).proofs)
    }
    return records.length === 0 ? delta : encodeHeaded(delta, records)
  }

  /**
   * Signs heads of this replica's own actors and stores them (in the next batch), with the
   * markers of the local changes they cover deleted in the same batch (feed seqs `done`).
   */
  async signOwn(
    collection: string,
    leaves: readonly HeadLeaf[],
    done: readonly number[] = [],
  ): Promise<Awaited<ReturnType<typeof signHeads>> & { stored: Promise<void> }> {
    const signed = await signHeads({ namespace: this.opts.namespace, collection, author: this.opts.peerId, time: this.opts.clock.now() }, leaves, (data) =>
      this.opts.access.signOwn(data),
    )
    const ops: StoreOp[] = signed.proofs.map((record, i) => ({ type: 'meta', key: headKey(collection, leaves[i]!.id, leaves[i]!.actor), bytes: record }))
    for (const seq of done) ops.push({ type: 'delMeta', key: unsignedKey(collection, seq) })
    // Not awaited by senders: a crash before it lands leaves the markers, signed again at the next open.
    const stored = this.opts.entities.addToTick(ops)
    stored.catch(() => undefined)
    return { ...signed, stored }
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
   * stored head at least as recent get one. Run at open, before replication starts; an entity
   * that cannot be read is left marked (tried again at the next open).
   */
  async recover(collections: ReadonlyMap<string, CollectionState>): Promise<number> {
    const store = this.opts.store
    if (store.metas === undefined) return 0
    const marked = new Map<string, Map<string, number[]>>()
    for await (const [key, value] of store.metas(UNSIGNED_PREFIX)) {
      const rest = key.slice(UNSIGNED_PREFIX.length)
      const nul = rest.lastIndexOf('\u0000')
      const collection = rest.slice(0, nul)
      const seq = Number(rest.slice(nul + 1))
      let ids = marked.get(collection)
      if (ids === undefined) marked.set(collection, (ids = new Map<string, number[]>()))
      const id = new TextDecoder().decode(value)
      ids.set(id, [...(ids.get(id) ?? []), seq])
    }
    let signed = 0
    for (const [collection, ids] of marked) {
      const col = collections.get(collection)
      const leaves: HeadLeaf[] = []
      const done: number[] = []
      for (const [id, seqs] of ids) {
        if (col === undefined || col.backend.history === undefined) {
          done.push(...seqs) // dropped since, or another backend: nothing to sign
          continue
        }
        try {
          const entity = await this.opts.entities.acquire(col, id)
          let own: Map<string, ChangeMeta>
          try {
            own = latestPerActor(col.backend.history.changesSince(entity.doc, new Uint8Array(0)).filter((c) => actorOwnedBy(c.actor, this.opts.peerId)))
          } finally {
            this.opts.entities.release(entity)
          }
          const stored = await this.stored(collection, id)
          for (const [actor, change] of own) if ((stored.get(actor)?.seq ?? 0) < change.seq) leaves.push({ id, ...change })
          done.push(...seqs)
        } catch (err) {
          this.opts.logger.warn(`could not sign the heads of '${id}' in '${collection}' (tried again at the next open): ${(err as Error).message}`, {
            collection,
          })
        }
      }
      for (let i = 0; i < leaves.length || (i === 0 && done.length > 0); i += MAX_LEAVES) {
        const chunk = leaves.slice(i, i + MAX_LEAVES)
        const last = i + MAX_LEAVES >= leaves.length
        if (chunk.length > 0) await (await this.signOwn(collection, chunk, last ? done : [])).stored
        else await this.opts.entities.addToTick(done.map((seq) => ({ type: 'delMeta', key: unsignedKey(collection, seq) })))
        signed += chunk.length
      }
    }
    return signed
  }

  /** The heads stored for an entity, as verified heads (this replica checked or made them on arrival; not checked again). */
  async storedVerified(collection: string, id: string): Promise<Map<string, VerifiedHead>> {
    const out = new Map<string, VerifiedHead>()
    for (const [actor, { record }] of await this.stored(collection, id)) {
      try {
        const claim = claimOf(record)
        out.set(actor, { ...claim.leaf, author: claimedAuthor(record), record })
      } catch {
        // A damaged head vouches for nothing.
      }
    }
    return out
  }

  /** The heads stored for some actors of an entity (see stored), one point read each. */
  private async storedOf(collection: string, id: string, actors: readonly string[]): Promise<Map<string, { seq: number; record: Uint8Array }>> {
    const out = new Map<string, { seq: number; record: Uint8Array }>()
    await Promise.all(
      actors.map(async (actor) => {
        try {
          const record = await this.opts.store.getMeta(headKey(collection, id, actor))
          // A damaged head is not relayed: the peer gets it from another replica.
          const claim = record === undefined ? undefined : claimIn(record)
          if (claim !== undefined) out.set(actor, { seq: claim.leaf.seq, record: record! })
        } catch (err) {
          this.opts.logger.warn(`could not read a signed head of '${id}' in '${collection}': ${(err as Error).message}`, { collection })
        }
      }),
    )
    return out
  }

  /** The heads stored for an entity, by actor: the leaf's seq and the proof (not verified again: this replica checked or made them). */
  async stored(collection: string, id: string): Promise<Map<string, { seq: number; record: Uint8Array }>> {
    const out = new Map<string, { seq: number; record: Uint8Array }>()
    const store = this.opts.store
    if (store.metas === undefined) return out
    const prefix = headPrefixOf(collection, id)
    try {
      for await (const [key, record] of store.metas(prefix)) {
        // A damaged head is not relayed: the peer gets it from another replica.
        const claim = claimIn(record)
        if (claim !== undefined) out.set(key.slice(prefix.length), { seq: claim.leaf.seq, record })
      }
    } catch (err) {
      this.opts.logger.warn(`could not read the signed heads of '${id}' in '${collection}': ${(err as Error).message}`, { collection })
    }
    return out
  }

  /**
   * Verifies head proofs `peer` sent with a delta for (collection, id): the newest per actor
   * (of `wanted` actors only, when the delta's changes are known), by actor — or the first
   * refusal. Heads of other actors, and older ones, are ignored (neither checked nor stored).
   * Bounded per peer: one whose heads failed 10 checks in a minute has the rest of that
   * minute's refused unchecked (honest peers fail none), and signature checks not remembered
   * are at most MAX_VERIFIES_PER_MINUTE per peer (a catch-up of a million entities needs ~16,000).
   */
  async verifyAll(
    records: readonly Uint8Array[],
    where: { collection: string; id: string },
    peer: string,
    wanted?: ReadonlySet<string>,
  ): Promise<{ heads: Map<string, VerifiedHead>; refused?: string; reason?: 'badSignature' | 'rateLimited' }> {
    const heads = new Map<string, VerifiedHead>()
    const now = this.opts.clock.now()
    if (!this.failures.has(peer, now)) return { heads, refused: `${peer}'s signed heads failed too many checks this minute`, reason: 'rateLimited' }
    const newest = new Map<string, { record: Uint8Array; claim: HeadClaim }>()
    for (const record of records) {
      const claim = claimIn(record)
      if (claim === undefined) {
        this.failures.take(peer, now)
        return { heads, refused: 'a malformed head proof', reason: 'badSignature' }
      }
      const { actor, seq } = claim.leaf
      if (wanted !== undefined && !wanted.has(actor)) continue
      const seen = newest.get(actor)
      if (seen === undefined || seq > seen.claim.leaf.seq) newest.set(actor, { record, claim })
    }
    const mayVerify = (): boolean => this.verifies.take(peer, now)
    for (const { record, claim } of newest.values()) {
      const checked = await this.verifier.check(record, where, mayVerify, claim)
      if ('refused' in checked) {
        if (checked.rateLimited === true) return { heads, refused: checked.refused, reason: 'rateLimited' }
        this.failures.take(peer, now)
        return { heads, refused: checked.refused, reason: 'badSignature' }
      }
      heads.set(checked.actor, checked)
    }
    return { heads }
  }
}

/**
 * A delta from `doc` for `peer` (at `theirVersion`, null: nothing) as it goes out: headed with
 * the heads it needs when the peer reads them (see SignedHeads.outgoing). What the peer needs is
 * taken from the document before the first await: call it while holding the entity.
 */
export function headedFor(
  ctx: { heads: SignedHeads | undefined },
  col: { name: string; backend: Backend },
  id: string,
  doc: unknown,
  theirVersion: Uint8Array | null,
  delta: Uint8Array,
  peer: string,
): Promise<Uint8Array> {
  const heads = ctx.heads
  if (heads === undefined || col.backend.history === undefined || !heads.readsHeads(peer)) return Promise.resolve(delta)
  const needed = heads.needed(col.backend, doc, theirVersion ?? new Uint8Array(0))
  return heads.outgoing(col.backend, col.name, id, delta, needed, peer)
}

/** An entity's whole state for `peer`, headed with every head stored for it (when the peer reads them). */
export function headedWhole(
  ctx: { heads: SignedHeads | undefined },
  col: { name: string; backend: Backend },
  id: string,
  delta: Uint8Array,
  peer: string,
): Promise<Uint8Array> {
  const heads = ctx.heads
  if (heads === undefined || col.backend.history === undefined || !heads.readsHeads(peer)) return Promise.resolve(delta)
  return heads.outgoing(col.backend, col.name, id, delta, 'all', peer)
}
