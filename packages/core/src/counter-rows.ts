import { encode } from 'cborg'
import { ConvergentError } from './errors.js'
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
 * - a cluster: one key per row, `$row|<holder>|<version>|<hash>`, whose value is the row signed
 *   by its holder's key (see SignedRows). A member can relay a row but not forge or alter one,
 *   so no writer of the counter can take another's rights or undo its decrements. A holder's
 *   numbers are the field-wise maximum over its valid rows, so they only grow, whatever rows a
 *   change brings or drops. min is no part of the data: each replica adds its own (the same on
 *   every replica); rights never depend on it.
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
  setAmount(row.out, to, amountTo(row, to) + n)
}

/** Sets what a map of amounts holds for `peer` (defined, not assigned: a peer id '__proto__' is a plain key too). */
export function setAmount(map: Record<string, number>, peer: string, n: number): void {
  Object.defineProperty(map, peer, { value: n, enumerable: true, writable: true, configurable: true })
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

/**
 * Keys of signed rows: `$row|<holder>|<version>|<hash>`, the hash being the first 16 hex digits
 * of the SHA-256 of the value (top-level keys of that form are reserved in a counter's document).
 * Content-addressed: two different values never share a key, so a forged value can never sit
 * as a hidden conflict under a genuine row's key and come back when the holder deletes it.
 */
export const ROW_PREFIX = '$row|'

/**
 * Most recipients one row names (a cluster has at most POLICY_LIMITS.maxMembers members), and
 * the longest row value accepted (peer-written: bounded before decoding).
 */
export const MAX_ROW_RECIPIENTS = 4096
export const MAX_ROW_CHARS = 400_000

/** What a holder signs: a fixed context, so no other signature (a push's, a policy's) passes as a row's. */
const ROW_CONTEXT = new TextEncoder().encode('convergent counter row v1\n')

/**
 * A row as signed: its version (one more per write of the holder) besides the numbers, and the
 * rights it counted as received from each other holder when it signed (its receipts): a row
 * spends no more than it says it holds (inc + Σ received − Σ out − dec ≥ 0, checked from the row
 * alone), and a receiver takes it once the rows it names show those rights given (rowsVerdict).
 */
export interface SignedRow extends Row {
  version: number
  received?: Record<string, number>
}

/** What a row says its holder holds after it: its own increments and receipts, less what it gave and took. */
export function heldBy(row: SignedRow): number {
  let held = row.inc - row.dec
  for (const n of Object.values(row.received ?? {})) held += n
  for (const n of Object.values(row.out)) held -= n
  return held
}

/** Where a row belongs: a row signed for one counter entity never counts for another. */
export interface RowPlace {
  namespace: string
  collection: string
  id: string
  holder: string
}

export function rowKey(holder: string, version: number, value: string): string {
  return `${ROW_PREFIX}${holder}|${version}|${valueHash(value)}`
}

function valueHash(value: string): string {
  return toHex(sha256(new TextEncoder().encode(value)).subarray(0, 8))
}

export function isRowKey(key: string): boolean {
  return key.startsWith(ROW_PREFIX)
}

/** The holder, version and value hash a row key names, or undefined for any other key. */
export function parseRowKey(key: string): { holder: string; version: number; hash: string } | undefined {
  if (!isRowKey(key)) return undefined
  const m = /\|([1-9][0-9]{0,15})\|([0-9a-f]{16})$/.exec(key)
  if (m === null || m.index <= ROW_PREFIX.length) return undefined
  const version = Number(m[1])
  return Number.isSafeInteger(version) ? { holder: key.slice(ROW_PREFIX.length, m.index), version, hash: m[2]! } : undefined
}

/** The row a key and value hold, or undefined unless the value is a well-formed row of the version and hash its key names. */
export function rowAt(key: string, value: unknown): { holder: string; row: SignedRow; body: Uint8Array; signature: Uint8Array } | undefined {
  const place = parseRowKey(key)
  if (place === undefined || typeof value !== 'string' || value.length > MAX_ROW_CHARS || valueHash(value) !== place.hash) return undefined
  const parsed = parseRowValue(value, place.version)
  return parsed === undefined ? undefined : { holder: place.holder, ...parsed }
}

export function encodeRowBody(row: SignedRow): Uint8Array {
  return encode({ v: row.version, i: row.inc, d: row.dec, o: row.out, r: row.received ?? {} })
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
    // Canonical base64url only: one row, one value (and so one key), however it is spelled.
    if (rowValue(body, signature) !== value) return undefined
    const r = asRecord(decodeBounded(body, 14 + 4 * MAX_ROW_RECIPIENTS, 'counter row'), 'counter row')
    const amounts = (field: unknown, what: string): Record<string, number> | undefined => {
      const map: Record<string, number> = {}
      const entries = Object.entries(asRecord(field ?? {}, what))
      if (entries.length > MAX_ROW_RECIPIENTS) return undefined
      for (const [peer, n] of entries) {
        if (peer.length === 0 || peer.length > 256 || peer.includes('|')) return undefined
        giveTo({ inc: 0, dec: 0, out: map }, peer, asInt(n, what))
      }
      return map
    }
    const out = amounts(r.o, 'counter row out')
    const received = amounts(r.r, 'counter row receipts')
    if (out === undefined || received === undefined) return undefined
    const row: SignedRow = {
      version: asInt(r.v, 'counter row version', 1),
      inc: asInt(r.i, 'counter row increments'),
      dec: asInt(r.d, 'counter row decrements'),
      out,
      received,
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
  /** Per holder, the receipts its valid rows claim, field-wise at their maximum (as `rows`). */
  received: Map<string, Record<string, number>>
  best: Map<string, SignedRow>
  /** The keys of each holder's rows present (its own write deletes them all but the new one). */
  keys: Map<string, string[]>
  /** Row keys whose signature was not checked yet (see SignedRows.check). */
  unchecked: number
}

/** Verdicts remembered (valid or not), least recently used forgotten first. */
const MAX_VERDICTS = 50_000

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
    /** Told once per row that does not verify (a forged or damaged row is never counted). */
    private readonly onInvalid: (collection: string, id: string, key: string) => void = () => undefined,
  ) {}

  /**
   * Signs a row of this replica and returns the value to store under rowKey(holder, version, value).
   * Throws ERR_INVALID_ARGUMENT for a row no replica could read back (it is never written).
   */
  async seal(collection: string, id: string, holder: string, row: SignedRow): Promise<string> {
    const body = encodeRowBody(row)
    const signature = await this.signer.sign(rowSigningInput({ namespace: this.signer.namespace, collection, id, holder }, body))
    const value = rowValue(body, signature)
    if (parseRowValue(value, row.version) === undefined) {
      throw new ConvergentError(
        'ERR_INVALID_ARGUMENT',
        `counter '${collection}/${id}': this replica's row would not be readable (over ${MAX_ROW_RECIPIENTS} recipients, or an amount past 2^53); nothing was written`,
      )
    }
    this.remember(verdictKey(collection, id, rowKey(holder, row.version, value), value), true)
    return value
  }

  /** Checks every row of `state` whose signature was not checked yet (each verdict remembered). */
  async check(collection: string, id: string, state: Record<string, unknown> | undefined): Promise<void> {
    for (const [key, value] of Object.entries(state ?? {})) {
      if (!isRowKey(key)) continue
      const vk = verdictKey(collection, id, key, value)
      const known = this.verdicts.get(vk)
      if (known !== undefined) {
        this.remember(vk, known) // recently used
        continue
      }
      const at = rowAt(key, value)
      let ok = false
      if (at !== undefined) {
        const input = rowSigningInput({ namespace: this.signer.namespace, collection, id, holder: at.holder }, at.body)
        ok = await this.signer.verify(at.holder, input, at.signature).catch(() => false)
      }
      this.remember(vk, ok)
      if (!ok) this.onInvalid(collection, id, key)
    }
  }

  /** Checks one row (remembered); true if it verifies under the holder its key names. */
  async checkOne(collection: string, id: string, key: string, value: unknown): Promise<boolean> {
    await this.check(collection, id, { [key]: value })
    return this.verdict(collection, id, key, value) === true
  }

  /** Whether a row key and value was checked: true (valid), false, or undefined (not checked yet). */
  verdict(collection: string, id: string, key: string, value: unknown): boolean | undefined {
    return this.verdicts.get(verdictKey(collection, id, key, value))
  }

  /**
   * The rows that count, from the verdicts check() left: per holder, the field-wise maximum of
   * its valid rows (and its valid row of the highest version, whose successor it signs next).
   * A row not checked yet does not count.
   */
  view(collection: string, id: string, state: Record<string, unknown> | undefined): RowsView {
    const view: RowsView = { rows: new Map(), received: new Map(), best: new Map(), keys: new Map(), unchecked: 0 }
    for (const [key, value] of Object.entries(state ?? {})) {
      if (!isRowKey(key)) continue
      const known = this.verdicts.get(verdictKey(collection, id, key, value))
      if (known === undefined) view.unchecked++
      const place = parseRowKey(key)
      if (place === undefined) continue
      const keys = view.keys.get(place.holder) ?? []
      keys.push(key)
      view.keys.set(place.holder, keys)
      const parsed = known === true ? rowAt(key, value) : undefined
      if (parsed === undefined) continue
      const best = view.best.get(place.holder)
      if (best === undefined || best.version < parsed.row.version) view.best.set(place.holder, parsed.row)
      view.rows.set(place.holder, maxRow(view.rows.get(place.holder), parsed.row))
      const received = view.received.get(place.holder) ?? {}
      for (const [from, n] of Object.entries(parsed.row.received ?? {}))
        setAmount(received, from, Math.max(Object.hasOwn(received, from) ? received[from]! : 0, n))
      view.received.set(place.holder, received)
    }
    return view
  }

  private remember(key: string, ok: boolean): void {
    this.verdicts.delete(key)
    if (this.verdicts.size >= MAX_VERDICTS) this.verdicts.delete(this.verdicts.keys().next().value!)
    this.verdicts.set(key, ok)
  }
}

