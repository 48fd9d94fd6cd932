import type { Workload } from './types.js'
import { w1 } from './w1-local-writes.js'
import { w2 } from './w2-live-replication.js'
import { w3 } from './w3-late-joiner.js'
import { w4 } from './w4-partition-heal.js'
import { w5 } from './w5-scale.js'
import { w6 } from './w6-fan-out.js'
import { obs } from './obs-overhead.js'
import { enc } from './enc-overhead.js'
import { trust } from './trust-overhead.js'

export type { Workload, PlanOptions, Mode } from './types.js'

export const WORKLOADS: readonly Workload[] = [w1, w2, w3, w4, w5, w6, obs, enc, trust]

export function workload(id: string): Workload {
  const w = WORKLOADS.find((x) => x.id === id)
  if (w === undefined) throw new Error(`unknown workload '${id}'; known: ${WORKLOADS.map((x) => x.id).join(', ')}`)
  return w
}
