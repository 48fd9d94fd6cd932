/**
 * A Yjs v1 update as plain data, for tests that take real updates apart and put them together
 * again in other ways (validate-fuzz.test.ts). Reads the subset of the format this backend
 * writes (what validateUpdate may accept: GC, skip, deleted, JSON-scalar and Y.Map/Y.Array
 * content) and writes any model back, however inconsistent: the point is to make updates that
 * Yjs' own writer never would.
 */
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'

export interface Id {
  client: number
  clock: number
}

export type Parent = { root: string } | { id: Id }

export type Content = { kind: 'deleted'; len: number } | { kind: 'any'; values: unknown[] } | { kind: 'type'; ref: number }

export type Struct =
  | { kind: 'gc'; len: number }
  | { kind: 'skip'; len: number }
  | {
      kind: 'item'
      origin: Id | null
      rightOrigin: Id | null
      /** Written only when there is neither origin nor rightOrigin (Yjs copies it otherwise). */
      parent: Parent | null
      parentSub: string | null
      content: Content
    }

export interface Group {
  client: number
  clock: number
  structs: Struct[]
}

export interface DeleteRanges {
  client: number
  /** [clock, len] pairs */
  ranges: [number, number][]
}

export interface UpdateModel {
  groups: Group[]
  ds: DeleteRanges[]
}

const ORIGIN = 0x80
const RIGHT_ORIGIN = 0x40
const PARENT_SUB = 0x20

export function structLength(s: Struct): number {
  if (s.kind !== 'item') return s.len
  const c = s.content
  return c.kind === 'deleted' ? c.len : c.kind === 'any' ? c.values.length : 1
}

/** The model of `bytes`; throws on anything outside the subset (or trailing bytes). */
export function decodeUpdate(bytes: Uint8Array): UpdateModel {
  const d = decoding.createDecoder(bytes)
  const readId = (): Id => ({ client: decoding.readVarUint(d), clock: decoding.readVarUint(d) })
  const groups: Group[] = []
  const clients = decoding.readVarUint(d)
  for (let c = 0; c < clients; c++) {
    const count = decoding.readVarUint(d)
    const group: Group = { client: decoding.readVarUint(d), clock: decoding.readVarUint(d), structs: [] }
    for (let i = 0; i < count; i++) {
      const info = decoding.readUint8(d)
      const ref = info & 0b11111
      if (ref === 0) {
        group.structs.push({ kind: 'gc', len: decoding.readVarUint(d) })
        continue
      }
      if (ref === 10) {
        group.structs.push({ kind: 'skip', len: decoding.readVarUint(d) })
        continue
      }
      const origin = info & ORIGIN ? readId() : null
      const rightOrigin = info & RIGHT_ORIGIN ? readId() : null
      let parent: Parent | null = null
      let parentSub: string | null = null
      if (origin === null && rightOrigin === null) {
        parent = decoding.readVarUint(d) === 1 ? { root: decoding.readVarString(d) } : { id: readId() }
        if (info & PARENT_SUB) parentSub = decoding.readVarString(d)
      }
      let content: Content
      if (ref === 1) content = { kind: 'deleted', len: decoding.readVarUint(d) }
      else if (ref === 8) {
        const values: unknown[] = []
        for (let n = decoding.readVarUint(d); n > 0; n--) values.push(decoding.readAny(d))
        content = { kind: 'any', values }
      } else if (ref === 7) content = { kind: 'type', ref: decoding.readVarUint(d) }
      else throw new Error(`content of kind ${ref} is outside the model`)
      group.structs.push({ kind: 'item', origin, rightOrigin, parent, parentSub, content })
    }
    groups.push(group)
  }
  const ds: DeleteRanges[] = []
  const dsClients = decoding.readVarUint(d)
  for (let c = 0; c < dsClients; c++) {
    const entry: DeleteRanges = { client: decoding.readVarUint(d), ranges: [] }
    for (let n = decoding.readVarUint(d); n > 0; n--) entry.ranges.push([decoding.readVarUint(d), decoding.readVarUint(d)])
    ds.push(entry)
  }
  if (d.pos !== bytes.byteLength) throw new Error('trailing bytes')
  return { groups, ds }
}

/** The v1 bytes of a model, written as given (nothing is checked or reordered). */
export function encodeUpdate(model: UpdateModel): Uint8Array {
  const e = encoding.createEncoder()
  const writeId = (id: Id): void => {
    encoding.writeVarUint(e, id.client)
    encoding.writeVarUint(e, id.clock)
  }
  encoding.writeVarUint(e, model.groups.length)
  for (const group of model.groups) {
    encoding.writeVarUint(e, group.structs.length)
    encoding.writeVarUint(e, group.client)
    encoding.writeVarUint(e, group.clock)
    for (const s of group.structs) {
      if (s.kind !== 'item') {
        encoding.writeUint8(e, s.kind === 'gc' ? 0 : 10)
        encoding.writeVarUint(e, s.len)
        continue
      }
      const ref = s.content.kind === 'deleted' ? 1 : s.content.kind === 'any' ? 8 : 7
      const named = s.origin === null && s.rightOrigin === null
      encoding.writeUint8(e, ref | (s.origin ? ORIGIN : 0) | (s.rightOrigin ? RIGHT_ORIGIN : 0) | (named && s.parentSub !== null ? PARENT_SUB : 0))
      if (s.origin) writeId(s.origin)
      if (s.rightOrigin) writeId(s.rightOrigin)
      if (named) {
        const parent = s.parent ?? { root: 'value' }
        if ('root' in parent) {
          encoding.writeVarUint(e, 1)
          encoding.writeVarString(e, parent.root)
        } else {
          encoding.writeVarUint(e, 0)
          writeId(parent.id)
        }
        if (s.parentSub !== null) encoding.writeVarString(e, s.parentSub)
      }
      const c = s.content
      if (c.kind === 'deleted') encoding.writeVarUint(e, c.len)
      else if (c.kind === 'type') encoding.writeVarUint(e, c.ref)
      else {
        encoding.writeVarUint(e, c.values.length)
        for (const v of c.values) encoding.writeAny(e, v as never)
      }
    }
  }
  encoding.writeVarUint(e, model.ds.length)
  for (const entry of model.ds) {
    encoding.writeVarUint(e, entry.client)
    encoding.writeVarUint(e, entry.ranges.length)
    for (const [clock, len] of entry.ranges) {
      encoding.writeVarUint(e, clock)
      encoding.writeVarUint(e, len)
    }
  }
  return encoding.toUint8Array(e)
}