/** The field-wise maximum of two rows of one holder (numbers only grow, so it is the newer one's, unless an older row was lost). */
function maxRow(a: Row | undefined, b: Row): Row {
  if (a === undefined) return cloneRow(b)
  const out = cloneRow(a)
  out.inc = Math.max(a.inc, b.inc)
  out.dec = Math.max(a.dec, b.dec)
  for (const [to, n] of Object.entries(b.out)) if (n > amountTo(out, to)) giveTo(out, to, n - amountTo(out, to))
  return out
}

/** Most rows of one holder one change may add (an honest write adds one). */
export const MAX_ROWS_PER_HOLDER = 8

/** Keys of the unsigned layout (development mode, earlier releases): kept in a counter's document, never counted in a cluster. */
function isUnsignedCounterKey(key: string): boolean {
  return key === 'min' || key.startsWith('p|') || key.startsWith('n|')
}

/** The row keys (and values) a change adds or changes: what a verdict has to check. */
export function changedRows(before: Record<string, unknown> | undefined, after: Record<string, unknown> | undefined): [key: string, value: unknown][] {
  return Object.entries(after ?? {}).filter(
    ([key, value]) => isRowKey(key) && !(before !== undefined && Object.hasOwn(before, key) && sameValue(before[key], value)),
  )
}

