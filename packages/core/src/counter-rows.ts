import { encode } from 'cborg'
import { concatBytes, sha256, toHex } from './hash.js'
import { decodeBounded } from './replication/messages/envelope.js'
import { asInt, asRecord } from './replication/messages/fields.js'

/**
 * A bounded counter's state as rows: one per holder (a replica, by its peer id), holding what
 * that holder added, took away and gave to others. Only the holder writes its own row, and its
 * numbers only grow:
 *   rights(h) = inc(h) + Σ out(j)[h] − Σ out(h) − dec(h)        value = min + Σ inc − Σ dec
 *
 * Two layouts carry the rows in the counter's document:
 * - development mode (no cluster): one key per number — `p|i|i` increments of i, `p|i|j`
 *   rights i gave to j, `n|i` decrements of i — as every earlier release wrote them;
 * - a cluster: one key per row, `r|<holder>|<version>`, whose value is the row signed by its
 *   holder's key (see SignedRows). A member can relay a row but not forge or alter one, so no
 *   writer of the counter can take another's rights, undo its decrements or change min.
 */
export interface Row {
  inc: number
  dec: number
  /** Rights given to other holders, by peer id (running totals). */
  out: Record<string, number>
}

export type Rows = Map<string, Row>

export function emptyRow(): Row {
  return { inc: 0, dec: 0, out: {} }
}

export function cloneRow(row: Row): Row {
  const copy: Row = { inc: row.inc, dec: row.dec, out: {} }
  for (const [to, n] of Object.entries(row.out)) giveTo(copy, to, n)
  return copy
}

export function rightsIn(rows: Rows, holder: string): number {
  let r = 0
  for (const [h, row] of rows) {
    if (h === holder) {
      r += row.inc - row.dec
      for (const n of Object.values(row.out)) r -= n
    } else r += amountTo(row, holder)
  }
  return r
}

/** What a row gave `to` (own keys only: a peer id such as 'constructor' is no inherited property). */
function amountTo(row: Row, to: string): number {
  return Object.hasOwn(row.out, to) ? row.out[to]! : 0
}

/** Adds n to what `row` gave `to` (defined, not assigned: a peer id '__proto__' is a plain key too). */
export function giveTo(row: Row, to: string, n: number): void {
  Object.defineProperty(row.out, to, { value: amountTo(row, to) + n, enumerable: true, writable: true, configurable: true })
}

export function valueIn(rows: Rows, min: number): number {
  let v = min
  for (const row of rows.values()) v += row.inc - row.dec
  return v
}

/** Every holder named (a row's own, or a recipient of rights) with its rights, most first. */
export function holdersIn(rows: Rows): [string, number][] {
  const names = new Set<string>(rows.keys())
  for (const row of rows.values()) for (const to of Object.keys(row.out)) names.add(to)
  return [...names].map((n) => [n, rightsIn(rows, n)] as [string, number]).sort((a, b) => b[1] - a[1])
}

// --- development mode: the unsigned layout of earlier releases ---

const P = 'p|'
const N = 'n|'

/** The rows of the unsigned layout (numbers that are not finite are read as 0). */
export function legacyRows(state: Record<string, unknown> | undefined): Rows {
  const rows: Rows = new Map()
  const rowOf = (h: string): Row => {
    let row = rows.get(h)
    if (row === undefined) rows.set(h, (row = emptyRow()))
    return row
  }
  for (const [key, raw] of Object.entries(state ?? {})) {
    const n = typeof raw === 'number' && Number.isFinite(raw) ? raw : 0
    if (key.startsWith(P)) {
      const [from, to] = key.slice(P.length).split('|')
      if (from === undefined || to === undefined) continue
      if (from === to) rowOf(from).inc += n
      else giveTo(rowOf(from), to, n)
    } else if (key.startsWith(N)) rowOf(key.slice(N.length)).dec += n
  }
  return rows
}

/** Writes one holder's row in the unsigned layout. */
export function writeLegacyRow(state: Record<string, unknown>, holder: string, row: Row): void {
  if (row.inc > 0) state[`${P}${holder}|${holder}`] = row.inc
  if (row.dec > 0) state[`${N}${holder}`] = row.dec
  for (const [to, n] of Object.entries(row.out)) state[`${P}${holder}|${to}`] = n
}

// --- a cluster: signed rows ---

/** Keys of signed rows: `r|<holder>|<version>`. */
export const ROW_PREFIX = 'r|'

