import { encode } from 'cborg'
import { bytesEqual, concatBytes, fromHex, latin1, toHex } from '../hash.js'
import { bytesLength, headLength, writeBytes, writeHead, writeKey } from '../replication/messages/cbor-write.js'
import { decodeBounded } from '../replication/messages/envelope.js'
import { asArray, asBytes, asHash, asInt, asRecord, asSizedBytes, asString, invalid } from '../replication/messages/fields.js'
import { actorOwnedBy, BOUND_ACTOR_BYTES } from './actor-binding.js'
import { MAX_SIGNATURE_BYTES } from './signed-push.js'
import { readHeadLeaf, readHeadProof } from './head-proof-reader.js'
import { leafHash, merkleTree, verifyInclusion } from './merkle.js'

/**
 * Signed heads (issue #13): what lets a change be relayed by anyone — anti-entropy, a late
 * joiner's catch-up, gossip — and still be known as its author's.
 *
 * In a cluster, a replica's Automerge changes are made under actors bound to its peer id
 * (actor-binding.ts). Per push (one tick's local changes of one collection), the author signs a
 * small statement: namespace, collection, itself, the time, and the Merkle root (merkle.ts)
 * over one leaf per entity — (id, actor, seq, hash of that actor's latest change). A head
 * proof is one leaf with its inclusion path, the statement and the signature: ~0.5 KB,
 * whatever the push held. Automerge's hash chain and its one-change-per-(actor, seq) rule
 * make one head enough for every earlier change of that actor: a document that holds the
 * head's change holds exactly the author's changes 1…seq of that actor, and no forgery of them.
 */

const SIGNING_CONTEXT = new TextEncoder().encode('convergent signed heads v1\n')
/** A statement's leaves (a push holds at most 1,024 entries; local batches the same). */
export const MAX_LEAVES = 4096
const MAX_PATH = 16

/** One entity's head as its author signs it. */
export interface HeadLeaf {
  id: string
  /** The bound actor (hex, as Automerge spells it). */
  actor: string
  seq: number
  /** The SHA-256 of the actor's change `seq` (hex, an Automerge change hash). */
  hash: string
}

/** What an author signs: the Merkle root over its leaves. */
export interface HeadStatement {
  namespace: string
  collection: string
  author: string
  /** When it was signed (the author's clock, ms): for audits, not trusted. */
  time: number
  root: Uint8Array
  /** How many leaves the tree has. */
  count: number
}

/** A head with what proves it: the leaf, its inclusion path, the statement and its signature. */
export interface HeadProof {
  statement: Uint8Array
  signature: Uint8Array
  leaf: Uint8Array
  index: number
  path: Uint8Array[]
}

/** A head proof that checked out, with what it proves. */
export interface VerifiedHead extends HeadLeaf {
  author: string
  /** The proof's encoding (stored, and relayed as it came). */
  record: Uint8Array
}

export function encodeLeaf(l: HeadLeaf): Uint8Array {
  return encode([l.id, fromHex(l.actor), l.seq, fromHex(l.hash)])
}

function decodeLeaf(bytes: Uint8Array): HeadLeaf {
  return readHeadLeaf(bytes, BOUND_ACTOR_BYTES, MAX_ID_BYTES) ?? decodeLeafInGeneral(bytes)
}

/** An entity id's bytes at most (asString's default). */
const MAX_ID_BYTES = 1024

/** decodeLeaf through the general CBOR reader (exported for the equivalence test of readHeadLeaf). */
export function decodeLeafInGeneral(bytes: Uint8Array): HeadLeaf {
  const t = asArray(decodeBounded(bytes, 5, 'head leaf'), 'head leaf', 4)
  return {
    id: asString(t[0], 'head leaf id'),
    actor: toHex(asSizedBytes(t[1], BOUND_ACTOR_BYTES, 'head leaf actor')),
    seq: asInt(t[2], 'head leaf seq', 1),
    hash: toHex(asHash(t[3], 'head leaf hash')),
  }
}

export function encodeStatement(s: HeadStatement): Uint8Array {
  return encode({ n: s.namespace, c: s.collection, a: s.author, t: s.time, r: s.root, k: s.count })
}

