import { readdirSync, readFileSync, existsSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** One-way latency of a link, per frame. */
export type LatencySpec =
  | { kind: 'constant'; ms: number }
  | { kind: 'uniform'; minMs: number; maxMs: number }
  | { kind: 'normal'; meanMs: number; stddevMs: number; minMs?: number }
  | { kind: 'lognormal'; medianMs: number; sigma: number; minMs?: number }

/** What happens to frames on a link. */
export interface LinkParams {
  latency: LatencySpec
  /** Probability that a frame is lost (gossip: dropped; requests: see requestLoss). */
  loss: number
  /** Probability that a gossip frame is delivered twice. */
  duplicate: number
  /** Probability that a gossip frame is held back and may overtake / be overtaken. */
  reorder: number
  /** Extra delay of a reordered or duplicated copy: uniform in [0, reorderDelayMs]. */
  reorderDelayMs: number
  /** Per direction of a link; null = unlimited. */
  bandwidthBytesPerSec: number | null
}

/** The gossipsub model (names as in js-libp2p gossipsub; defaults are its defaults). */
export interface GossipParams {
  D: number
  Dlo: number
  Dhi: number
  /** Outbound peers (connections we dialed) kept in each mesh. */
  Dout: number
  Dlazy: number
  gossipFactor: number
  heartbeatMs: number
  heartbeatInitialDelayMs: number
  mcacheLength: number
  mcacheGossip: number
  seenTtlMs: number
  fanoutTtlMs: number
  pruneBackoffMs: number
  /** Publisher sends to every subscribed peer, not just its mesh (js-libp2p default: true). */
  floodPublish: boolean
  /** Messages at least this large make receivers send IDONTWANT to their mesh (gossipsub v1.2). */
  idontwantMinBytes: number
  maxIHaveLength: number
  /**
   * NOT in js-libp2p gossipsub: relayed messages and control to a peer are paced to at most
   * one RPC per rpcBatchMs (the first after a quiet spell at once; later ones wait for the next
   * slot and go together); a node's own publishes still go at once. 0 = off, as on the real
   * stack. Used to explore what batching relays would buy.
   */
  rpcBatchMs: number
}

export type ConnectionsSpec = { kind: 'full' } | { kind: 'random'; degree: number }

export interface NetworkSpec extends LinkParams {
  connections: ConnectionsSpec
  /** Dial delay after a node starts or a link heals: uniform in [min, max] ms (redial backoff). */
  connectDelayMs: [number, number]
  /** A request not answered within this fails with ERR_NETWORK (libp2p network default 30 s). */
  requestTimeoutMs: number
  /**
   * Requests ride a reliable stream: a lost transmission is retransmitted after retransmitMs
   * (doubling) as TCP would ('retransmit'), or lost outright so the request times out ('drop').
   */
  requestLoss: 'retransmit' | 'drop'
  retransmitMs: number
  maxMessageBytes: number
  gossip: GossipParams
}

export interface WorkloadSpec {
  /** Updates per second over the whole cluster. */
  ratePerSec: number
  arrival: 'poisson' | 'uniform'
  /** Entities are created by node 0 at seedAtMs; updates run from startMs to stopMs. */
  seedAtMs: number
  startMs: number
  /** Default: the scenario's durationMs. */
  stopMs?: number
  /** Entities per collection. */
  entities: number
  popularity: { kind: 'uniform' } | { kind: 'zipf'; s: number }
  /** Relative weights of the collections' backends. */
  backends: { yjs: number; automerge: number }
  /** payloadBytes of filler per write; nested: the writer's fields live in a sub-object. */
  value: { payloadBytes: number; nested: boolean }
  /** How many nodes write ('all', or the first k). */
  writers: number | 'all'
  /** A bounded-counter (escrow) workload next to the register writes; off while ids is 0. */
  counter: CounterWorkloadSpec
}

/**
 * Stock kept in bounded counters (`replica.counter(name, { min })`), one per id (`sku0`, …).
 * At seedAtMs the restockers add `initial` to every id (split evenly among them, so the rights
 * start with them); from startMs to stopMs (the register workload's) restockers increment,
 * every live node sells (decrements, waiting up to waitMs for rights from peers when short),
 * and nodes hand some of their rights to a random other live node. Each stream is Poisson
 * with its own rate over the whole cluster; amounts are uniform in [1, max…].
 */
export interface CounterWorkloadSpec {
  /** How many counters; 0 = no counter workload. */
  ids: number
  /** The counter's (automerge) collection name. */
  name: string
  /** The bound: no replica may ever show a value below it. */
  min: number
  /** Stock added per id at seedAtMs, on top of min. */
  initial: number
  /** The first k nodes restock (and hold the initial rights). */
  restockers: number
  /** Increments per second over the cluster (by live restockers). */
  incrementRate: number
  maxIncrement: number
  /** Decrement attempts per second over the cluster (by any live node). */
  decrementRate: number
  maxDecrement: number
  /** decrement(id, n, { waitMs }): how long a node short of rights asks peers and waits; 0 = reject at once. */
  waitMs: number
  /** Transfers per second over the cluster: a live node gives up to maxTransfer of its rights to another live node. */
  transferRate: number
  maxTransfer: number
  /** The counter's lowWater option (refill in the background below it); 0 = off. */
  lowWater: number
}

export interface ReplicaSpec {
  syncIntervalMs: number
  syncOnConnect: boolean
  cacheSize: number
  compactAfter: number
  /** Virtual time between a store write and its durability (so crashes can catch writes in flight). */
  writeLatencyMs: number
  /**
   * 'memory-level': @convergent/level's memoryLevelStore (the real Store); 'map': the
   * simulator's MapStore (same contract, far cheaper) for runs with hundreds of nodes.
   */
  store: 'memory-level' | 'map'
  /**
   * Run the replicas as one cluster with the trust boundary on: every incarnation is opened
   * with `trust` (an Ed25519 key per peer id, derived from the run's seed, so a node keeps its
   * key across crashes; node 0's peer id is the only admin), node 0 sets a policy naming every
   * node (read and write every collection) at its first start, and every gossip push is signed
   * by its author and verified by its receivers. Adds the `cluster-signed-writes` check.
   * Simulated runs only, and no nodes added during the run (`join`, churn replacements): a new
   * node is not in the policy.
   */
  cluster: boolean
  /**
   * The replicas' `limits.maxValueBytes` (null: Replica's default, 1 MiB). Small, with filler,
   * so that concurrent writes merge past it (they must still converge: see maxMergedValueBytes).
   */
  maxValueBytes: number | null
}

/** Nodes are named by index (0 … nodes-1). Groups: explicit index lists, or fractions of the nodes. */
export interface GroupsSpec {
  groups?: number[][]
  split?: number[]
}

export type FaultEvent =
  | ({ at: number; type: 'partition' } & GroupsSpec)
  | { at: number; type: 'isolate'; node: number }
  | { at: number; type: 'heal' }
  | ({ at: number; type: 'flap'; periodMs: number; untilMs: number } & GroupsSpec)
  | { at: number; type: 'crash'; node: number }
  | { at: number; type: 'restart'; node: number }
  | { at: number; type: 'leave'; node: number }
  | { at: number; type: 'join'; count: number }
  | {
      at: number
      type: 'churn'
      untilMs: number
      /** Mean time between two churn steps (exponential). */
      intervalMs: number
      /** How long a node that went away stays away before it comes back. */
      downMs: [number, number]
      /** Fraction of departures that are crashes (the rest are graceful closes). */
      crashFraction: number
      /** Fraction of departures that are permanent and replaced by a fresh node. */
      replaceFraction: number
    }
  | { at: number; type: 'skew'; node: number; offsetMs: number }
  | { at: number; type: 'network'; set: Partial<LinkParams> }

export type InvariantSpec =
  { kind: 'groups-converge-during-partition'; graceMs: number } | { kind: 'restart-recovers-acked-writes' } | { kind: 'converge-within'; ms: number }

export interface TargetsSpec {
  msgsPerUpdate?: number
  medianPropagationMs?: number
  p99PropagationMs?: number
  maxPropagationMs?: number
  /** Which writes the latency targets use: those away from faults ('healthy') or every write. */
  latencyOf?: 'healthy' | 'all'
  wallMs?: number
}

export interface Scenario {
  name: string
  description: string
  nodes: number
  durationMs: number
  /** Longest time after durationMs to wait for convergence. */
  settleMs: number
  /** At durationMs: heal every partition and restart every crashed node. */
  healAtEnd: boolean
  /** Timeline resolution of the report (ms). */
  sampleMs: number
  /** A write counts as healthy if no fault starts or is active within this long after it. */
  healthyWindowMs: number
  seed: number
  workload: WorkloadSpec
  network: NetworkSpec
  replica: ReplicaSpec
  faults: FaultEvent[]
  invariants: InvariantSpec[]
  targets: TargetsSpec
}

/** js-libp2p gossipsub 17 defaults. */
export const LIBP2P_GOSSIP_DEFAULTS: GossipParams = {
  D: 6,
  Dlo: 4,
  Dhi: 12,
  Dout: 2,
  Dlazy: 6,
  gossipFactor: 0.25,
  heartbeatMs: 1000,
  heartbeatInitialDelayMs: 100,
  mcacheLength: 5,
  mcacheGossip: 3,
  seenTtlMs: 120_000,
  fanoutTtlMs: 60_000,
  pruneBackoffMs: 60_000,
  floodPublish: true,
  idontwantMinBytes: 512,
  maxIHaveLength: 5000,
  rpcBatchMs: 0,
}

export const DEFAULT_SCENARIO: Omit<Scenario, 'name' | 'description'> = {
  nodes: 10,
  durationMs: 30_000,
  settleMs: 60_000,
  healAtEnd: true,
  sampleMs: 250,
  healthyWindowMs: 2_000,
  seed: 1,
  workload: {
    ratePerSec: 20,
    arrival: 'poisson',
    seedAtMs: 200,
    startMs: 2_000,
    entities: 50,
    popularity: { kind: 'zipf', s: 1.1 },
    backends: { yjs: 1, automerge: 1 },
    value: { payloadBytes: 16, nested: false },
    writers: 'all',
    counter: {
      ids: 0,
      name: 'stock',
      min: 0,
      initial: 100,
      restockers: 1,
      incrementRate: 1,
      maxIncrement: 10,
      decrementRate: 10,
      maxDecrement: 3,
      waitMs: 500,
      transferRate: 0.5,
      maxTransfer: 5,
      lowWater: 0,
    },
  },
  network: {
    latency: { kind: 'uniform', minMs: 5, maxMs: 25 },
    loss: 0,
    duplicate: 0,
    reorder: 0,
    reorderDelayMs: 50,
    bandwidthBytesPerSec: null,
    connections: { kind: 'full' },
    connectDelayMs: [10, 250],
    requestTimeoutMs: 30_000,
    requestLoss: 'retransmit',
    retransmitMs: 200,
    maxMessageBytes: 4 * 1024 * 1024,
    gossip: LIBP2P_GOSSIP_DEFAULTS,
  },
  replica: {
    syncIntervalMs: 5_000,
    syncOnConnect: true,
    cacheSize: 10_000,
    compactAfter: 64,
    writeLatencyMs: 1,
    store: 'memory-level',
    cluster: false,
    maxValueBytes: null,
  },
  faults: [],
  invariants: [],
  targets: {},
}

export class ScenarioError extends Error {
  override readonly name = 'ScenarioError'
}

/** The folder holding the shipped scenario files (sim/scenarios). */
export function scenariosDir(): string {
  // dist/src/run/scenario.js → ../../../scenarios; src/run/scenario.ts (ts-node) → ../../scenarios
  const here = dirname(fileURLToPath(import.meta.url))
  for (const candidate of [join(here, '..', '..', '..', 'scenarios'), join(here, '..', '..', 'scenarios')]) {
    if (existsSync(candidate)) return candidate
  }
  throw new ScenarioError(`cannot find the scenarios folder next to ${here}`)
}

export function listScenarios(): { name: string; description: string; nodes: number; durationMs: number }[] {
  const dir = scenariosDir()
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => {
      const s = resolveScenario(JSON.parse(readFileSync(join(dir, f), 'utf8')) as Record<string, unknown>, basename(f, '.json'))
      return { name: s.name, description: s.description, nodes: s.nodes, durationMs: s.durationMs }
    })
}

