import * as A from '@automerge/automerge'
import { deflateRawSync } from 'node:zlib'
import { DELETED_KEY } from '../src/schema.js'

/** 16 actor bytes derived from `n`. */
export const actor = (n: number): Uint8Array => Uint8Array.from({ length: 16 }, (_, i) => (n * 16 + i) & 0xff)

export interface HotEntity {
  /** A.save of the entity after all its changes. */
  readonly whole: Uint8Array
  /** A.save of the entity halfway through (a replica partitioned then). */
  readonly half: Uint8Array
  readonly changes: number
}

const hot = new Map<number, HotEntity>()

/**
 * An entity laid out as the backend lays it out, updated `changes` times (one field each time,
 * one change each): a hot entity. Built through Automerge's low-level handle, ~15x faster than
 * through put(); memoised, as tests share it.
 */
export function hotEntity(changes: number): HotEntity {
  let entity = hot.get(changes)
  if (entity === undefined) {
    const handle = A.getBackend(A.init({ actor: 'aa'.repeat(16) }))
    handle.put('_root', DELETED_KEY, false)
    handle.put('_root', 'name', 'Blue mug', 'str')
    handle.commit(null, 0)
    let half: Uint8Array | undefined
    for (let i = 1; i < changes; i++) {
      handle.put('_root', 'stock', i, 'int')
      handle.commit(null, 0)
      if (i === Math.floor(changes / 2)) half = handle.save()
    }
    entity = { whole: handle.save(), half: half ?? handle.save(), changes }
    handle.free()
    hot.set(changes, entity)
  }
  return entity
}

let bombBytes: Uint8Array | undefined

/** A decompression bomb: A.save of an entity holding a 60 MiB string (~61 KB of bytes). */
export function bomb(): Uint8Array {
  if (bombBytes === undefined) {
    const handle = A.getBackend(A.init({ actor: 'bb'.repeat(16) }))
    handle.put('_root', DELETED_KEY, false)
    handle.put('_root', 'big', 'a'.repeat(BOMB_STRING_BYTES), 'str')
    handle.commit(null, 0)
    bombBytes = handle.save()
    handle.free()
  }
  return bombBytes
}

export const BOMB_STRING_BYTES = 60 * 1024 * 1024

/** A change chunk rebuilt as a compressed one (type 2): same checksum, deflated body. */
export function compressChange(change: Uint8Array): Uint8Array {
  let offset = 9
  let length = 0
  let scale = 1
  for (;;) {
    const b = change[offset++]!
    length += (b & 0x7f) * scale
    scale *= 128
    if (b < 0x80) break
  }
  const body = deflateRawSync(change.subarray(offset, offset + length))
  return Uint8Array.from([...change.subarray(0, 8), 2, ...uleb(body.byteLength), ...body])
}

function uleb(n: number): number[] {
  const out: number[] = []
  for (;;) {
    const b = n & 0x7f
    n = Math.floor(n / 128)
    out.push(n > 0 ? b | 0x80 : b)
    if (n === 0) return out
  }
}

let changeBombBytes: Uint8Array | undefined

/** The same bomb as one compressed change chunk (type 2). */
export function changeBomb(): Uint8Array {
  if (changeBombBytes === undefined) {
    const doc = A.load<Record<string, unknown>>(bomb())
    changeBombBytes = compressChange(A.getAllChanges(doc)[0]!)
    A.free(doc)
  }
  return changeBombBytes
}