/** A statement's bytes decoded, not checked (InvalidMessageError if they do not decode). */
export function decodeStatement(bytes: Uint8Array): HeadStatement {
  const r = asRecord(decodeBounded(bytes, 13, 'head statement'), 'head statement')
  return {
    namespace: asString(r.n, 'head statement namespace'),
    collection: asString(r.c, 'head statement collection'),
    author: asString(r.a, 'head statement author', 256),
    time: asInt(r.t, 'head statement time'),
    root: asHash(r.r, 'head statement root'),
    count: asInt(r.k, 'head statement count', 1, MAX_LEAVES),
  }
}

/**
 * `CBOR { g: signature, i: index, l: leaf, p: path, s: statement }`, framed here (once per
 * entity a statement signs and per head a catch-up receives: ~1.7 µs against ~5.3 µs for
 * cborg.encode, a micro loop of 200,000 ~0.5 KB proofs). Exactly cborg's bytes — its key order, definite lengths, the shortest heads —
 * which a property test holds it to (signed-heads.test.ts).
 */
export function encodeHeadProof(p: HeadProof): Uint8Array {
  let size = 1 + 5 * 2 + bytesLength(p.signature) + headLength(p.index) + bytesLength(p.leaf) + headLength(p.path.length) + bytesLength(p.statement)
  for (const hash of p.path) size += bytesLength(hash)
  const out = new Uint8Array(size)
  out[0] = 0xa5 // a map of five
  let pos = writeBytes(out, writeKey(out, 1, 'g'), p.signature)
  pos = writeHead(out, writeKey(out, pos, 'i'), 0, p.index)
  pos = writeBytes(out, writeKey(out, pos, 'l'), p.leaf)
  pos = writeHead(out, writeKey(out, pos, 'p'), 4, p.path.length)
  for (const hash of p.path) pos = writeBytes(out, pos, hash)
  writeBytes(out, writeKey(out, pos, 's'), p.statement)
  return out
}

/** A head proof decoded (InvalidMessageError if it does not), its byte strings views of `bytes` where it is as encodeHeadProof writes it. */
export function decodeHeadProof(bytes: Uint8Array): HeadProof {
  return readHeadProof(bytes, PROOF_BOUNDS) ?? decodeHeadProofInGeneral(bytes)
}

const PROOF_BOUNDS = { maxSignature: MAX_SIGNATURE_BYTES, maxIndex: MAX_LEAVES - 1, maxPath: MAX_PATH }

/** decodeHeadProof through the general CBOR reader (exported for the equivalence test of readHeadProof). */
export function decodeHeadProofInGeneral(bytes: Uint8Array): HeadProof {
  const r = asRecord(decodeBounded(bytes, 11 + MAX_PATH, 'head proof'), 'head proof')
  const signature = asBytes(r.g, 'head proof signature')
  if (signature.byteLength > MAX_SIGNATURE_BYTES) throw invalid(`a head signature of ${signature.byteLength} bytes`)
  return {
    statement: asBytes(r.s, 'head statement'),
    signature,
    leaf: asBytes(r.l, 'head leaf'),
    index: asInt(r.i, 'head leaf index', 0, MAX_LEAVES - 1),
    path: asArray(r.p, 'head path', MAX_PATH).map((h, i) => asHash(h, `head path ${i}`)),
  }
}

/** A head proof decoded and the leaf it claims, not checked (to pick which proofs are worth a verify). */
export interface HeadClaim {
  proof: HeadProof
  leaf: HeadLeaf
}

/** The statement a head proof names, decoded, not checked (throws if it does not decode). */
export function claimedStatement(record: Uint8Array): HeadStatement {
  return decodeStatement(decodeHeadProof(record).statement)
}

/** The claim of a head proof (throws an InvalidMessageError if it does not decode). */
export function claimOf(record: Uint8Array): HeadClaim {
  const proof = decodeHeadProof(record)
  return { proof, leaf: decodeLeaf(proof.leaf) }
}

/** The proof, its leaf and the statement's author of a head proof, decoded once, not checked (throws if it does not decode). */
export function claimedHead(record: Uint8Array): { proof: HeadProof; leaf: HeadLeaf; author: string } {
  const { proof, leaf } = claimOf(record)
  return { proof, leaf, author: authorOf(proof.statement) }
}

/**
 * Statements' authors by their bytes (latin1), for claimedHead: a catch-up reads the stored heads
 * of a statement's ~64 entities, in the order of their digest leaves. At most 1,024 (a statement
 * that decodes is ≤ ~2.5 KB: ≤ ~2.5 MB).
 */
const authors = new Map<string, string>()
const MAX_AUTHORS = 1024

