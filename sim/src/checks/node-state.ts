import { sha256, toHex } from '@convergent/core'
import type { CollectionPlan, HostNode } from '../run/context.js'
import { readRegisters } from '../workload/ledger.js'

/** A node's final state: one digest over every live entity, and its registers for the checks. */
export interface NodeState {
  node: number
  digest: string
  entities: number
  /** collection\0entity → writer → n */
  registers: Map<string, Map<number, number>>
}

/**
 * Reads every live entity of every collection on the node (through the real Replica API) and
 * hashes them in a canonical form (collections and ids sorted, object keys sorted). Two
 * replicas have equal digests exactly when they show the same values.
 */
export async function readNodeState(node: HostNode, plans: CollectionPlan[]): Promise<NodeState> {
  const registers = new Map<string, Map<number, number>>()
  const parts: string[] = []
  let entities = 0
  for (const plan of [...plans].sort((a, b) => a.name.localeCompare(b.name))) {
    const col = node.collection(plan.name)
    if (col === undefined) throw new Error(`${node.id} is not up: cannot read its state`)
    const rows: [string, Record<string, unknown>][] = []
    for await (const [id, value] of col.entries()) rows.push([id, value])
    rows.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    for (const [id, value] of rows) {
      entities++
      parts.push(`${plan.name}\u0000${id}\u0000${canonicalJson(value)}`)
      registers.set(`${plan.name}\u0000${id}`, readRegisters(value))
    }
  }
  return { node: node.index, digest: toHex(sha256(parts.join('\n'))).slice(0, 16), entities, registers }
}

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value)
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  const keys = Object.keys(value).sort()
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`
}
