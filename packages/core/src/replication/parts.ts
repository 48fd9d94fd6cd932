import type { Clock } from '../clock.js'
import { bytesEqual, sha256 } from '../hash.js'
import { asBytes, asInt, asRecord, asString, invalid } from './wire.js'

/**
 * Large deltas — an entity's whole state after a long history, a catch-up over many changes —
 * do not fit in one message. Up to INLINE bytes a delta travels inside its sync message; a
 * larger one travels in parts of at most PART bytes, reassembled under a size bound
 * (maxDeltaBytes) and checked against its SHA-256 before it is applied:
 *
 *  - responder → requester: the response carries a ticket {t, n, h} in the delta's place; the
 *    responder keeps the bytes in its Outbox, and the requester fetches them part by part
 *    (FetchRequest {t, o} → FetchResponse {b}).
 *  - requester → responder: UploadRequest {c, b, i, n, h, o, d}, one part at a time, in order;
 *    the responder keeps at most one upload per peer (Uploads) and applies it when complete.
 *
 * Both sides learn that the other speaks parts from a feature bit (FEATURE_PARTS) exchanged in
 * the roots messages; a peer that does not gets only what fits in a message.
 */
export const FEATURE_PARTS = 1

/** A delta larger than this goes in parts (it also bounds what one sync message carries). */
export function inlineLimit(limits: { maxChunkBytes: number }): number {
  return limits.maxChunkBytes
}

/** Bytes in one part. */
export function partBytes(limits: { maxMessageBytes: number }): number {
  return Math.max(1024, Math.min(1024 * 1024, limits.maxMessageBytes - 64 * 1024))
}

/** What stands in a message for a delta sent in parts. */
export interface Ticket {
  /** ticket id (per responder) */
  t: number
  /** total bytes */
  n: number
  /** SHA-256 of the whole */
  h: Uint8Array
}

/** A delta slot of a sync message: the bytes, or a ticket to fetch them by. */
export type DeltaSlot = Uint8Array | Ticket

export function isTicket(slot: DeltaSlot): slot is Ticket {
  return !(slot instanceof Uint8Array)
}

export function decodeTicket(v: unknown, what: string, maxBytes: number): Ticket {
  const r = asRecord(v, what)
  const h = asBytes(r.h, `${what} hash`)
  if (h.byteLength !== 32) throw invalid(`${what} hash is ${h.byteLength} bytes`)
  const n = asInt(r.n, `${what} size`, 1)
  if (n > maxBytes) throw invalid(`${what} announces ${n} bytes, over maxDeltaBytes ${maxBytes}`)
  return { t: asInt(r.t, `${what} id`), n, h }
}

/** A delta slot: bytes, or a ticket. */
export function decodeDeltaSlot(v: unknown, what: string, maxBytes: number): DeltaSlot {
  return v instanceof Uint8Array ? v : decodeTicket(v, what, maxBytes)
}

interface Held {
  peer: string
  bytes: Uint8Array
  /** Clock time after which it may be dropped (pushed on by every read). */
  expires: number
}

/**
 * The responder's side of parts: deltas handed out as tickets, kept for the peer that got
 * them for ttlMs after the last read, within a byte budget (the oldest go first when over it;
 * a requester whose ticket expired gets the entity in a later round).
 */
export class Outbox {
  private readonly held = new Map<number, Held>()
  private bytes = 0
  private next = 1

  constructor(
    private readonly clock: Clock,
    private readonly maxBytes: number,
    private readonly ttlMs = 120_000,
  ) {}

  /** A ticket for `bytes`, or undefined if they could never fit the budget. */
  put(peer: string, bytes: Uint8Array): Ticket | undefined {
    if (bytes.byteLength > this.maxBytes) return undefined
    this.expire()
    while (this.bytes + bytes.byteLength > this.maxBytes) this.dropOldest()
    const t = this.next++
    this.held.set(t, { peer, bytes, expires: this.clock.now() + this.ttlMs })
    this.bytes += bytes.byteLength
    return { t, n: bytes.byteLength, h: sha256(bytes) }
  }