/**
 * Whether a remote change may turn a counter entity's `before` into `after`: 'ok'; 'later'
 * (a row's signature is not checked yet: see SignedRows.checkOne; not the sender's fault, the
 * change comes again); or why it is refused. A change is refused only for what it carries —
 * never for this replica's policy, configuration, what arrived first or what the document held
 * already: a refused change is refused with every change built on it, so a rule two replicas
 * could judge differently would split them for good. The rules, which every honest change meets:
 *  - every row key it adds or changes holds a row that verifies under its holder's key (signed
 *    for this namespace, collection and id), at most MAX_ROWS_PER_HOLDER rows per holder;
 *  - it puts no second, different value under a row key (`conflicted` now and not `before`:
 *    a value hidden behind a genuine one would come into view when the holder deletes it);
 *  - it takes no holder's numbers down (deletes or overwrites a row that held its highest);
 *  - it writes no other key than rows and the unsigned layout of development mode.
 *  - every row it adds spends no more than it says its holder holds (its receipts), and waits
 *    ('later') until the rows of those it names as givers show that much given;
 *  - the rows it adds leave their holder's rows with it (its own past and itself), taken at
 *    their field-wise maximum as they are counted, holding no less than nothing — so sequential
 *    rows cannot each spend the same rights on another field (review4-counter-rows, HOLE 3);
 *    receipts count only as far as the givers' rows there show them given (a row claiming more,
 *    deleted again, lifts nothing: review-provisional-overspend, HOLE 1 and 2);
 *  - it leaves no entity absent that it writes (rows under an unset exists flag are hidden from
 *    these rules until the genuine entity's flag shows them: there, HOLE 5).
 * Rights are judged per change, never over the whole document: whether a holder spent more than
 * it held overall depends on which rows a replica has, so such a rule would split replicas (a
 * holder that signs two rows of one version spending the same rights would have each side take
 * one). So a holder's own code can still spend the rights it really received more than once in
 * rows signed concurrently; every replica then shows it alike (its rights below 0). "No
 * holder's numbers go down" is judged per change against its own causal
 * past (`steps`: the value at its dependencies, and with it), not against the document the
 * receiver holds: two concurrent changes of a member that each delete one of its own rows of
 * equal numbers then pass everywhere alike — together they take those numbers down, on every
 * replica the same (the same class as spending twice), rather than splitting replicas that
 * took them in a different order (review4-counter-rows.test.ts, HOLE 1). With `steps`, each
 * change is also judged as if it came alone — the rows it adds, also those a later change of the
 * delta deletes — and every row the delta removes must be removed in view by one of its changes
 * (so no change removes what its own past lacks: review5-counter-rows.test.ts).
 * The checks that need no signature come first: a refused change costs no verify.
 */
