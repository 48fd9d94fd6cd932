import { decode, encode } from 'cborg'
import type { Clock } from '../clock.js'
import { ConvergentError } from '../errors.js'
import type { Logger } from '../logger.js'
import { getMetaPastDamage, metasPastDamage, type DamagedMeta } from '../meta-scan.js'
import type { Store, StoreOp } from '../store.js'

/**
 * The read audit: who read which personal fields of which entity, and when. A collection opened
 * with `personal: { …, auditReads: true }` records an entry for every read that hands opened
 * personal fields to the application (see Collection: get, entries, update's draft, subscribe
 * events); other collections record nothing.
 *
 * Entries are meta records of the replica's own store under `audit/reads/<seq>` (seq: 16
 * decimal digits, so key order is seq order), CBOR values — sealed by the store's encryption at
 * rest like every value. They are local to this replica: not replicated (each replica logs the
 * reads made on it). The log is bounded when reads are recorded: at most `maxEntries` (the
 * oldest deleted in the batch that adds a new one) and none older than `maxAgeDays` (deleted,
 * in a scan from the oldest, when a read is recorded while the oldest entry is past that age).
 *
 * Durability: an entry joins the current group commit (the batch of the writes of the same
 * tick) and the read does not wait for it — a read never waits for an fsync. It is durable
 * when that batch is, a few milliseconds later; a crash (or a failing store) before then loses
 * it, and the read still returned its value. So the log holds every audited read except,
 * after a crash, those of the last batch — at most once, never invented.
 */

const PREFIX = 'audit/reads/'
const SEQ_DIGITS = 16
const DAY_MS = 86_400_000
/** Meta record: the highest seq written (8 bytes, big-endian), beside the entries, outside their prefix. */
const MARK_KEY = 'audit/reads-mark'

/** The stored mark, or undefined when absent or not a seq a key can hold (a damaged record). */
function markFrom(bytes: Uint8Array | undefined): number | undefined {
  if (bytes === undefined || bytes.byteLength !== 8) return undefined
  const seq = Number(Buffer.from(bytes).readBigUInt64BE())
  return Number.isSafeInteger(seq) && seq < 10 ** SEQ_DIGITS ? seq : undefined
}

function markOf(seq: number): Uint8Array {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(seq))
  return b
}

/** Deletes of an age prune go to the store in batches of this many. */
const PRUNE_BATCH = 1000

/** Retention of the read audit (Replica.open({ readAudit })). */
export interface ReadAuditOptions {
  /** Keep at most this many entries: the oldest are deleted as new ones come. Default 100,000. */
  maxEntries?: number
  /** Delete entries older than this many days (fractions allowed). Default 90. */
  maxAgeDays?: number
}

export const DEFAULT_READ_AUDIT: Required<ReadAuditOptions> = { maxEntries: 100_000, maxAgeDays: 90 }

/** How the application read: get(), entries(), update()'s draft, or a subscribe() event. */
export type ReadVia = 'get' | 'entries' | 'update' | 'subscribe'

/** One audited read: a value of `collection`/`id` handed to the application with `fields` of `subject` opened. */
export interface ReadAuditEntry {
  /** 1, 2, 3 … in the order reads were recorded on this replica (entries lost in a crash or failed batch leave gaps). */
  seq: number
  /** When (this replica's clock, ms since the epoch). */
  time: number
  collection: string
  id: string
  /**
   * The subject whose fields were opened, as personal.subject returned it — by design a
   * pseudonym (pseudonym() in the convergent package), not the person's name or email.
   */
  subject: string
  /** The personal fields opened (those whose subject key this replica held), sorted. */
  fields: string[]
  via: ReadVia
  /** This replica's peer id ('local' without a network). */
  peer: string
  /** Who asked, as the caller said (`get(id, { actor })`); absent when not given. Not authenticated. */
  actor?: string
}

/** Options of reads that may open personal fields: get(), entries(), update(), subscribe(). */
export interface ReadOptions {
  /**
   * Who reads, for the read audit (e.g. 'support-agent-7'): a non-empty string of at most 256
   * bytes, recorded as given (the caller vouches for it). Ignored where reads are not audited.
   */
  actor?: string
}

const MAX_ACTOR_BYTES = 256

/** The actor of read options (ERR_INVALID_ARGUMENT for anything else than the documented string). */
// eslint-disable-next-line no-control-regex
const NOT_PRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

export function checkActor(options: unknown, what: string): string | undefined {
  if (options === undefined) return undefined
  if (typeof options !== 'object' || options === null) throw new ConvergentError('ERR_INVALID_ARGUMENT', `${what}: options must be an object.`)
  const actor = (options as { actor?: unknown }).actor
  if (actor === undefined) return undefined
  if (typeof actor !== 'string' || actor.length === 0 || Buffer.byteLength(actor) > MAX_ACTOR_BYTES) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', `${what}: actor must be a non-empty string of at most ${MAX_ACTOR_BYTES} bytes.`)
  }
  // Recorded exactly as given and printed one entry a line: no control characters, line or
  // paragraph separators (a forged row in an audit listing), or lone surrogates (stored as U+FFFD).
  if (NOT_PRINTABLE.test(actor) || LONE_SURROGATE.test(actor)) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', `${what}: actor must not contain control characters, line separators or lone surrogates.`)
  }
  return actor
}