/** Most recipients one row names, and the longest row value accepted (peer-written: bounded before decoding). */
export const MAX_ROW_RECIPIENTS = 1024
export const MAX_ROW_CHARS = 200_000

/** What a holder signs: a fixed context, so no other signature (a push's, a policy's) passes as a row's. */
const ROW_CONTEXT = new TextEncoder().encode('convergent counter row v1\n')

/** A row as signed: its version (one more per write of the holder) and the counter's min besides the numbers. */
export interface SignedRow extends Row {
  version: number
  min: number
}

/** Where a row belongs: a row signed for one counter entity never counts for another. */
export interface RowPlace {
  namespace: string
  collection: string
  id: string
  holder: string
}

export function rowKey(holder: string, version: number): string {
  return `${ROW_PREFIX}${holder}|${version}`
}

/** The holder and version a row key names, or undefined for any other key. */
export function parseRowKey(key: string): { holder: string; version: number } | undefined {
  if (!key.startsWith(ROW_PREFIX)) return undefined
  const bar = key.lastIndexOf('|')
  if (bar <= ROW_PREFIX.length) return undefined
  const digits = key.slice(bar + 1)
  if (!/^[1-9][0-9]{0,15}$/.test(digits)) return undefined
  const version = Number(digits)
  return Number.isSafeInteger(version) ? { holder: key.slice(ROW_PREFIX.length, bar), version } : undefined
}

export function encodeRowBody(row: SignedRow): Uint8Array {
  return encode({ v: row.version, m: row.min, i: row.inc, d: row.dec, o: row.out })
}

/** The bytes a holder's key signs for a row body. */
export function rowSigningInput(place: RowPlace, body: Uint8Array): Uint8Array {
  return concatBytes([ROW_CONTEXT, encode([place.namespace, place.collection, place.id, place.holder, body])])
}

/** A row's value in the document: base64url(body) '.' base64url(signature). */
export function rowValue(body: Uint8Array, signature: Uint8Array): string {
  return `${Buffer.from(body).toString('base64url')}.${Buffer.from(signature).toString('base64url')}`
}

/** Splits and decodes a row value; undefined for anything that is not a well-formed row of the version its key names. */
export function parseRowValue(value: unknown, version: number): { row: SignedRow; body: Uint8Array; signature: Uint8Array } | undefined {
  if (typeof value !== 'string' || value.length > MAX_ROW_CHARS) return undefined
  const dot = value.indexOf('.')
  if (dot <= 0 || dot === value.length - 1) return undefined
  try {
    const body = new Uint8Array(Buffer.from(value.slice(0, dot), 'base64url'))
    const signature = new Uint8Array(Buffer.from(value.slice(dot + 1), 'base64url'))
    if (signature.byteLength === 0 || signature.byteLength > 256) return undefined
    const r = asRecord(decodeBounded(body, 12 + 2 * MAX_ROW_RECIPIENTS, 'counter row'), 'counter row')
    const out: Record<string, number> = {}
    for (const [to, n] of Object.entries(asRecord(r.o, 'counter row out'))) {
      if (to.length === 0 || to.length > 256 || to.includes('|')) return undefined
      giveTo({ inc: 0, dec: 0, out }, to, asInt(n, 'counter row transfer'))
    }
    const row: SignedRow = {
      version: asInt(r.v, 'counter row version', 1),
      min: asInt(r.m, 'counter row min', Number.MIN_SAFE_INTEGER),
      inc: asInt(r.i, 'counter row increments'),
      dec: asInt(r.d, 'counter row decrements'),
      out,
    }
    return row.version === version ? { row, body, signature } : undefined
  } catch {
    return undefined
  }
}

/** What signs and checks rows: the replica's own key, its peers' keys, and the namespace rows are signed for. */
export interface RowSigner {
  namespace: string
  sign(data: Uint8Array): Promise<Uint8Array>
  verify(peer: string, data: Uint8Array, signature: Uint8Array): Promise<boolean>
}

/** The rows of one counter entity that count: per holder, its valid row of the highest version. */
export interface RowsView {
  rows: Rows
  best: Map<string, SignedRow>
  /** The keys of each holder's rows present (its own write deletes them all but the new one). */
  keys: Map<string, string[]>
  /** Row keys above a holder's best whose signature was not checked yet (see SignedRows.check). */
  unchecked: number
}

/** Verdicts remembered (valid or not), and signatures checked by one check() at most. */
const MAX_VERDICTS = 10_000
const MAX_CHECKS_PER_STATE = 256