export function rowsVerdict(
  rows: SignedRows,
  where: { collection: string; id: string },
  before: Record<string, unknown> | undefined,
  after: Record<string, unknown> | undefined,
  conflicted: { before: readonly string[]; after: readonly string[] },
  /**
   * The changes the delta adds, each with the value at its dependencies and with it (backends
   * with a history): "no numbers go down" is judged per change against its own causal past.
   * Undefined: against `before`, the receiver's document.
   */
  steps?: readonly CausalStep[],
): 'ok' | 'later' | { refused: string } {
  const { collection, id } = where
  const name = `counter '${collection}/${id}'`
  const shown = (key: string) => JSON.stringify(key.slice(0, 64))
  for (const key of conflicted.after) {
    if (isRowKey(key) && !conflicted.before.includes(key)) return { refused: `${name}: the change puts a second value under row key ${shown(key)}` }
  }
  for (const [key, value] of Object.entries(after ?? {})) {
    if (isRowKey(key) || isUnsignedCounterKey(key)) continue
    if (!(before !== undefined && Object.hasOwn(before, key) && sameValue(before[key], value))) {
      return { refused: `${name}: the change writes ${shown(key)}, which is not a signed row` }
    }
  }
  // A change that leaves the entity absent (the backend's exists flag never set) hides what it
  // writes from every rule here — rows that come into view with the flag of the genuine entity
  // and refuse it for good (review-provisional-overspend, HOLE 5). No honest change of a counter
  // does that: each writes a row of an entity that exists. Judged per change where the changes
  // are known (the same everywhere), else when the delta leaves an absent entity absent.
  if (steps !== undefined) {
    const hidden = steps.find((step) => step.before === undefined && step.after === undefined)
    if (hidden !== undefined) return { refused: `${name}: change ${hidden.hash.slice(0, 16)} writes the entity and leaves it absent` }
  } else if (before === undefined && after === undefined) return { refused: `${name}: the change writes the entity and leaves it absent` }
  const whole = addedRows(rows, where, before, after)
  if ('refused' in whole) return whole
  let unchecked = whole.unchecked
  // Where the holders that rows are added for must hold no less than nothing (see below).
  const spent = steps === undefined ? [{ state: after, holders: holdersOf(whole.added) }] : []
  if (steps !== undefined) {
    // Each change as if it came alone: the rows it adds (a forged one refuses it, and the delta,
    // at the first verify; rows a later change of the delta deletes are no way round the rules) …
    for (const step of steps) {
      const own = addedRows(rows, where, step.before, step.after)
      if ('refused' in own) return { refused: `${own.refused} (change ${step.hash.slice(0, 16)})` }
      if (own.unchecked) unchecked = true
      if (own.added.length > 0) spent.push({ state: step.after, holders: holdersOf(own.added) })
    }
    // … and what the delta removes from the document, one of its changes removes in view: a
    // change cannot delete what its own past lacks (a delete naming a row its dependencies do not
    // hold, or a value hidden at its dependencies — the backend's delete flag — is seen by no step).
    const unseen = unseenRemoval(before, after, steps)
    if (unseen !== undefined) return { refused: `${name}: the change removes row ${shown(unseen)}, which none of its changes holds in its own past` }
  }
  if (unchecked || rows.view(collection, id, before).unchecked > 0) return 'later'
  const b = rows.view(collection, id, before)
  const a = rows.view(collection, id, after)
  // A row's receipts must be backed by the rows of those that gave: until they are here, later
  // (more rows only ever back more; an honest row's givers are rows its change depends on).
  for (const { holder, row } of whole.added) {
    for (const [from, n] of Object.entries(row.received ?? {})) {
      const given = a.rows.get(from)
      if (from === holder || given === undefined || amountTo(given, holder) < n) return 'later'
    }
  }
  // A holder's numbers are the field-wise maximum of its rows: rows that each spend the same
  // rights on another field (one change's v1 decrements 20, v2 gives the 20 away) spend them twice.
  // So the rows a change adds must leave their holder's maximum holding no less than nothing —
  // judged with the change's own past (the same on every replica), or past MAX_CAUSAL_STEPS
  // with the document here.
  for (const { state, holders } of spent) {
    const over = overspender(rows, where, state, holders)
    if (over === 'later') return 'later'
    if (over !== undefined) return { refused: `${name}: ${over.holder}'s rows together spend more than they say it holds` }
  }
  if (steps === undefined) {
    const holder = takenBack(b, a)
    return holder === undefined ? 'ok' : { refused: `${name}: the change takes back numbers of ${holder}'s signed rows` }
  }
  // Each change against its own causal past: the same verdict on every replica, whatever else it
  // holds. Only the holders whose rows it removes can go down (their rows are all it has to check).
  for (const step of steps) {
    const holders = removedHolders(step.before, step.after)
    if (holders.size === 0) continue
    const was = rows.view(collection, id, rowsOf(step.before, holders))
    const now = rows.view(collection, id, rowsOf(step.after, holders))
    if (was.unchecked > 0 || now.unchecked > 0) return 'later'
    const holder = takenBack(was, now)
    if (holder !== undefined) return { refused: `${name}: change ${step.hash.slice(0, 16)} takes back numbers of ${holder}'s signed rows` }
  }
  return 'ok'
}

