import type { Clock } from '../clock.js'
import { bytesEqual, sha256 } from '../hash.js'
import { invalid, type Ticket, type UploadRequest } from './messages/index.js'

/**
 * Large deltas — an entity's whole state after a long history, a catch-up over many changes —
 * do not fit in one message. Up to inlineLimit() bytes a delta travels inside its sync
 * message; a larger one travels in parts of at most partBytes(), reassembled under a size
 * bound (maxDeltaBytes) and checked against its SHA-256 before it is applied:
 *
 *  - responder → requester: the response carries a Ticket in the delta's place; the responder
 *    keeps the bytes in its Outbox, and the requester fetches them part by part (FetchRequest).
 *  - requester → responder: UploadRequest, one part at a time, in order; the responder keeps
 *    at most one upload per peer (Uploads) and applies it when complete.
 *
 * Both sides learn that the other speaks parts from a feature bit (FEATURE_PARTS) in the roots
 * response and a flag in the requests; a peer that does not gets only what fits in a message.
 * The message bodies are in messages/parts.ts.
 */

/**
 * A delta larger than this goes in parts (it also bounds what one sync message carries). Never
 * over maxDeltaBytes: a delta over it is not sent at all (and counted so: EntitySizes), rather
 * than sent inline for the receiver to drop, when maxChunkBytes is set above maxDeltaBytes.
 */
export function inlineLimit(limits: { maxChunkBytes: number; maxDeltaBytes: number }): number {
  return Math.min(limits.maxChunkBytes, limits.maxDeltaBytes)
}

/** Bytes in one part. */
export function partBytes(limits: { maxMessageBytes: number }): number {
  return Math.max(1024, Math.min(1024 * 1024, limits.maxMessageBytes - 64 * 1024))
}

interface Held {
  peer: string
  bytes: Uint8Array
  /** Bytes the peer has read in order so far. */
  readTo: number
  /** Clock time of the ticket's last progress (handed out, or a read that moved readTo on). */
  progressAt: number
  /** Clock time after which it is dropped however it is read (see Outbox). */
  deadline: number
}

/** How the Outbox keeps and gives up its tickets (times in ms of the replica's clock). */
export interface OutboxTimes {
  /** A ticket with no progress for this long is dropped. */
  idleMs: number
  /** A ticket progressed within this long is never pushed out for a new one. */
  protectMs: number
  /** Every ticket is dropped after this long, plus its size at minBytesPerSec. */
  graceMs: number
  minBytesPerSec: number
}

const DEFAULT_TIMES: OutboxTimes = { idleMs: 30_000, protectMs: 2_000, graceMs: 60_000, minBytesPerSec: 256 * 1024 }

/**
 * The responder's side of parts: deltas handed out as tickets, kept for the peer that got
 * them within a byte budget over all peers. Room is held by downloading, not by asking: a new
 * ticket pushes out the one that made progress least recently, but never one read within
 * protectMs (then the new one is refused and a later round asks again). A ticket is dropped
 * after idleMs without progress — re-reading a part already read is not progress — and at its
 * deadline whatever happens (graceMs plus its size at minBytesPerSec), so holding room takes
 * a steady download that ends the ticket soon. An honest requester fetches at full speed, one
 * ticket at a time; a peer that asks and does not fetch loses its room to the next request.
 */
export class Outbox {
  private readonly held = new Map<number, Held>()
  private bytes = 0
  private next = 1
  private readonly times: OutboxTimes

  constructor(
    private readonly clock: Clock,
    private readonly maxBytes: number,
    times: Partial<OutboxTimes> = {},
  ) {
    this.times = { ...DEFAULT_TIMES, ...times }
  }

  /** A ticket for `bytes`, or undefined if there is no room for them now (or ever). */
  put(peer: string, bytes: Uint8Array): Ticket | undefined {
    const size = bytes.byteLength
    if (size > this.maxBytes) return undefined
    this.expire()
    const now = this.clock.now()
    if (this.bytes + size > this.maxBytes) {
      // Least recent progress first; tickets read within protectMs stay.
      const stale = [...this.held].filter(([, h]) => now - h.progressAt >= this.times.protectMs).sort((a, b) => a[1].progressAt - b[1].progressAt)
      let freed = 0
      let n = 0
      while (this.bytes - freed + size > this.maxBytes && n < stale.length) freed += stale[n++]![1].bytes.byteLength
      if (this.bytes - freed + size > this.maxBytes) return undefined // every ticket is being downloaded: not now
      for (const [t] of stale.slice(0, n)) this.drop(t)
    }
    const t = this.next++
    this.held.set(t, { peer, bytes, readTo: 0, progressAt: now, deadline: now + this.times.graceMs + (size / this.times.minBytesPerSec) * 1000 })
    this.bytes += size
    return { ticket: t, size, hash: sha256(bytes) }
  }