  /** Part of a ticket's bytes from `offset`, for the peer it was given to; undefined if unknown. */
  read(peer: string, t: number, offset: number, max: number): Uint8Array | undefined {
    const held = this.held.get(t)
    if (held === undefined || held.peer !== peer || offset >= held.bytes.byteLength) return undefined
    const end = Math.min(held.bytes.byteLength, offset + max)
    if (end === held.bytes.byteLength) this.drop(t) // fully read: the requester has it
    else held.expires = this.clock.now() + this.ttlMs
    return held.bytes.subarray(offset, end)
  }

  /** Drops a peer's tickets (it disconnected). */
  forget(peer: string): void {
    for (const [t, held] of this.held) if (held.peer === peer) this.drop(t)
  }

  get size(): number {
    return this.bytes
  }

  private expire(): void {
    const now = this.clock.now()
    for (const [t, held] of this.held) if (held.expires <= now) this.drop(t)
  }

  private dropOldest(): void {
    for (const t of this.held.keys()) return this.drop(t)
  }

  private drop(t: number): void {
    const held = this.held.get(t)
    if (held === undefined) return
    this.held.delete(t)
    this.bytes -= held.bytes.byteLength
  }
}

export interface UploadRequest {
  c: string
  b: string
  i: string
  n: number
  h: Uint8Array
  o: number
  d: Uint8Array
}

export function decodeUploadRequest(body: unknown, maxBytes: number): UploadRequest {
  const r = asRecord(body, 'upload request')
  const h = asBytes(r.h, 'upload hash')
  if (h.byteLength !== 32) throw invalid('upload hash is not 32 bytes')
  const n = asInt(r.n, 'upload size', 1)
  if (n > maxBytes) throw invalid(`upload announces ${n} bytes, over maxDeltaBytes ${maxBytes}`)
  const o = asInt(r.o, 'upload offset', 0, n - 1)
  const d = asBytes(r.d, 'upload part')
  if (d.byteLength === 0 || o + d.byteLength > n) throw invalid('upload part does not fit the announced size')
  return { c: asString(r.c, 'collection'), b: asString(r.b, 'backend'), i: asString(r.i, 'id'), n, h, o, d }
}

interface Upload {
  req: Omit<UploadRequest, 'o' | 'd'>
  buffer: Uint8Array
  filled: number
  expires: number
}

/**
 * The responder's side of uploads: at most one per peer, in order, within a byte budget over
 * all peers. Returns the whole delta once the last part arrived and matched its hash.
 */
export class Uploads {
  private readonly active = new Map<string, Upload>()
  private bytes = 0

  constructor(
    private readonly clock: Clock,
    private readonly maxBytes: number,
    private readonly ttlMs = 120_000,
  ) {}

  /**
   * Adds a part. Returns the complete delta, 'more' while parts are missing, or throws
   * ERR_INVALID_MESSAGE (out of order, over budget, hash mismatch).
   */
  add(peer: string, req: UploadRequest): Uint8Array | 'more' {
    const now = this.clock.now()
    for (const [p, u] of this.active) if (u.expires <= now) this.end(p)
    let upload = this.active.get(peer)
    if (req.o === 0) {
      // A new upload replaces the peer's previous one (abandoned).
      this.end(peer)
      if (this.bytes + req.n > this.maxBytes) throw invalid(`no room for an upload of ${req.n} bytes now; try again later`)
      upload = { req: { c: req.c, b: req.b, i: req.i, n: req.n, h: req.h }, buffer: new Uint8Array(req.n), filled: 0, expires: now + this.ttlMs }
      this.active.set(peer, upload)
      this.bytes += req.n
    }
    if (upload === undefined || !sameUpload(upload.req, req) || req.o !== upload.filled) {
      this.end(peer)
      throw invalid('upload part out of order')
    }
    upload.buffer.set(req.d, req.o)
    upload.filled += req.d.byteLength
    upload.expires = now + this.ttlMs
    if (upload.filled < req.n) return 'more'
    this.end(peer)
    if (!bytesEqual(sha256(upload.buffer), req.h)) throw invalid('upload does not match its hash')
    return upload.buffer
  }

  /** Drops a peer's upload (it disconnected, or the upload failed). */
  end(peer: string): void {
    const upload = this.active.get(peer)
    if (upload === undefined) return
    this.active.delete(peer)
    this.bytes -= upload.req.n
  }
}

function sameUpload(a: Omit<UploadRequest, 'o' | 'd'>, b: UploadRequest): boolean {
  return a.c === b.c && a.b === b.b && a.i === b.i && a.n === b.n && bytesEqual(a.h, b.h)
}