/**
 * The rows a change adds or changes from `before` to `after`, judged without the document: each
 * a row, no more than MAX_ROWS_PER_HOLDER of a holder, spending no more than it says it holds,
 * not known forged; `unchecked` if one was not checked yet.
 */
function addedRows(
  rows: SignedRows,
  where: { collection: string; id: string },
  before: Record<string, unknown> | undefined,
  after: Record<string, unknown> | undefined,
): { refused: string } | { unchecked: boolean; added: { holder: string; row: SignedRow }[] } {
  const { collection, id } = where
  const name = `counter '${collection}/${id}'`
  const shown = (key: string) => JSON.stringify(key.slice(0, 64))
  // Rows one change adds per holder (what the change carries, not what the document holds).
  const changed = changedRows(before, after)
  const perHolder = new Map<string, number>()
  for (const [key] of changed) {
    const place = parseRowKey(key)
    if (place !== undefined) perHolder.set(place.holder, (perHolder.get(place.holder) ?? 0) + 1)
  }
  let unchecked = false
  const added: { holder: string; row: SignedRow }[] = []
  for (const [key, value] of changed) {
    const place = rowAt(key, value)
    if (place === undefined) return { refused: `${name}: ${shown(key)} is not a row` }
    if ((perHolder.get(place.holder) ?? 0) > MAX_ROWS_PER_HOLDER) return { refused: `${name}: more than ${MAX_ROWS_PER_HOLDER} rows of ${place.holder}` }
    if (heldBy(place.row) < 0) return { refused: `${name}: a row of ${place.holder} spends ${-heldBy(place.row)} more than it says it holds` }
    const verdict = rows.verdict(collection, id, key, value)
    if (verdict === false) return { refused: `${name}: row ${shown(key)} does not verify under its holder's key` }
    if (verdict === undefined) unchecked = true
    added.push({ holder: place.holder, row: place.row })
  }
  return { unchecked, added }
}

