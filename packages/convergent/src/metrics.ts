import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client'
import { ConvergentError, type Replica } from '@convergent/core'

export interface MetricsOptions {
  /**
   * Collections that get a `collection` label of their own: the first this many the metrics
   * meet (written, received or cached, in that order); any later one is counted under `_other`.
   * Keeps the number of series bounded however many collections peers create. Default 50.
   */
  maxCollectionLabels?: number
  /**
   * Also register prom-client's default metrics (process CPU, memory, event-loop lag, GC,
   * handles). They describe the whole process, not this replica: every replica's registry in
   * one process shows the same values. Default true.
   */
  processMetrics?: boolean
}

/** The label changes of collections past maxCollectionLabels are counted under. */
export const OTHER_COLLECTIONS = '_other'

/** Seconds: an anti-entropy round is one message when in sync, minutes for a large catch-up. */
const ROUND_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
/** Seconds: one LevelDB batch is ~0.1 ms in memory, a few ms with fsync, more under load. */
const BATCH_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
/** Seconds: a push arrives in milliseconds on a LAN; a push window, a busy peer or a slow disk add up to seconds. */
// Up to 30 min: the lag alert's threshold (60 s) must lie below the top bucket, or its p99
// could never exceed it (histogram_quantile caps at the highest finite bucket).
const LAG_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]

/**
 * A Prometheus registry (prom-client) for one replica: the `convergent_*` metrics below, fed
 * by replica.observe() (durable changes and their replication lag, rounds, store batches) and, when scraped, by
 * replica.stats() and replica.status(); plus, unless turned off, the process's default
 * metrics. open() makes one for every replica it opens (`replica.metrics`).
 *
 * The write path only updates plain counters in maps (no prom-client call per write): they
 * are copied into the prom-client counters when the registry is read.
 */