/** The author a statement names, decoded once per statement bytes (throws if they do not decode). */
function authorOf(statement: Uint8Array): string {
  const key = latin1(statement)
  let author = authors.get(key)
  if (author === undefined) {
    author = decodeStatement(statement).author
    if (authors.size >= MAX_AUTHORS) authors.delete(authors.keys().next().value!)
    authors.set(key, author)
  }
  return author
}

/** The bytes an author's key signs for a statement. */
function signingInput(statement: Uint8Array): Uint8Array {
  return concatBytes([SIGNING_CONTEXT, statement])
}

/**
 * Signs heads as `author` (one signature for all of them): the statement, the signature, the
 * encoded leaves and each leaf's proof, in the leaves' order. `sign` is the replica's own key.
 */
export async function signHeads(
  s: Omit<HeadStatement, 'root' | 'count'>,
  leaves: readonly HeadLeaf[],
  sign: (data: Uint8Array) => Promise<Uint8Array | undefined>,
): Promise<{ statement: Uint8Array; signature: Uint8Array; leaves: Uint8Array[]; proofs: Uint8Array[] }> {
  if (leaves.length === 0 || leaves.length > MAX_LEAVES) throw new RangeError(`1 to ${MAX_LEAVES} heads in one statement, not ${leaves.length}`)
  const encoded = leaves.map(encodeLeaf)
  const { root, paths } = merkleTree(encoded.map(leafHash))
  const statement = encodeStatement({ ...s, root, count: leaves.length })
  const signature = await sign(signingInput(statement))
  if (signature === undefined) throw new Error('this replica has no signing key')
  const proofs = encoded.map((leaf, index) => encodeHeadProof({ statement, signature, leaf, index, path: paths[index]! }))
  return { statement, signature, leaves: encoded, proofs }
}

/**
 * Head proofs a head table proved (messages/head-table.ts rebuilt them from leaves that rebuild
 * their statement's root), so that HeadVerifier.check, which gets those very records next, need
 * not walk each path again (~7 hashes a head). Kept by the record's whole bytes: a record that
 * differs in any byte (another path beside the table's, say) is checked in full. A fact about
 * bytes, not about who sent them — the statement's signature is checked as before — so one memo
 * serves every replica of the process. Bounded (the oldest go first: a head whose fact went is
 * checked in full; at most 8 MiB of records, whatever peers send), and each fact is used once.
 */
class ProvenRecords {
  private readonly facts = new Set<string>()
  private bytes = 0

  /** At most `maxBytes` of records kept (an honest head proof is ~0.5 KB; a hostile one may be ~6). */
  constructor(private readonly maxBytes: number) {}

  add(record: Uint8Array): void {
    if (record.byteLength > this.maxBytes) return
    const key = latin1(record)
    // Held already: nothing to make room for (else the oldest facts would go for nothing).
    if (this.facts.has(key)) return
    while (this.bytes + record.byteLength > this.maxBytes) {
      const oldest = this.facts.values().next().value!
      this.facts.delete(oldest)
      this.bytes -= oldest.length
    }
    this.facts.add(key)
    this.bytes += key.length
  }

  /** Whether a table proved this very record (forgotten once asked). */
  proves(record: Uint8Array): boolean {
    const key = latin1(record)
    if (!this.facts.delete(key)) return false
    this.bytes -= key.length
    return true
  }
}

/** What head tables proved, for the checks that follow (a catch-up batch holds a few thousand heads of ~0.5 KB). */
export const provenRecords = new ProvenRecords(8 * 1024 * 1024)

/** Statements whose signature verified, remembered (a push's heads arrive once per entity). */
const REMEMBERED = 4096

/** A statement whose signature verified. */
interface VerifiedStatement {
  /** Its bytes (the cache is keyed by the signature: a lookup must find these bytes too). */
  bytes: Uint8Array
  statement: HeadStatement
}

/**
 * Checks head proofs: shape, the statement's namespace and collection, the leaf's entity, the
 * actor bound to the statement's author, the inclusion path, and the author's signature — the
 * one costly step, done once per statement (remembered) and only after everything else passed.
 */
export class HeadVerifier {
  /** Statements whose signature verified, decoded, by their signature (hex). */
  private readonly verified = new Map<string, VerifiedStatement>()
  /**
   * Signature checks under way, by signature and statement: a catch-up applies several entities
   * of one statement at once, and each would check the same signature before the first is done.
   */
  private readonly checking = new Map<string, Promise<boolean>>()

  constructor(
    private readonly namespace: string,
    private readonly verify: (peer: string, data: Uint8Array, signature: Uint8Array) => Promise<boolean>,
  ) {}

