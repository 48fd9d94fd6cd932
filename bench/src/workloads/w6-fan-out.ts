import { openNode } from '../lib/node-pair.js'
import type { ConvergentNode } from '../peers/convergent.js'
import { median, percentile, round } from '../lib/stats.js'
import { now, sleep, waitFor } from '../lib/time.js'
import { product } from '../lib/values.js'
import { spec, type Workload } from './types.js'

const OURS = ['convergent-yjs', 'convergent-automerge']

/**
 * W6 — fan-out: K real nodes on 127.0.0.1 (one process), each dialing the `degree` nodes
 * before it (a ring lattice: every node has 4–8 connections; libp2p refuses more than 5
 * inbound connections per second from one IP, and all of ours share 127.0.0.1). Writes come from
 * every node in turn, every `gapMs`; latency = from the put() call on the writer to the
 * change event on each other node. Median and p99 over every (write, receiver) pair.
 */
export const w6: Workload = {
  id: 'W6',
  title: 'W6 fan-out, 10 nodes',
  plan({ mode }) {
    const writes = mode === 'quick' ? 30 : 300
    const systems = mode === 'quick' ? OURS.slice(0, 1) : OURS
    return systems.map((s) => spec('W6', 'propagation', s, writes, { nodes: 10, degree: 4, gapMs: 20 }, 180_000))
  },
  async run(s, log) {
    const k = s.params.nodes ?? 10
    const gapMs = s.params.gapMs ?? 20
    const degree = s.params.degree ?? 4
    const nodes: Awaited<ReturnType<typeof openNode>>[] = []
    try {
      for (let i = 0; i < k; i++) nodes.push(await openNode(s.system))
      for (let i = 1; i < k; i++) {
        for (let j = Math.max(0, i - degree); j < i; j++) await nodes[i]!.node.connect(nodes[j]!.node.port!, nodes[j]!.node.token)
      }

      /** arrivals.get(id)[receiver] = time the change reached it. */
      const arrivals = new Map<string, number[]>()
      nodes.forEach((n, r) =>
        (n.node as ConvergentNode).onRemote((id) => {
          const row = arrivals.get(id) ?? []
          row[r] ??= now()
          arrivals.set(id, row)
        }),
      )
      const reachedAll = (id: string, writer: number): boolean => {
        const row = arrivals.get(id) ?? []
        return nodes.every((_, r) => r === writer || row[r] !== undefined)
      }
      // Warm-up: one write per node, seen everywhere, then a heartbeat for the meshes to form.
      await Promise.all(nodes.map((n, i) => n.node.put(`warm-up-${i}`, product(i))))
      await waitFor('the warm-up writes to reach every node', () => nodes.every((_, i) => reachedAll(`warm-up-${i}`, i)), 60_000)
      await sleep(1_500)

      const sent: { id: string; writer: number; at: number; ackMs: number }[] = []
      const acks: Promise<void>[] = []
      for (let w = 0; w < s.n; w++) {
        const writer = w % k
        const id = `w-${w}`
        const entry = { id, writer, at: now(), ackMs: NaN }
        sent.push(entry)
        acks.push(nodes[writer]!.node.put(id, product(w)).then(() => void (entry.ackMs = now() - entry.at)))
        await sleep(gapMs)
      }
      await Promise.all(acks)
      await waitFor('every write to reach every node', () => sent.every((e) => reachedAll(e.id, e.writer)), 60_000)

      const latencies = sent.flatMap((e) => arrivals.get(e.id)!.flatMap((t, r) => (r === e.writer || t === undefined ? [] : [t - e.at])))
      const p50 = median(latencies)
      log(`${latencies.length} deliveries: median ${round(p50)} ms, p99 ${round(percentile(latencies, 99))} ms`)
      return {
        primary: { name: 'propagation median', value: round(p50, 2), unit: 'ms', better: 'lower' },
        metrics: {
          p90Ms: round(percentile(latencies, 90), 2),
          p99Ms: round(percentile(latencies, 99), 2),
          maxMs: round(Math.max(...latencies), 2),
          ackMedianMs: round(median(sent.map((e) => e.ackMs)), 2),
          deliveries: latencies.length,
          nodes: k,
        },
      }
    } finally {
      for (const n of nodes) await n.close().catch(() => undefined)
    }
  },
}