export function createMetrics(replica: Replica, options: MetricsOptions = {}): Registry {
  checkMetricsOptions(options)
  const maxLabels = options.maxCollectionLabels ?? 50
  const registry = new Registry()
  const registers = [registry]

  // Collection → its label (itself, or _other once maxLabels collections have one).
  const labels = new Map<string, string>()
  const labelOf = (collection: string): string => {
    let label = labels.get(collection)
    if (label === undefined) {
      label = labels.size < maxLabels ? collection : OTHER_COLLECTIONS
      labels.set(collection, label)
    }
    return label
  }
  // Per label: [local durable writes, deltas from peers applied].
  const changes = new Map<string, [number, number]>()

  new Counter({
    name: 'convergent_writes_total',
    help: 'Local writes that became durable, by collection (collections past the label bound under _other).',
    labelNames: ['collection'],
    registers,
    collect() {
      this.reset()
      for (const [collection, [local]] of changes) this.inc({ collection }, local)
    },
  })
  // Per label: reads that opened personal fields.
  const personalReads = new Map<string, number>()
  new Counter({
    name: 'convergent_personal_reads_total',
    help: "Values handed to the application with personal fields opened (get, entries, update's draft, subscribe events), by collection (past the label bound under _other), whether or not the collection records them in the read audit.",
    labelNames: ['collection'],
    registers,
    collect() {
      this.reset()
      for (const [collection, n] of personalReads) this.inc({ collection }, n)
    },
  })
  new Counter({
    name: 'convergent_deltas_applied_total',
    help: 'Changes applied and made durable here, by collection and origin: local (this replica wrote it) or remote (a peer sent it, by push or anti-entropy).',
    labelNames: ['collection', 'origin'],
    registers,
    collect() {
      this.reset()
      for (const [collection, [local, remote]] of changes) {
        this.inc({ collection, origin: 'local' }, local)
        this.inc({ collection, origin: 'remote' }, remote)
      }
    },
  })
  new Counter({
    name: 'convergent_deltas_dropped_total',
    help: 'Messages and deltas from peers dropped, by reason (malformed, tooLarge, rateLimited, ...): bad input is dropped and counted, never applied.',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset()
      for (const [reason, n] of Object.entries(replica.stats().droppedByReason)) this.inc({ reason }, n)
    },
  })
  const rounds = new Counter({
    name: 'convergent_sync_rounds_total',
    help: 'Anti-entropy rounds this replica started, by result: ok, or failed (an error ended it, or a collection failed in it).',
    labelNames: ['result'],
    registers,
  })
  rounds.inc({ result: 'ok' }, 0)
  rounds.inc({ result: 'failed' }, 0)
  const roundSeconds = new Histogram({
    name: 'convergent_sync_round_duration_seconds',
    help: 'Duration of the anti-entropy rounds this replica started (ok or failed).',
    buckets: ROUND_BUCKETS,
    registers,
  })
  // Replication lag is a difference of two clocks: the origin's commit time (carried in the
  // push) and this replica's time once the change is durable here. Clock skew shifts every
  // sample by the offset between the two; a sample that comes out negative (the origin's clock
  // ahead by more than the true lag) is recorded as 0 and counted in
  // convergent_replication_lag_negative_total, so skew shows instead of hiding in the zero bucket.
  const lagSeconds = new Histogram({
    name: 'convergent_replication_lag_seconds',
    help: "Seconds from a change's commit at its origin (the origin's clock) until durable here (this replica's clock), for changes that came by push, by collection (past the label bound under _other). Clock skew between the two replicas shifts it; negative samples are recorded as 0 and counted in convergent_replication_lag_negative_total.",
    labelNames: ['collection'],
    buckets: LAG_BUCKETS,
    registers,
  })
  const lagNegative = new Counter({
    name: 'convergent_replication_lag_negative_total',
    help: "Replication lag samples that came out negative (the origin's clock ahead of this one) and were recorded as 0: a sign of clock skew between replicas.",
    registers,
  })
  lagNegative.inc(0)
  const batchSeconds = new Histogram({
    name: 'convergent_store_batch_duration_seconds',
    help: "Duration of one store write of the write path (the commits of one tick), from handing it to the store until durable, including the store's group-commit wait.",
    buckets: BATCH_BUCKETS,
    registers,
  })
  // Several gauges read status(): the gauges of one scrape, collected in one pass, share one
  // snapshot (status() sorts the collection names and the lag window); the next pass takes a new one.
  let snapshot: ReturnType<Replica['status']> | undefined
  const status = (): ReturnType<Replica['status']> => {
    if (snapshot === undefined) {
      snapshot = replica.status()
      queueMicrotask(() => (snapshot = undefined)) // prom-client collects every metric in one synchronous pass
    }
    return snapshot
  }
  new Gauge({
    name: 'convergent_peers',
    help: 'Connected peers of this cluster (same namespace).',
    registers,
    collect() {
      this.set(replica.peers().length)
    },
  })
  new Gauge({
    name: 'convergent_bootstrap_peers',
    help: 'Bootstrap peers this replica was given (open({ peers })): with convergent_peers, tells an operator a seed is unreachable.',
    registers,
    collect() {
      this.set(status().bootstrapPeers)
    },
  })
  new Gauge({
    name: 'convergent_collections',
    help: 'Collections this replica holds.',
    registers,
    collect() {
      this.set(replica.collections().length)
    },
  })
  new Gauge({
    name: 'convergent_cached_entities',
    help: 'Entity documents in memory (the LRU cache), by collection (collections past the label bound under _other). Not the number of stored entities: counting those needs a scan.',
    labelNames: ['collection'],
    registers,
    collect() {
      this.reset()
      const byLabel = new Map<string, number>()
      for (const [collection, n] of replica.cachedByCollection()) {
        const label = labelOf(collection)
        byLabel.set(label, (byLabel.get(label) ?? 0) + n)
      }
      for (const [collection, n] of byLabel) this.set({ collection }, n)
    },
  })
  new Gauge({
    name: 'convergent_divergent_entities',
    help: 'Entities that differed from a connected peer at the last round this replica started although neither side lacked a change of the other (forged or damaged writes: sync cannot repair them). One series per connected peer; removed when it disconnects.',
    labelNames: ['peer'],
    registers,
    collect() {
      this.reset()
      for (const peer of status().peers) if (peer.lastRound !== null) this.set({ peer: peer.id }, peer.lastRound.divergent)
    },
  })
  new Gauge({
    name: 'convergent_ready',
    help: '1 once the replica is ready (GET /readyz: an anti-entropy round since open found nothing missing, or no bootstrap peers), else 0.',
    registers,
    collect() {
      this.set(status().ready.ready ? 1 : 0)
    },
  })
  new Gauge({
    name: 'convergent_store_damaged',
    help: 'Damage the store reported when it opened (LevelDB dropped records while recovering its log: data this replica lost; status().store.damage says what). 0 when it opened clean.',
    registers,
    collect() {
      this.set(status().store.damage.length)
    },
  })
  new Gauge({
    name: 'convergent_pending_writes',
    help: 'Entities whose latest write is not durable yet.',
    registers,
    collect() {
      this.set(status().pendingWrites)
    },
  })
  const statCounter = (name: string, help: string, read: () => number): void => {
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset()
        this.inc(read())
      },
    })
  }
  statCounter('convergent_cache_hits_total', 'Entity acquires (reads and writes) served from the in-memory cache.', () => replica.stats().cache.hits)
  statCounter(
    'convergent_cache_misses_total',
    'Entity acquires that loaded the document from the store (or created a new one).',
    () => replica.stats().cache.misses,
  )
  statCounter('convergent_cache_evictions_total', 'Entity documents evicted from the cache to stay within its size.', () => replica.stats().cache.evictions)
  statCounter(
    'convergent_store_corrupt_records_total',
    'Store records that failed their checksum since open (moved aside; the entity repaired from memory or fetched again from peers).',
    () => replica.stats().store.corruptRecords,
  )
  new Gauge({
    name: 'convergent_entity_largest_bytes',
    help: 'The stored state (snapshot and deltas) of the largest entity loaded or written here since open, in bytes. Past convergent_max_delta_bytes it no longer reaches a replica that holds none of it (its whole state must fit one delta); the logs name it.',
    registers,
    collect() {
      this.set(replica.stats().entitySize.largest?.bytes ?? 0)
    },
  })
  new Gauge({
    name: 'convergent_max_delta_bytes',
    help: 'limits.maxDeltaBytes: the largest delta this replica sends or takes, and so the largest entity a replica that holds none of it can receive.',
    registers,
    collect() {
      this.set(replica.stats().entitySize.maxDeltaBytes)
    },
  })
  statCounter(
    'convergent_entities_not_sent_total',
    'Entities not sent to a peer since open because their state is over maxDeltaBytes (the peer, holding none of it or far behind, cannot get them from here).',
    () => replica.stats().entitySize.notSent,
  )

  replica.observe({
    change(change) {
      const label = labelOf(change.collection)
      let counts = changes.get(label)
      if (counts === undefined) changes.set(label, (counts = [0, 0]))
      counts[change.peer === undefined ? 0 : 1]++
      if (change.lagMs !== undefined) {
        if (change.lagMs < 0) lagNegative.inc()
        lagSeconds.observe({ collection: label }, Math.max(0, change.lagMs) / 1000)
      }
    },
    round(round) {
      if (round.startedBy !== 'us') return
      const ok = round.error === undefined && (round.result?.failed.length ?? 0) === 0
      rounds.inc({ result: ok ? 'ok' : 'failed' })
      roundSeconds.observe(round.ms / 1000)
    },
    storeBatch(batch) {
      batchSeconds.observe(batch.ms / 1000)
    },
    personalRead(read) {
      const label = labelOf(read.collection)
      personalReads.set(label, (personalReads.get(label) ?? 0) + 1)
    },
  })

  if (options.processMetrics !== false) for (const metric of processMetrics()) registry.registerMetric(metric)
  return registry
}

/** Throws ERR_INVALID_ARGUMENT for options createMetrics cannot use. */
export function checkMetricsOptions(options: MetricsOptions | undefined): void {
  const max = options?.maxCollectionLabels
  if (max !== undefined && (!Number.isInteger(max) || max < 0)) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', `metrics.maxCollectionLabels is an integer ≥ 0, got ${String(max)}`)
  }
}

let processRegistry: Registry | undefined

/**
 * prom-client default metrics left out: gauges named like counters, which `promtool check
 * metrics` rejects ("non-counter metrics should not have _total suffix"). Each is the sum of a
 * gauge that stays, by type: `sum(nodejs_active_handles)` and so on.
 */
const MISNAMED_DEFAULT_METRICS = new Set(['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'])

/**
 * prom-client's default metrics, made once per process (they watch the event loop and GC of
 * the whole process) and registered in every replica's registry.
 */
function processMetrics(): Metric[] {
  if (processRegistry === undefined) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
    for (const name of MISNAMED_DEFAULT_METRICS) processRegistry.removeSingleMetric(name)
  }
  return processRegistry.getMetricsAsArray() as unknown as Metric[]
}