/**
 * Signed rows of the counters of one replica: signs its own, checks others' (each row once:
 * verdicts are remembered by collection, id, key and value) and says which rows count.
 * Reading never trusts a row whose signature was not checked: check() first (async), then
 * view() (sync, from the verdicts) — the split lets a write re-read the state atomically.
 */
export class SignedRows {
  private readonly verdicts = new Map<string, boolean>()

  constructor(
    readonly signer: RowSigner,
    /** Told once per row that does not verify (a forged or damaged row is ignored, never counted). */
    private readonly onInvalid: (collection: string, id: string, key: string) => void = () => undefined,
  ) {}

  /** Signs a row of this replica and returns the value to store under rowKey(holder, version). */
  async seal(collection: string, id: string, holder: string, row: SignedRow): Promise<string> {
    const body = encodeRowBody(row)
    const signature = await this.signer.sign(rowSigningInput({ namespace: this.signer.namespace, collection, id, holder }, body))
    const value = rowValue(body, signature)
    this.remember(collection, id, rowKey(holder, row.version), value, true)
    return value
  }

  /** Checks the signatures of the rows of `state` that could count and were not checked yet. */
  async check(collection: string, id: string, state: Record<string, unknown> | undefined): Promise<void> {
    let budget = MAX_CHECKS_PER_STATE
    for (const [holder, candidates] of candidatesOf(state)) {
      for (const { key, version } of candidates) {
        const value = state![key]
        const known = this.verdicts.get(verdictKey(collection, id, key, value))
        if (known === true) break // the best row of this holder: lower versions never count
        if (known === false) continue
        if (budget-- <= 0) return
        const parsed = parseRowValue(value, version)
        let ok = false
        if (parsed !== undefined) {
          const input = rowSigningInput({ namespace: this.signer.namespace, collection, id, holder }, parsed.body)
          ok = await this.signer.verify(holder, input, parsed.signature).catch(() => false)
        }
        this.remember(collection, id, key, value, ok)
        if (!ok) this.onInvalid(collection, id, key)
        else break
      }
    }
  }

  /** The rows that count, from the verdicts check() left (a row not checked yet does not count). */
  view(collection: string, id: string, state: Record<string, unknown> | undefined): RowsView {
    const view: RowsView = { rows: new Map(), best: new Map(), keys: new Map(), unchecked: 0 }
    for (const [holder, candidates] of candidatesOf(state)) {
      view.keys.set(
        holder,
        candidates.map((c) => c.key),
      )
      for (const { key, version } of candidates) {
        const value = state![key]
        const known = this.verdicts.get(verdictKey(collection, id, key, value))
        if (known === undefined) view.unchecked++
        if (known !== true) continue
        const parsed = parseRowValue(value, version)!
        view.best.set(holder, parsed.row)
        view.rows.set(holder, { inc: parsed.row.inc, dec: parsed.row.dec, out: parsed.row.out })
        break
      }
    }
    return view
  }

  private remember(collection: string, id: string, key: string, value: unknown, ok: boolean): void {
    if (this.verdicts.size >= MAX_VERDICTS) this.verdicts.delete(this.verdicts.keys().next().value!)
    this.verdicts.set(verdictKey(collection, id, key, value), ok)
  }
}

/** A holder whose best row `after` has a lower version than `before` (or none): a change that takes a row back. */
export function rowTakenBack(before: RowsView, after: RowsView): string | undefined {
  for (const [holder, row] of before.best) if ((after.best.get(holder)?.version ?? 0) < row.version) return holder
  return undefined
}

/** Row keys of a state per holder, highest version first. */
function candidatesOf(state: Record<string, unknown> | undefined): Map<string, { key: string; version: number }[]> {
  const byHolder = new Map<string, { key: string; version: number }[]>()
  for (const [key, value] of Object.entries(state ?? {})) {
    const parsed = typeof value === 'string' ? parseRowKey(key) : undefined // nothing else is ever a row
    if (parsed === undefined) continue
    let list = byHolder.get(parsed.holder)
    if (list === undefined) byHolder.set(parsed.holder, (list = []))
    list.push({ key, version: parsed.version })
  }
  for (const list of byHolder.values()) list.sort((a, b) => b.version - a.version)
  return byHolder
}

function verdictKey(collection: string, id: string, key: string, value: unknown): string {
  return toHex(sha256(new TextEncoder().encode(`${collection}\u0000${id}\u0000${key}\u0000${String(value)}`)))
}