  /** Part of a ticket's bytes from `offset`, for the peer it was given to; undefined if unknown. */
  read(peer: string, t: number, offset: number, max: number): Uint8Array | undefined {
    this.expire()
    const held = this.held.get(t)
    if (held === undefined || held.peer !== peer || offset >= held.bytes.byteLength) return undefined
    const end = Math.min(held.bytes.byteLength, offset + max)
    if (end === held.bytes.byteLength)
      this.drop(t) // fully read: the requester has it
    else if (offset <= held.readTo && end > held.readTo) {
      held.readTo = end
      held.progressAt = this.clock.now()
    }
    return held.bytes.subarray(offset, end)
  }

  /** Drops a peer's tickets (it disconnected). */
  forget(peer: string): void {
    for (const [t, held] of this.held) if (held.peer === peer) this.drop(t)
  }

  /** Drops every ticket (the cluster policy changed: who may read what is decided again). */
  forgetAll(): void {
    for (const t of [...this.held.keys()]) this.drop(t)
  }

  get size(): number {
    return this.bytes
  }

  private expire(): void {
    const now = this.clock.now()
    for (const [t, held] of this.held) if (now - held.progressAt >= this.times.idleMs || now >= held.deadline) this.drop(t)
  }

  private drop(t: number): void {
    const held = this.held.get(t)
    if (held === undefined) return
    this.held.delete(t)
    this.bytes -= held.bytes.byteLength
  }
}

type UploadHeader = Omit<UploadRequest, 'offset' | 'part'>

interface Upload {
  req: UploadHeader
  buffer: Uint8Array
  filled: number
  expires: number
}

/**
 * The responder's side of uploads: at most one per peer, in order, within a byte budget over
 * all peers (a new upload makes room by dropping the ones that went quiet longest). Returns the
 * whole delta once the last part arrived and matched its hash.
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
    if (req.offset === 0) {
      // A new upload replaces the peer's previous one (abandoned).
      this.end(peer)
      if (req.size > this.maxBytes) throw invalid(`an upload of ${req.size} bytes is over the budget for uploads`)
      // Room is made from the uploads that went quiet longest: one that keeps sending parts
      // keeps its place, one that stopped loses it (peers holding the budget with uploads they
      // never finish cannot keep an active one out).
      while (this.bytes + req.size > this.maxBytes) this.end(this.quietest()!)
      const { part: _part, offset: _offset, ...header } = req
      upload = { req: header, buffer: new Uint8Array(req.size), filled: 0, expires: now + this.ttlMs }
      this.active.set(peer, upload)
      this.bytes += req.size
    }
    if (upload === undefined || !sameUpload(upload.req, req) || req.offset !== upload.filled) {
      this.end(peer)
      throw invalid('upload part out of order')
    }
    upload.buffer.set(req.part, req.offset)
    upload.filled += req.part.byteLength
    upload.expires = now + this.ttlMs
    if (upload.filled < req.size) return 'more'
    this.end(peer)
    if (!bytesEqual(sha256(upload.buffer), req.hash)) throw invalid('upload does not match its hash')
    return upload.buffer
  }

  /** The peer whose upload last received a part longest ago. */
  private quietest(): string | undefined {
    let peer: string | undefined
    let at = Infinity
    for (const [p, u] of this.active) if (u.expires < at) [peer, at] = [p, u.expires]
    return peer
  }

  /** Drops a peer's upload (it disconnected, or the upload failed). */
  /** Ends every upload (the cluster policy changed). */
  endAll(): void {
    for (const peer of [...this.active.keys()]) this.end(peer)
  }

  end(peer: string): void {
    const upload = this.active.get(peer)
    if (upload === undefined) return
    this.active.delete(peer)
    this.bytes -= upload.req.size
  }
}

function sameUpload(a: UploadHeader, b: UploadRequest): boolean {
  return a.collection === b.collection && a.backend === b.backend && a.id === b.id && a.size === b.size && bytesEqual(a.hash, b.hash)
}
