import { randomBytes } from 'node:crypto'
import { folderPeerId } from 'convergent'
import { openNode, openPair } from '../lib/node-pair.js'
import { median, perSecond, round } from '../lib/stats.js'
import { waitFor } from '../lib/time.js'
import { tempDir } from '../lib/tmp.js'
import { alternate, overhead, spread } from '../lib/variants.js'
import type { ConvergentNode } from '../peers/convergent.js'
import { spec, type Workload } from './types.js'
import { timeLocalWrites } from './w1-local-writes.js'
import { timeLiveReplication } from './w2-live-replication.js'
import { timeLateJoiner } from './w3-late-joiner.js'

const OURS = ['convergent-yjs', 'convergent-automerge']
type Variant = 'plain' | 'cluster'
const VARIANTS: readonly Variant[] = ['plain', 'cluster']

/** A policy that allows what 'plain' allows: the given peers members, every collection read and written by every member. */
const policyFor = (...members: string[]) => ({ roles: { all: members }, collections: { '*': { read: ['*'], write: ['*'] } } })

/**
 * TRUST — what the trust boundary costs, signed writes included: W1 (local writes, 10k distinct
 * new entities, one node), W2 (live, 1k) and W3 (late joiner, 1k and 10k: of ~600 ms at 1k,
 * opening B and dialling A take ~100) with no cluster ('plain') and
 * with open({ cluster: { key, admins } }) ('cluster'), in one process, `rounds` times each after
 * one untimed warm-up of each, alternating which goes first, every time on fresh nodes in fresh
 * folders.
 *
 * 'cluster': a random 32-byte key (the same at both nodes), node A the admin. W1: A alone, with
 * its network on (a cluster needs one; 'plain' has one too, so both publish every push, to no
 * peer) and a policy naming A set before the writes. W2/W3: A signs a policy naming A and B —
 * every collection readable and writable by every member — before B opens; W2 measures once B
 * has adopted it; in W3 the late B learns it within the timed catch-up.
 *
 * What a cluster adds: every gossip push A makes is signed by A — one Ed25519 signature per push
 * (a push = what one tick committed, one coalesced delta per entity) over the entity ids and the
 * SHA-256 of each delta — and in W2 B verifies that signature and each delta's hash and stores a
 * proof record per push beside its change feed. W1 has the signing (hashing, one signature per
 * push, a mayWrite check per write) without a receiver. With Automerge, A also signs its heads
 * per push (one more signature, a Merkle root over the entities' heads) and stores them, and in
 * W2 B checks and stores them; in W3 the catch-up carries A's heads (headed deltas), and B
 * checks each against A's key (one verify per statement), checks that every change is covered
 * and stores the heads. With Yjs, anti-entropy changes are not signed (the sending writer vouches
 * for them): W3 measures membership and policy only. Besides: the cluster key makes every connection a libp2p private
 * network (@libp2p/pnet: every byte XORed with XSalsa20, in JavaScript, on both sides, under
 * Noise); the policy adds a mayWrite/mayRead check per delta received and sent and a policy offer
 * at the start of every anti-entropy round (W3's catch-up is such a round). Gossipsub signs every
 * message with its origin's libp2p key in both variants: the push signature is a second one.
 *
 * The primary value is the overhead of 'cluster' against 'plain' from the medians (time added;
 * issue #13's targets: W1 and W2 ≤ 15 %, W3 ≤ 20 %); the details hold both medians, each
 * variant's spread (max − min over the median), the process's CPU time per entity (all threads,
 * both nodes in W2/W3, over the timed part: W1 until the last write is durable, so the signing of
 * the last push or so is left out), which other processes on a shared machine disturb less than
 * wall time, how many pushes A made (median per run; W1's include its warm-up writes'), and for
 * W2/W3 the TCP bytes between A and B per entity (both ways, over the timed part: with
 * Automerge in a cluster a catch-up batch carries its heads in a table: each statement once,
 * with the leaves and a multiproof).
 */