/** The row keys `before` holds that `after` lacks or holds another value under: what a change removed. */
export function removedRows(before: Record<string, unknown> | undefined, after: Record<string, unknown> | undefined): string[] {
  return Object.keys(before ?? {}).filter((key) => isRowKey(key) && !(after !== undefined && Object.hasOwn(after, key) && sameValue(before![key], after[key])))
}

/** The holders whose rows a change removed (those whose numbers it may take down). */
export function removedHolders(before: Record<string, unknown> | undefined, after: Record<string, unknown> | undefined): Set<string> {
  const holders = new Set<string>()
  for (const key of removedRows(before, after)) {
    const place = parseRowKey(key)
    if (place !== undefined) holders.add(place.holder)
  }
  return holders
}

function holdersOf(added: readonly { holder: string }[]): Set<string> {
  return new Set(added.map((a) => a.holder))
}

/** The holders a change adds or changes rows of (see removedHolders). */
export function addedHolders(before: Record<string, unknown> | undefined, after: Record<string, unknown> | undefined): Set<string> {
  const holders = new Set<string>()
  for (const [key] of changedRows(before, after)) {
    const place = parseRowKey(key)
    if (place !== undefined) holders.add(place.holder)
  }
  return holders
}

/**
 * The rows `overspender` reads in `state`: those of `holders`, and those of every giver their
 * rows name in their receipts (what backs the receipts). The receive path checks them first.
 */
export function overspendRows(state: Record<string, unknown> | undefined, holders: ReadonlySet<string>): Record<string, unknown> {
  const own = rowsOf(state, holders)
  const givers = new Set<string>()
  for (const [key, value] of Object.entries(own)) {
    for (const from of Object.keys(rowAt(key, value)?.row.received ?? {})) if (!holders.has(from)) givers.add(from)
  }
  return givers.size === 0 ? own : { ...own, ...rowsOf(state, givers) }
}