  /** The verified head, or why not (never throws). */
  async check(
    record: Uint8Array,
    where: { collection: string; id: string },
    /** Asked before a signature check not remembered: false refuses the head unchecked (a budget). */
    mayVerify: () => boolean = () => true,
    /** The record decoded already (claimOf), if it was. */
    claim?: HeadClaim,
  ): Promise<VerifiedHead | { refused: string; rateLimited?: true }> {
    let proof: HeadProof
    let statement: HeadStatement
    let leaf: HeadLeaf
    let key: string
    let known: VerifiedStatement | undefined
    try {
      ;({ proof, leaf } = claim ?? claimOf(record))
      // A statement verified before is not decoded again (a push's heads share one). Keyed by
      // the signature, and the same statement bytes required: another statement beside a known
      // signature is decoded and checked like any new one.
      key = toHex(proof.signature)
      known = this.verified.get(key)
      if (known !== undefined && !bytesEqual(known.bytes, proof.statement)) known = undefined
      statement = known?.statement ?? decodeStatement(proof.statement)
    } catch (err) {
      return { refused: `a malformed head proof: ${(err as Error).message}` }
    }
    if (statement.namespace !== this.namespace || statement.collection !== where.collection) {
      return { refused: `a head signed for '${statement.namespace}'/'${statement.collection}'` }
    }
    if (leaf.id !== where.id) return { refused: `a head of entity '${leaf.id}' sent with '${where.id}'` }
    if (!actorOwnedBy(leaf.actor, statement.author)) return { refused: `a head of actor ${leaf.actor} signed by ${statement.author}, who does not own it` }
    // The whole path, every time: a record is stored and relayed as it came, so all of it must
    // check — unless the head table it came in proved that leaf under this statement already.
    if (!provenRecords.proves(record) && !verifyInclusion(leafHash(proof.leaf), proof.index, statement.count, proof.path, statement.root)) {
      return { refused: `a head whose inclusion path does not lead to its statement's root` }
    }
    if (known === undefined) {
      const pending = `${key} ${toHex(proof.statement)}`
      let checking = this.checking.get(pending)
      if (checking === undefined) {
        if (!mayVerify()) return { refused: `too many heads of new statements to check now (${statement.author})`, rateLimited: true }
        checking = this.verifyStatement(key, proof.statement, proof.signature, statement).finally(() => this.checking.delete(pending))
        this.checking.set(pending, checking)
      }
      if (!(await checking)) return { refused: `a head whose signature does not verify under ${statement.author}'s key` }
    }
    return { ...leaf, author: statement.author, record }
  }

  /** Checks a statement's signature; remembers it if it verifies. Never rejects. */
  private async verifyStatement(key: string, bytes: Uint8Array, signature: Uint8Array, statement: HeadStatement): Promise<boolean> {
    let ok: boolean
    try {
      ok = await this.verify(statement.author, signingInput(bytes), signature)
    } catch {
      ok = false
    }
    if (!ok) return false
    if (this.verified.size >= REMEMBERED) this.verified.delete(this.verified.keys().next().value!)
    this.verified.set(key, { bytes: new Uint8Array(bytes), statement }) // a copy (slice of a Buffer is a view): not the message it came in
    return true
  }
}

/**
 * Checks a whole statement at once, given all its leaves (a push carries them): the root rebuilt
 * from the leaves, every leaf's actor owned by the author, the signature (once per statement, as
 * in check). The heads, each with its proof, in the leaves' order — or why not (never throws).
 */
export async function checkStatement(
  verifier: HeadVerifier,
  signed: { statement: Uint8Array; signature: Uint8Array; leaves: readonly Uint8Array[] },
  where: { collection: string },
  mayVerify: () => boolean,
): Promise<VerifiedHead[] | { refused: string; rateLimited?: true }> {
  let leaves: HeadLeaf[]
  let statement: HeadStatement
  try {
    statement = decodeStatement(signed.statement)
    leaves = signed.leaves.map(decodeLeaf)
  } catch (err) {
    return { refused: `malformed push heads: ${(err as Error).message}` }
  }
  if (leaves.length === 0 || statement.count !== leaves.length)
    return { refused: `push heads of ${leaves.length} leaves under a statement of ${statement.count}` }
  const { root, paths } = merkleTree(signed.leaves.map(leafHash))
  if (!bytesEqual(root, statement.root)) return { refused: "push heads whose leaves do not add up to their statement's root" }
  const records = signed.leaves.map((leaf, index) =>
    encodeHeadProof({ statement: signed.statement, signature: signed.signature, leaf, index, path: paths[index]! }),
  )
  // One leaf's full check (namespace, collection, owner, path, signature) vouches for the statement.
  const first = await verifier.check(records[0]!, { collection: where.collection, id: leaves[0]!.id }, mayVerify)
  if ('refused' in first) return first
  const heads: VerifiedHead[] = []
  for (let index = 0; index < leaves.length; index++) {
    const leaf = leaves[index]!
    if (!actorOwnedBy(leaf.actor, statement.author)) return { refused: `a head of actor ${leaf.actor} signed by ${statement.author}, who does not own it` }
    heads.push({ ...leaf, author: statement.author, record: records[index]! })
  }
  return heads
}