export function checkReadAuditOptions(options: ReadAuditOptions | undefined): Required<ReadAuditOptions> {
  const { maxEntries = DEFAULT_READ_AUDIT.maxEntries, maxAgeDays = DEFAULT_READ_AUDIT.maxAgeDays } = options ?? {}
  if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', `readAudit.maxEntries must be an integer ≥ 1, got ${String(maxEntries)}.`)
  }
  if (typeof maxAgeDays !== 'number' || !Number.isFinite(maxAgeDays) || maxAgeDays <= 0) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', `readAudit.maxAgeDays must be a number of days > 0, got ${String(maxAgeDays)}.`)
  }
  return { maxEntries, maxAgeDays }
}

function keyOf(seq: number): string {
  return PREFIX + String(seq).padStart(SEQ_DIGITS, '0')
}

function seqOf(key: string): number {
  return Number(key.slice(PREFIX.length))
}

interface Stored {
  v: 1
  t: number
  c: string
  i: string
  s: string
  f: string[]
  w: ReadVia
  p: string
  a?: string
}

function decodeEntry(key: string, bytes: Uint8Array): ReadAuditEntry {
  let r: Stored
  try {
    r = decode(bytes) as Stored
  } catch {
    throw new ConvergentError('ERR_STORE_CORRUPT', `read-audit entry ${key} is not CBOR`)
  }
  const strings = (...v: unknown[]): boolean => v.every((x) => typeof x === 'string')
  if (
    typeof r !== 'object' ||
    r === null ||
    r.v !== 1 ||
    !Number.isFinite(r.t) ||
    !strings(r.c, r.i, r.s, r.w, r.p) ||
    !Array.isArray(r.f) ||
    !strings(...r.f) ||
    (r.a !== undefined && typeof r.a !== 'string')
  ) {
    throw new ConvergentError('ERR_STORE_CORRUPT', `read-audit entry ${key} does not have the shape of one`)
  }
  return {
    seq: seqOf(key),
    time: r.t,
    collection: r.c,
    id: r.i,
    subject: r.s,
    fields: r.f,
    via: r.w,
    peer: r.p,
    ...(r.a === undefined ? {} : { actor: r.a }),
  }
}

/**
 * Reads the entries a store holds with seq > since (of one collection if given), oldest first.
 * An entry that fails the store's check goes to `damaged` (see metasPastDamage) if given, and the
 * read carries on past it; without it, the read rejects with the StoreCorruptError.
 */
export async function* readAuditEntries(
  store: Store,
  options: { since?: number; collection?: string } = {},
  damaged?: DamagedMeta,
): AsyncGenerator<ReadAuditEntry> {
  if (store.metas === undefined) return
  const since = options.since ?? 0
  for await (const [key, bytes] of damaged === undefined ? store.metas(PREFIX) : metasPastDamage(store, PREFIX, damaged)) {
    if (seqOf(key) <= since) continue
    const entry = decodeEntry(key, bytes)
    if (options.collection !== undefined && entry.collection !== options.collection) continue
    yield entry
  }
}

