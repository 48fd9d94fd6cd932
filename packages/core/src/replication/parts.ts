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

/** A delta larger than this goes in parts (it also bounds what one sync message carries). */
export function inlineLimit(limits: { maxChunkBytes: number }): number {
  return limits.maxChunkBytes
}

/** Bytes in one part. */
export function partBytes(limits: { maxMessageBytes: number }): number {
  return Math.max(1024, Math.min(1024 * 1024, limits.maxMessageBytes - 64 * 1024))
}

interface Held {
  peer: string
  bytes: Uint8Array
  /** Clock time after which it may be dropped (pushed on by every read). */
  expires: number
}

/**
 * The responder's side of parts: deltas handed out as tickets, kept for the peer that got
 * them for ttlMs after the last read, within a byte budget over all peers. Room for a new
 * ticket comes from whoever holds the most — the requester's own oldest tickets first when
 * that is itself — so one peer's requests cannot push out the tickets of the others; a
 * requester refused room, or whose ticket expired, gets the entity in a later round.
 */
export class Outbox {
  private readonly held = new Map<number, Held>()
  /** Bytes held per peer. */
  private readonly perPeer = new Map<string, number>()
  private bytes = 0
  private next = 1

  constructor(
    private readonly clock: Clock,
    private readonly maxBytes: number,
    private readonly ttlMs = 120_000,
  ) {}

  /** A ticket for `bytes`, or undefined if there is no room for them now (or ever). */
  put(peer: string, bytes: Uint8Array): Ticket | undefined {
    const size = bytes.byteLength
    if (size > this.maxBytes) return undefined
    this.expire()
    while (this.bytes + size > this.maxBytes) {
      const [largest, theirs] = this.largestHolder()
      const mine = (this.perPeer.get(peer) ?? 0) + size
      if (mine >= theirs) {
        if (!this.dropOldestOf(peer)) return undefined // it alone would hold the most: not now
      } else this.dropOldestOf(largest!)
    }
    const t = this.next++
    this.held.set(t, { peer, bytes, expires: this.clock.now() + this.ttlMs })
    this.bytes += size
    this.perPeer.set(peer, (this.perPeer.get(peer) ?? 0) + size)
    return { ticket: t, size, hash: sha256(bytes) }
  }

  /** Part of a ticket's bytes from `offset`, for the peer it was given to; undefined if unknown. */
  read(peer: string, t: number, offset: number, max: number): Uint8Array | undefined {
    const held = this.held.get(t)
    if (held === undefined || held.peer !== peer || offset >= held.bytes.byteLength) return undefined
    const end = Math.min(held.bytes.byteLength, offset + max)
    if (end === held.bytes.byteLength)
      this.drop(t) // fully read: the requester has it
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

  private largestHolder(): [string | undefined, number] {
    let largest: string | undefined
    let most = 0
    for (const [peer, bytes] of this.perPeer) if (bytes > most) [largest, most] = [peer, bytes]
    return [largest, most]
  }

  /** Drops the peer's oldest ticket; false if it holds none. */
  private dropOldestOf(peer: string): boolean {
    for (const [t, held] of this.held) {
      if (held.peer === peer) {
        this.drop(t)
        return true
      }
    }
    return false
  }

  private drop(t: number): void {
    const held = this.held.get(t)
    if (held === undefined) return
    this.held.delete(t)
    this.bytes -= held.bytes.byteLength
    const left = this.perPeer.get(held.peer)! - held.bytes.byteLength
    if (left > 0) this.perPeer.set(held.peer, left)
    else this.perPeer.delete(held.peer)
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