/** Meta records of heads: `head/<collection> NUL <id> NUL <actor>` (dropped with the collection). */
export const HEAD_PREFIX = 'head/'

export function headPrefixOf(collection: string, id?: string): string {
  return id === undefined ? `${HEAD_PREFIX}${collection}\u0000` : `${HEAD_PREFIX}${collection}\u0000${id}\u0000`
}

export function headKey(collection: string, id: string, actor: string): string {
  return `${headPrefixOf(collection, id)}${actor}`
}

/** What ends a held head's key (heldHeadKey): an actor (hex) never holds a NUL. */
export const HELD_SUFFIX = '\u0000held'

/**
 * Meta record of an actor's *held* head: `head/<collection> NUL <id> NUL <actor> NUL held`, the
 * newest verified head whose change the entity's document holds, kept beside the actor's head
 * (headKey) only while that one is of a change still waiting here (replication/heads.ts). Under
 * the same prefix, so it goes with the collection, and a damaged one is found and moved aside
 * as any head is.
 */
export function heldHeadKey(collection: string, id: string, actor: string): string {
  return `${headKey(collection, id, actor)}${HELD_SUFFIX}`
}

const HEAD_PROOF = 'h:'
/**
 * At most this many heads one change-feed entry names (what a feed entry's proof id holds: 255
 * bytes, ~49 per actor). A delta adding changes of more actors (a whole entity that more
 * processes wrote, to a late joiner) is recorded as the relaying peer's, vouched for by it, as
 * changes of unbound actors are.
 */
export const MAX_FEED_HEADS = 5

/**
 * The proof id a change-feed entry names when its authors' heads vouched for it:
 * `h:<actor>[,<actor>…]`, one per actor whose changes it added (sorted). Each is the head stored
 * for (collection, entity, actor), the newest of that actor, which covers the change (see
 * headKey, checkProof). One author: the entry's origin is that author; several: the relaying
 * peer, and the heads name the authors.
 */
export function headProofId(actors: readonly string[]): string {
  return `${HEAD_PROOF}${[...actors].sort().join(',')}`
}

/** The actors a head proof id names (one or more), or undefined for a push's proof id. */
export function actorsOfProofId(proofId: string): string[] | undefined {
  return proofId.startsWith(HEAD_PROOF) ? proofId.slice(HEAD_PROOF.length).split(',') : undefined
}

/** The heads a proof id of several actors names, as Replica.proofOf returns them: a CBOR array (empty bytes: none stored). */
export function encodeHeadList(records: readonly (Uint8Array | undefined)[]): Uint8Array {
  return encode(records.map((r) => r ?? new Uint8Array(0)))
}

/** The heads of encodeHeadList (InvalidMessageError if it is not one of at most MAX_FEED_HEADS). */
export function decodeHeadList(bytes: Uint8Array): Uint8Array[] {
  return asArray(decodeBounded(bytes, 1 + MAX_FEED_HEADS, 'head list'), 'head list', MAX_FEED_HEADS).map((r, i) => asBytes(r, `head ${i}`))
}

/**
 * Meta records of local changes whose heads are not stored yet: `unsigned/<collection> NUL
 * <feed seq>` → the entity id, written in the batch of the change and deleted in the batch of
 * its heads. What a crash in between leaves is signed at the next open (SignedHeads.recover).
 */
export const UNSIGNED_PREFIX = 'unsigned/'

export function unsignedPrefixOf(collection: string): string {
  return `${UNSIGNED_PREFIX}${collection}\u0000`
}

export function unsignedKey(collection: string, seq: number): string {
  return `${unsignedPrefixOf(collection)}${seq.toString().padStart(16, '0')}`
}