/** A shipped scenario by name, or a JSON file by path. */
export function loadScenario(nameOrPath: string, overrides: { nodes?: number } = {}): Scenario {
  const path = nameOrPath.endsWith('.json') ? resolve(nameOrPath) : join(scenariosDir(), `${nameOrPath}.json`)
  if (!existsSync(path)) {
    const known = listScenarios().map((s) => s.name)
    throw new ScenarioError(`no scenario '${nameOrPath}' (looked for ${path}); shipped scenarios: ${known.join(', ')}`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new ScenarioError(`${path} is not valid JSON: ${(err as Error).message}`)
  }
  return resolveScenario(raw as Record<string, unknown>, basename(path, '.json'), overrides)
}

/** Fills defaults into a parsed scenario file and checks it. */
export function resolveScenario(raw: Record<string, unknown>, fallbackName: string, overrides: { nodes?: number } = {}): Scenario {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ScenarioError('a scenario must be a JSON object')
  const merged = deepMerge(DEFAULT_SCENARIO, raw) as unknown as Scenario
  merged.name = typeof raw.name === 'string' ? raw.name : fallbackName
  merged.description = typeof raw.description === 'string' ? raw.description : ''
  if (overrides.nodes !== undefined) merged.nodes = overrides.nodes
  validate(merged)
  return merged
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) {
    const b = base[k]
    const mergeable = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x)
    // A latency or popularity spec replaces the default whole: its fields depend on its kind.
    if (mergeable(b) && mergeable(v) && !('kind' in v)) out[k] = deepMerge(b, v)
    else out[k] = v
  }
  return out
}