export const trust: Workload = {
  id: 'TRUST',
  title: 'TRUST trust-boundary overhead (plain / cluster)',
  plan({ mode, window }) {
    const rounds = mode === 'quick' ? 2 : 5
    const n = mode === 'quick' ? 200 : 1_000
    const w1n = mode === 'quick' ? 200 : 10_000
    const warmUp = mode === 'quick' ? 50 : 200
    return [
      ...OURS.map((s) => spec('TRUST', 'W1-distinct', s, w1n, { window, warmUp, rounds }, 120_000 + (rounds + 1) * 2 * (15_000 + w1n * 20))),
      ...['W2-live', 'W3-catch-up'].flatMap((c) => OURS.map((s) => spec('TRUST', c, s, n, { window, rounds }, 120_000 + (rounds + 1) * 2 * (15_000 + n * 60)))),
      // At 10k the per-entity work of verification shows more than the joining, as in W3 itself.
      ...(mode === 'quick'
        ? []
        : OURS.map((s) => spec('TRUST', 'W3-catch-up', s, 10_000, { window, rounds }, 120_000 + (rounds + 1) * 2 * (15_000 + 10_000 * 60)))),
    ]
  },
  async run(s, log) {
    const window = s.params.window ?? 64
    const rounds = s.params.rounds ?? 5
    const cpu: Record<Variant, number[]> = { plain: [], cluster: [] }
    const pushes: Record<Variant, number[]> = { plain: [], cluster: [] }
    // W2/W3: TCP bytes between A and B over the timed part (both ways, what pnet and Noise carry).
    const wire: Record<Variant, number[]> = { plain: [], cluster: [] }
    const pushesOf = (node: ConvergentNode): number => node.replica.stats().pushed.messages
    const samples = await alternate(
      VARIANTS,
      rounds,
      async (variant, round) => {
        const counted = (cpuUs: number, a: ConvergentNode): void => {
          if (round < 0) return // not the warm-up's
          cpu[variant].push(cpuUs / s.n)
          pushes[variant].push(pushesOf(a))
        }
        if (s.case === 'W1-distinct') {
          const dir = await tempDir(s.system)
          const id = await folderPeerId(dir.dir)
          const cluster = variant === 'cluster' ? { key: randomBytes(32), admins: [id] } : undefined
          const { node, close } = await openNode(s.system, { network: true, dir, tuning: { durability: 'process', ...(cluster ? { cluster } : {}) } })
          try {
            const a = node as ConvergentNode
            if (cluster) await a.replica.policy.set(policyFor(id))
            if (cluster && a.replica.policy.get()?.version !== 1) throw new Error('the policy is not in force')
            const { ms, cpuUs } = await timeLocalWrites(node, 'distinct', s.n, window, s.params.warmUp ?? 200)
            counted(cpuUs, a)
            return ms
          } finally {
            await close()
          }
        }
        // B's folder is made (and its peer id known) before anything opens, in both variants alike.
        const [dirA, dirB] = [await tempDir(s.system), await tempDir(s.system)]
        const [idA, idB] = [await folderPeerId(dirA.dir), await folderPeerId(dirB.dir)]
        const cluster = variant === 'cluster' ? { key: randomBytes(32), admins: [idA] } : undefined
        const pair = await openPair(s.system, cluster ? { cluster } : undefined, dirA)
        const a = pair.a.node as ConvergentNode
        let b: Awaited<ReturnType<typeof pair.openB>> | undefined
        try {
          if (cluster) await a.replica.policy.set(policyFor(idA, idB))
          if (s.case === 'W2-live') {
            b = await pair.openB(dirB)
            const replica = (b.node as ConvergentNode).replica
            if (cluster) await waitFor("B to adopt A's policy", () => replica.policy.get()?.version === 1, 60_000)
            const { ms, cpuUs } = await timeLiveReplication(pair, b, s.n, window, 120_000)
            counted(cpuUs, a)
            if (round >= 0) wire[variant].push(pair.meter.total)
            // Every push verified: none dropped for its signature.
            const bad = replica.stats().droppedByReason.badSignature
            if (bad > 0) throw new Error(`B dropped ${bad} push(es) for their signature`)
            return ms
          }
          const { ms, cpuUs } = await timeLateJoiner(
            pair,
            s.n,
            window,
            120_000,
            () => pair.openB(dirB),
            (joined) => (b = joined),
          )
          counted(cpuUs, a)
          if (round >= 0) wire[variant].push(pair.meter.total)
          // The catch-up counted only if the policy was in force at B by the end of it.
          if (cluster) await waitFor("B to have adopted A's policy", () => (b!.node as ConvergentNode).replica.policy.get()?.version === 1, 10_000)
          return ms
        } finally {
          await pair.close(...(b ? [b] : []))
          await dirB.cleanup()
        }
      },
      log,
      { warmUp: true },
    )
    const cost = overhead(samples.plain, samples.cluster, 'lower')
    const w1 = s.case === 'W1-distinct'
    return {
      primary: { name: "overhead of 'cluster' vs 'plain' (medians)", value: cost.median, unit: '%', better: 'lower' },
      metrics: {
        rounds,
        'plain ms': Math.round(median(samples.plain)),
        'cluster ms': Math.round(median(samples.cluster)),
        ...(w1
          ? { 'plain writes/s': Math.round(perSecond(s.n, median(samples.plain))), 'cluster writes/s': Math.round(perSecond(s.n, median(samples.cluster))) }
          : {}),
        'overhead % (best runs)': cost.best,
        'plain spread %': spread(samples.plain),
        'cluster spread %': spread(samples.cluster),
        'plain CPU µs/entity': round(median(cpu.plain), 1),
        'cluster CPU µs/entity': round(median(cpu.cluster), 1),
        'CPU overhead %': overhead(cpu.plain, cpu.cluster, 'lower').median,
        'pushes by A per run': Math.round(median(pushes.cluster)),
        ...(w1
          ? {}
          : {
              'plain wire bytes/entity': Math.round(median(wire.plain) / s.n),
              'cluster wire bytes/entity': Math.round(median(wire.cluster) / s.n),
            }),
      },
      notes: [
        w1
          ? "cluster: A signs every gossip push (one Ed25519 signature per push over entity ids + each delta's SHA-256), a policy naming A in force; no receiver"
          : s.case === 'W2-live'
            ? s.system === 'convergent-automerge'
              ? "cluster: every gossip push signed by A (one signature per push, one more over its heads) and verified at B (signature, each delta hash, each entity's head; a proof record per push and a head record per entity stored), plus pnet and policy checks"
              : 'cluster: every gossip push signed by A (one signature per push) and verified at B (signature + each delta hash, a proof record stored), plus pnet and policy checks'
            : s.system === 'convergent-automerge'
              ? "cluster: the catch-up's deltas carry A's signed heads, which B verifies (one signature per statement) and checks every change against before storing them; plus pnet and policy"
              : 'cluster: Yjs anti-entropy changes are not signed (the sending writer vouches for them): this catch-up verifies nothing, it measures membership (pnet) and policy only',
      ],
    }
  },
}