/**
 * One of `holders` whose valid rows in `state`, taken field-wise at their maximum (increments,
 * decrements, each recipient's and each giver's amount), hold less than nothing — as a holder's
 * numbers are counted (SignedRows.view). Receipts count only as far as the givers' rows in the
 * same `state` show them given: a row's receipts are backed only while the row stays (rowsVerdict),
 * so a row a later change deletes (or one whose delete the receiver holds already) could otherwise
 * lift the maximum with receipts no giver made (review-provisional-overspend, HOLE 1 and 2). An
 * honest holder's rows only grow, so their maximum is its newest row, whose receipts its own past
 * shows given (Counter.writeSigned checks that at the write), and which holds no less than
 * nothing. 'later' while one of the rows read was not checked.
 */
function overspender(
  rows: SignedRows,
  where: { collection: string; id: string },
  state: Record<string, unknown> | undefined,
  holders: ReadonlySet<string>,
): { holder: string } | 'later' | undefined {
  const view = rows.view(where.collection, where.id, overspendRows(state, holders))
  if (view.unchecked > 0) return 'later'
  for (const holder of holders) {
    const row = view.rows.get(holder)
    if (row === undefined) continue
    const backed: Record<string, number> = {}
    for (const [from, n] of Object.entries(view.received.get(holder) ?? {})) {
      const gave = view.rows.get(from)
      setAmount(backed, from, from === holder || gave === undefined ? 0 : Math.min(n, amountTo(gave, holder)))
    }
    if (heldBy({ ...row, version: 0, received: backed }) < 0) return { holder }
  }
  return undefined
}

/** The rows of `holders` in `state`. */
export function rowsOf(state: Record<string, unknown> | undefined, holders: ReadonlySet<string>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(state ?? {})) {
    const place = parseRowKey(key)
    if (place !== undefined && holders.has(place.holder)) out[key] = value
  }
  return out
}

/**
 * A row the delta removes from the document — one `before` held, or one of its changes added —
 * that none of its changes removes in view (holds before it and not with it), if any. An honest
 * change removes only what its past holds (Automerge deletes what it sees), so every row an
 * honest delta removes is removed in view by one of its changes. (A row of their common past
 * that a change of `before` deleted is no candidate: the delta did not remove it.)
 */
function unseenRemoval(
  before: Record<string, unknown> | undefined,
  after: Record<string, unknown> | undefined,
  steps: readonly CausalStep[],
): string | undefined {
  const seen = new Set<string>()
  for (const step of steps) for (const key of removedRows(step.before, step.after)) seen.add(key)
  const candidates = [...Object.keys(before ?? {}), ...steps.flatMap((step) => changedRows(step.before, step.after).map(([key]) => key))]
  return candidates.find((key) => isRowKey(key) && !(after !== undefined && Object.hasOwn(after, key)) && !seen.has(key))
}

/** One change a delta adds, as the value before it (at its dependencies) and with it. */
export interface CausalStep {
  hash: string
  before: Record<string, unknown> | undefined
  after: Record<string, unknown> | undefined
}

/** A holder whose numbers are lower in `now` than in `was` (rows deleted or overwritten), if any. */
function takenBack(was: RowsView, now: RowsView): string | undefined {
  for (const [holder, row] of was.rows) {
    const after = now.rows.get(holder) ?? emptyRow()
    if (after.inc < row.inc || after.dec < row.dec || Object.entries(row.out).some(([to, n]) => amountTo(after, to) < n)) return holder
  }
  return undefined
}

function sameValue(a: unknown, b: unknown): boolean {
  return a === b || (typeof a === 'object' && typeof b === 'object' && JSON.stringify(a) === JSON.stringify(b))
}

function verdictKey(collection: string, id: string, key: string, value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? '')
  return toHex(sha256(new TextEncoder().encode(`${collection}\u0000${id}\u0000${key}\u0000${text}`)))
}