/** The read audit of one replica (see the module comment). */
export class ReadAudit {
  /** Lowest seq that may still be stored. */
  private first = 1
  /** Highest seq given out. */
  private last = 0
  /** Time of the oldest stored entry, or a lower bound of it; undefined when the log is empty. */
  private oldest: number | undefined
  private pruning: Promise<void> | undefined
  private failing = false
  /** Where record() writes: the store, or (the replica sets it) the current commit tick. */
  write: (ops: StoreOp[]) => Promise<void> = (ops) => this.store.write(ops)
  private readonly maxEntries: number
  private readonly maxAgeMs: number

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly logger: Logger,
    options: Required<ReadAuditOptions>,
  ) {
    this.maxEntries = options.maxEntries
    this.maxAgeMs = options.maxAgeDays * DAY_MS
  }

  get supported(): boolean {
    return typeof this.store.metas === 'function'
  }

  /** The stored entries with seq > since (of one collection if given), oldest first. */
  entries(options: { since?: number; collection?: string }): AsyncGenerator<ReadAuditEntry> {
    return readAuditEntries(this.store, options, this.damagedEntry)
  }

  /** Meta records of the audit met here that failed the store's check (see load()). */
  corruptRecords = 0

  /**
   * An entry that failed the store's check (load, a read, a prune): moved aside and logged,
   * saying the trail has a gap there — it cannot be read back, and is not made up. Its seq still
   * counts as given out (never handed out again).
   */
  private readonly damagedEntry: DamagedMeta = async (err, removable) => {
    this.corruptRecords++
    const seq = seqOf(err.record.key)
    const known = Number.isSafeInteger(seq) && seq > 0
    if (known) this.last = Math.max(this.last, seq)
    this.logger.error(
      `${err.message} A read-audit entry${known ? ` (seq ${seq})` : ''}: ${
        removable ? 'moved aside' : 'left as it is (the store is opened read-only)'
      }. The read audit has a gap there: that read is no longer in it.`,
      { code: err.code },
    )
    if (removable) await this.store.quarantine(err.record)
  }

  /**
   * Finds the log's ends (a scan of the stored entries, at most maxEntries of them). Deletes
   * nothing: retention applies when reads are recorded, so a replica opened only to look (the
   * CLI, with default options) never trims a log a service keeps longer.
   */
  async load(): Promise<void> {
    if (!this.supported) return
    // The highest seq ever written: an age prune may have deleted every entry while the batch
    // of the entry that started it was lost, and seq numbers must not start over (a reader
    // resuming with `since` would miss what comes next).
    // Written with every entry, so it is at least the last entry's seq: with it, only the first
    // entry is read; without it (a log from before the mark, or a damaged one), every key is.
    // A damaged mark (failing the store's check) is moved aside and read as absent: every entry
    // is scanned for the end then (and the seqs of damaged entries count, by their keys).
    const mark = await getMetaPastDamage(this.store, MARK_KEY, {
      what: "The read audit's mark (its highest seq)",
      moveAside: true,
      readsAs: undefined,
      then: 'read as absent — the end of the log is found from its entries',
      logger: this.logger,
      counted: () => void this.corruptRecords++,
    })
    const marked = markFrom(mark)
    this.first = (marked ?? 0) + 1
    this.last = marked ?? 0
    let count = 0
    for await (const [key, bytes] of metasPastDamage(this.store, PREFIX, this.damagedEntry)) {
      const seq = seqOf(key)
      if (count++ === 0) {
        this.first = seq
        try {
          const t = (decode(bytes) as Stored).t
          this.oldest = Number.isFinite(t) ? t : -Infinity
        } catch {
          this.oldest = -Infinity // unreadable: the age prune deletes it
        }
      }
      this.last = Math.max(this.last, seq)
      if (marked !== undefined) break
    }
  }

  /** Records one read (without waiting for it to be durable: see the module comment). */
  record(entry: Omit<ReadAuditEntry, 'seq'>): void {
    if (!this.supported) return
    const seq = ++this.last
    const value: Stored = { v: 1, t: entry.time, c: entry.collection, i: entry.id, s: entry.subject, f: entry.fields, w: entry.via, p: entry.peer }
    if (entry.actor !== undefined) value.a = entry.actor
    const ops: StoreOp[] = [
      { type: 'meta', key: keyOf(seq), bytes: encode(value) },
      { type: 'meta', key: MARK_KEY, bytes: markOf(seq) },
    ]
    // One delete per new entry once full (more at once when maxEntries was lowered since).
    while (this.last - this.first + 1 > this.maxEntries) ops.push({ type: 'delMeta', key: keyOf(this.first++) })
    this.oldest ??= entry.time
    let written: Promise<void>
    try {
      written = this.write(ops)
    } catch (err) {
      written = Promise.reject(err instanceof Error ? err : new Error(String(err)))
    }
    written.then(
      () => {
        this.failing = false
      },
      (err: unknown) => {
        // Logged once per run of failures: a failing store fails every batch.
        if (this.failing) return
        this.failing = true
        this.logger.error(`a read-audit entry (seq ${seq}) was not written: ${(err as Error)?.message}`, {
          collection: entry.collection,
          code: 'ERR_STORE',
        })
      },
    )
    if (this.oldest !== undefined && this.oldest < entry.time - this.maxAgeMs) void this.pruneByAge()
  }

  /** Deletes entries older than maxAgeDays from the start of the log (one prune at a time). */
  private pruneByAge(): Promise<void> {
    this.pruning ??= this.prune()
      .catch((err: unknown) => this.logger.error(`pruning the read audit failed: ${(err as Error)?.message}`, { code: 'ERR_STORE' }))
      .finally(() => (this.pruning = undefined))
    return this.pruning
  }

  private async prune(): Promise<void> {
    const cutoff = this.clock.now() - this.maxAgeMs
    let ops: StoreOp[] = []
    let deletedTo = 0
    let kept: number | undefined
    for await (const [key, bytes] of metasPastDamage(this.store, PREFIX, this.damagedEntry)) {
      let time: number
      try {
        time = (decode(bytes) as Stored).t
      } catch {
        time = -Infinity
      }
      if (time >= cutoff) {
        kept = time
        break
      }
      ops.push({ type: 'delMeta', key })
      deletedTo = seqOf(key)
      if (ops.length >= PRUNE_BATCH) {
        await this.store.write(ops)
        ops = []
      }
    }
    if (ops.length > 0) await this.store.write(ops)
    this.first = Math.max(this.first, deletedTo + 1)
    this.oldest = kept ?? (this.last >= this.first ? cutoff : undefined)
  }
}