function validate(s: Scenario): void {
  const fail = (m: string): never => {
    throw new ScenarioError(`scenario '${s.name}': ${m}`)
  }
  const int = (v: unknown, what: string, min = 0): void => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail(`${what} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`)
  }
  const prob = (v: unknown, what: string): void => {
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) fail(`${what} must be a probability in [0, 1], got ${JSON.stringify(v)}`)
  }
  int(s.nodes, 'nodes', 1)
  int(s.durationMs, 'durationMs', 1)
  int(s.settleMs, 'settleMs', 0)
  int(s.sampleMs, 'sampleMs', 1)
  int(s.seed, 'seed', 0)
  const w = s.workload
  if (!(w.ratePerSec >= 0)) fail('workload.ratePerSec must be ≥ 0')
  int(w.entities, 'workload.entities', 1)
  if (w.backends.yjs + w.backends.automerge <= 0) fail('workload.backends needs a positive weight')
  if (w.writers !== 'all') int(w.writers, 'workload.writers', 1)
  const c = w.counter
  int(c.ids, 'workload.counter.ids')
  if (c.ids > 0) {
    if (typeof c.name !== 'string' || c.name === '' || c.name.includes('/'))
      fail(`workload.counter.name must be a non-empty name without '/', got ${JSON.stringify(c.name)}`)
    if (s.workload.backends.yjs > 0 && c.name === 'yjs-items') fail(`workload.counter.name '${c.name}' is taken by the register workload`)
    if (s.workload.backends.automerge > 0 && c.name === 'automerge-items') fail(`workload.counter.name '${c.name}' is taken by the register workload`)
    if (typeof c.min !== 'number' || !Number.isSafeInteger(c.min)) fail(`workload.counter.min must be a safe integer, got ${JSON.stringify(c.min)}`)
    int(c.initial, 'workload.counter.initial')
    int(c.restockers, 'workload.counter.restockers', 1)
    if (c.restockers > s.nodes) fail(`workload.counter.restockers is ${c.restockers} but the run has ${s.nodes} nodes`)
    for (const k of ['incrementRate', 'decrementRate', 'transferRate'] as const)
      if (!(typeof c[k] === 'number' && c[k] >= 0)) fail(`workload.counter.${k} must be ≥ 0`)
    int(c.maxIncrement, 'workload.counter.maxIncrement', 1)
    int(c.maxDecrement, 'workload.counter.maxDecrement', 1)
    int(c.maxTransfer, 'workload.counter.maxTransfer', 1)
    int(c.waitMs, 'workload.counter.waitMs')
    int(c.lowWater, 'workload.counter.lowWater')
  }
  const n = s.network
  prob(n.loss, 'network.loss')
  prob(n.duplicate, 'network.duplicate')
  prob(n.reorder, 'network.reorder')
  if (!['constant', 'uniform', 'normal', 'lognormal'].includes(n.latency.kind)) fail(`unknown latency kind '${(n.latency as { kind: string }).kind}'`)
  if (n.connections.kind === 'random') int(n.connections.degree, 'network.connections.degree', 1)
  else if (n.connections.kind !== 'full')
    fail(`network.connections.kind must be 'full' or 'random', got ${JSON.stringify((n.connections as { kind: unknown }).kind)}`)
  if (!['retransmit', 'drop'].includes(n.requestLoss)) fail(`network.requestLoss must be 'retransmit' or 'drop'`)
  if (!['memory-level', 'map'].includes(s.replica.store)) fail(`replica.store must be 'memory-level' or 'map', got ${JSON.stringify(s.replica.store)}`)
  if (s.replica.maxValueBytes !== null) int(s.replica.maxValueBytes, 'replica.maxValueBytes', 1)
  if (typeof s.replica.cluster !== 'boolean') fail(`replica.cluster must be true or false, got ${JSON.stringify(s.replica.cluster)}`)
  if (s.replica.cluster) {
    for (const [i, f] of s.faults.entries()) {
      if (f.type === 'join' || (f.type === 'churn' && f.replaceFraction > 0))
        fail(`faults[${i}] (${f.type}) adds nodes, but with replica.cluster the policy names only the nodes present at the start`)
    }
  }
  const g = n.gossip
  if (!(g.Dlo <= g.D && g.D <= g.Dhi)) fail(`gossip needs Dlo ≤ D ≤ Dhi, got ${g.Dlo}, ${g.D}, ${g.Dhi}`)
  if (!(g.Dout <= g.Dlo)) fail(`gossip needs Dout ≤ Dlo, got ${g.Dout} > ${g.Dlo}`)
  const node = (i: number, what: string): void => {
    int(i, what)
    if (i >= s.nodes) fail(`${what} is node ${i} but the run has ${s.nodes} nodes (0 … ${s.nodes - 1})`)
  }
  for (const [i, f] of s.faults.entries()) {
    const what = `faults[${i}] (${f.type})`
    int(f.at, `${what}.at`)
    switch (f.type) {
      case 'partition':
      case 'flap':
        if (f.groups === undefined && f.split === undefined) fail(`${what} needs groups or split`)
        for (const g of f.groups ?? []) for (const m of g) node(m, `${what} member`)
        if (f.type === 'flap') {
          int(f.periodMs, `${what}.periodMs`, 1)
          int(f.untilMs, `${what}.untilMs`)
        }
        break
      case 'isolate':
      case 'crash':
      case 'restart':
      case 'leave':
      case 'skew':
        node(f.node, `${what}.node`)
        break
      case 'join':
        int(f.count, `${what}.count`, 1)
        break
      case 'churn':
        int(f.untilMs, `${what}.untilMs`)
        int(f.intervalMs, `${what}.intervalMs`, 1)
        prob(f.crashFraction, `${what}.crashFraction`)
        prob(f.replaceFraction, `${what}.replaceFraction`)
        break
      case 'heal':
      case 'network':
        break
      default:
        fail(`${what}: unknown fault type`)
    }
  }
}

/** Turns a GroupsSpec into index lists over `nodes` nodes (split fractions are rounded). */
export function resolveGroups(spec: GroupsSpec, nodes: number): number[][] {
  if (spec.groups !== undefined) return spec.groups
  const fractions = spec.split ?? [0.5, 0.5]
  const total = fractions.reduce((a, b) => a + b, 0)
  const groups: number[][] = []
  let start = 0
  let acc = 0
  for (const [i, f] of fractions.entries()) {
    acc += f
    const end = i === fractions.length - 1 ? nodes : Math.round((acc / total) * nodes)
    groups.push(Array.from({ length: Math.max(0, end - start) }, (_, k) => start + k))
    start = end
  }
  return groups
}
