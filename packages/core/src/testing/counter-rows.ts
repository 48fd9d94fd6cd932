import { sign } from 'node:crypto'
import { encodeRowBody, parseRowKey, rowKey, rowSigningInput, rowValue, type SignedRow } from '../counter-rows.js'
import type { Keyring } from './keyring.js'
import type { Replica } from '../replica.js'

/**
 * Test helpers for counters' signed rows (keys are `$row|<holder>|<version>|<hash of value>`):
 * what an attacker writing a counter's document directly, or a test reading one, needs.
 */

/** Puts `value` under the row key of `holder` and `version` (a non-string value is keyed by its JSON). */
export function putRow(state: Record<string, unknown>, holder: string, version: number, value: unknown): void {
  state[rowKey(holder, version, typeof value === 'string' ? value : JSON.stringify(value))] = value
}

/** The key of the row of `holder` and `version` in `state` (throws if there is none). */
export function rowKeyIn(state: Record<string, unknown>, holder: string, version: number): string {
  const key = Object.keys(state).find((k) => {
    const p = parseRowKey(k)
    return p?.holder === holder && p.version === version
  })
  if (key === undefined) throw new Error(`no row of ${holder} version ${version}`)
  return key
}

/** Every key of `state` as '<holder>|<version>' for rows, as is for anything else; sorted. */
export function rowNames(state: Record<string, unknown> | undefined): string[] {
  return Object.keys(state ?? {})
    .map((k) => {
      const p = parseRowKey(k)
      return p === undefined ? k : `${p.holder}|${p.version}`
    })
    .sort()
}

/**
 * Makes a replica write like a member running its own code: its local counter checks (the
 * ERR_FORBIDDEN a write every peer would refuse gets) are skipped, so what it writes through
 * collection() goes out as it is — the receivers' guards are what a test of an attack measures.
 */
export function asForger(replica: Replica): Replica {
  ;(replica as unknown as { services: { counterWriteRefusal?: unknown } }).services.counterWriteRefusal = undefined
  return replica
}

/** A row of `holder` for a counter id, signed with `signer`'s test key (the holder's own, or a forger's). */
export function signedRow(
  keys: Keyring,
  signer: string,
  holder: string,
  id: string,
  fields: Partial<SignedRow> & { version: number },
  collection = 'stock',
  namespace = 'default',
): string {
  const body = encodeRowBody({ inc: 0, dec: 0, out: {}, ...fields })
  return rowValue(body, sign(null, rowSigningInput({ namespace, collection, id, holder }, body), keys.key(signer).priv))
}
