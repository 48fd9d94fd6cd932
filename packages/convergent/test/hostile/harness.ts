// The hostile-peer harness (issue #11): a victim replica and an honest replica — real open()
// on classic-level in temp folders, libp2p over TCP on 127.0.0.1 — and a raw hostile libp2p
// node that answers the victim's sync requests as the current attack says and attacks it with
// its own requests and gossip. All three live in this one process, so every figure measured
// here (event-loop delay, RSS) also carries the attacker's and the honest peer's own work.
import { cpus, loadavg } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { gunzipSync } from 'node:zlib'
import { pino, type Logger as PinoLogger } from 'pino'
import { silentLogger } from '@convergent/core'
import { decodeMessage, encodeMessage, MessageType, topicOf } from '@convergent/core/internal'
import { createLibp2pNetwork, open, type Libp2pNetwork, type Replica } from '../../src/index.js'
import { tempDir, waitFor } from '../helpers.js'

// --- process-level measuring tools ---

/** A full, synchronous GC (exposed at runtime: mocha runs without --expose-gc). */
export const gc: () => void = (() => {
  const g = (globalThis as { gc?: () => void }).gc
  if (typeof g === 'function') return g
  try {
    setFlagsFromString('--expose-gc')
    return runInNewContext('gc') as () => void
  } catch {
    return () => undefined // no GC available: figures are measured as they are
  }
})()

const MB = 1024 * 1024

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** What one attack cost the victim. */
export interface Figures {
  attack: string
  /** Event-loop delay over the attack window (ms), from monitorEventLoopDelay at 10 ms resolution. */
  p99Ms: number
  maxMs: number
  /** RSS growth over the baseline taken after a GC: the highest sample during the attack, and after a GC at its end (MB). */
  rssPeakMb: number
  rssAfterMb: number
  /** Time from the honest put() to the victim telling its subscriber (ms); null if it did not arrive within the wait. */
  honestMs: number | null
  /** Time from the honest put() until it was durable on the honest peer (ms): the part of honestMs spent before gossip. */
  honestDurableMs: number | null
  /**
   * The delay the loop was busy for, p99 and max (ms): per turn of a 10 ms timer, the smaller of
   * the wall-clock gap since the last turn and the process's CPU time (all threads) in that gap.
   * A loop blocked by work shows both; on a machine shared with other work a gap is also long
   * while the process waits for a core (wall only), and helper threads (GC, LevelDB) add CPU
   * time while the loop runs freely (CPU only): neither of those counts here.
   */
  busyP99Ms: number
  busyMaxMs: number
  /** CPU time the whole process (victim, honest peer, attacker, GC, LevelDB threads) used in the window (ms). */
  cpuMs: number
  /** Lines (and KB) the victim logged in the window: a line per dropped delta or message. */
  logLines: number
  logKb: number
  /** Attack window (ms) and how many passes of the attack's message sequence ran in it. */
  windowMs: number
  passes: number
  /** Free text for the table: what was sent, what the victim dropped. */
  note: string
}

export const FIGURES: Figures[] = []

/** The figures as a table (for the README). */
export function figuresTable(figures: readonly Figures[]): string {
  const head = [
    'attack',
    'p99 ms',
    'max ms',
    'busy p99 / max ms',
    'RSS peak MB',
    'RSS after MB',
    'honest ms (durable there)',
    'window ms',
    'CPU ms',
    'log lines (KB)',
    'passes',
    'note',
  ]
  const rows = figures.map((f) => [
    f.attack,
    f.p99Ms.toFixed(1),
    f.maxMs.toFixed(1),
    `${f.busyP99Ms.toFixed(1)} / ${f.busyMaxMs.toFixed(1)}`,
    f.rssPeakMb.toFixed(1),
    f.rssAfterMb.toFixed(1),
    `${f.honestMs === null ? 'never' : f.honestMs.toFixed(0)} (${f.honestDurableMs === null ? '-' : f.honestDurableMs.toFixed(0)})`,
    f.windowMs.toFixed(0),
    f.cpuMs.toFixed(0),
    `${f.logLines} (${f.logKb.toFixed(0)})`,
    String(f.passes),
    f.note,
  ])
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
  return [
    `${cpus().length} cores, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' / ')} (1 / 5 / 15 min) at the end`,
    '',
    line(head),
    line(head.map(() => '---')),
    ...rows.map(line),
  ].join('\n')
}

// --- open()'s default logger, writing nowhere ---

/**
 * Pino, as open() makes it by default, writing into a counter instead of stderr: the victim
 * pays what it pays in production per logged drop (an attack logs a line per dropped delta,
 * up to the drop log's bound), and the test can say how many lines and bytes it logged.
 */
export function countingLogger(): { logger: PinoLogger; lines: number; bytes: number; last: string[] } {
  const last: string[] = []
  const out = {
    lines: 0,
    bytes: 0,
    last,
    logger: pino(
      { name: 'convergent', level: 'warn' },
      {
        write: (line: string) => {
          out.lines++
          out.bytes += Buffer.byteLength(line)
          last.push(line)
          if (last.length > 20) last.shift()
        },
      },
    ),
  }
  return out
}

// --- the hostile node ---

/** How the hostile node answers one request of the victim: bytes, or a promise of them. */
export type Answer = (type: number, body: unknown, raw: Uint8Array) => Uint8Array | Promise<Uint8Array>

/** Answers like a replica that holds nothing and accepts whatever it is sent. */
export const benign: Answer = (type) => {
  if (type === MessageType.RootsRequest) return encodeMessage(MessageType.RootsResponse, { r: [], f: 1 })
  if (type === MessageType.DeltasRequest || type === MessageType.UploadRequest) return encodeMessage(MessageType.Ack, { n: 0 })
  return encodeMessage(MessageType.Error, { m: 'nothing here', u: type })
}

export class Hostile {
  answer: Answer = benign
  /** Requests the victim sent us, by message type. */
  readonly served = new Map<number, number>()

  private constructor(readonly net: Libp2pNetwork) {}

  static async start(victim: Replica): Promise<Hostile> {
    // A larger limit than the victim's: it must be able to send what the victim has to refuse.
    const net = await createLibp2pNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], peers: [victim.multiaddrs[0]!], namespace: 'default', maxMessageBytes: 16 * MB })
    const h = new Hostile(net)
    await net.start({
      onMessage: () => {},
      onRequest: async (_from, data) => {
        const msg = decodeMessage(data, 64 * MB)
        h.served.set(msg.type, (h.served.get(msg.type) ?? 0) + 1)
        return h.answer(msg.type, msg.body, data)
      },
      onPeerConnected: () => {},
      onPeerDisconnected: () => {},
    })
    try {
      await waitFor(() => victim.peers().includes(net.peerId), 'hostile connected to the victim')
    } catch (err) {
      await net.stop()
      throw err
    }
    return h
  }

  get peerId(): string {
    return this.net.peerId
  }

  /**
   * The victim's roots as it lists them, for answers that claim to hold exactly what the victim
   * holds (so its rounds with us go only where the attack leads them, not into pushing its data).
   */
  async victimRoots(victim: string): Promise<[string, string, Uint8Array][]> {
    const reply = await this.ask(victim, encodeMessage(MessageType.RootsRequest, { r: [] }))
    if (!('body' in reply) || reply.type !== MessageType.RootsResponse) throw new Error(`no roots from the victim: ${JSON.stringify(reply)}`)
    return (reply.body as { r: [string, string, Uint8Array][] }).r
  }

  servedOf(type: number): number {
    return this.served.get(type) ?? 0
  }

  /**
   * Publishes on a gossip topic, then lets the event loop turn: gossipsub's publish resolves
   * within microtasks, so a loop of bare publishes would never let the bytes go out (nor let
   * timers run) and only queue them up.
   */
  async publish(topic: string, data: Uint8Array): Promise<void> {
    await this.net.publish(topic, data)
    await new Promise((resolve) => setImmediate(resolve))
  }

  /**
   * Opens a sync stream and sends a frame prefix announcing `bytes` and a first KiB of body,
   * as a peer about to send an oversized request would; resolves with the status byte of the
   * victim's answer (2: too large). The attacker does not encrypt megabytes it will never send.
   */
  async oversizedRequest(victim: string, bytes: number): Promise<number> {
    const connection = this.net.libp2p.getConnections().find((c) => c.remotePeer.toString() === victim)
    if (connection === undefined) throw new Error('not connected to the victim')
    const stream = await connection.newStream(this.net.protocol)
    const prefix: number[] = []
    for (let n = bytes; ; n = Math.floor(n / 128)) {
      if (n < 128) {
        prefix.push(n)
        break
      }
      prefix.push((n % 128) | 0x80)
    }
    const answer = new Promise<number>((resolve, reject) => {
      stream.addEventListener('message', (event) => {
        const data = event.data.subarray()
        let i = 0
        while (data[i]! >= 0x80) i++ // the answer's own length prefix
        resolve(data[i + 1]!)
      })
      stream.addEventListener('close', () => reject(new Error('closed without an answer')))
    })
    stream.send(Uint8Array.from(prefix))
    stream.send(new Uint8Array(1024))
    try {
      return await answer
    } finally {
      stream.abort(new Error('done'))
    }
  }

  /** One request to the victim; resolves with the decoded reply (type and body). Never rejects: a failure is returned. */
  async ask(victim: string, bytes: Uint8Array, maxBytes = 16 * MB): Promise<{ type: number; body: unknown } | { error: string }> {
    try {
      return decodeMessage(await this.net.request(victim, bytes, { maxBytes }), maxBytes)
    } catch (err) {
      return { error: (err as Error).message }
    }
  }

  async stop(): Promise<void> {
    await this.net.stop()
  }
}

// --- the victim's observable state ---

/** Every collection, its backend, every live entity and every feed entry — minus the honest writes. */
export interface StoreDump {
  collections: Record<string, { backend: string; entities: Record<string, unknown>; feed: string[] }>
}

export const HONEST_PREFIX = 'hw-'

export async function dumpStore(replica: Replica): Promise<StoreDump> {
  const out: StoreDump = { collections: {} }
  for (const name of [...replica.collections()].sort()) {
    const col = replica.collection(name)
    const entities: Record<string, unknown> = {}
    for await (const [id, value] of col.entries()) if (!id.startsWith(HONEST_PREFIX)) entities[id] = value
    const feed: string[] = []
    for await (const e of col.changes()) if (!e.id.startsWith(HONEST_PREFIX)) feed.push(`${e.id}|${e.origin}|${e.kind}`)
    out.collections[name] = { backend: col.backend, entities, feed }
  }
  return out
}

/** Feed entries of every collection that came from `peer`. */
export async function feedFrom(replica: Replica, peer: string): Promise<number> {
  let n = 0
  for (const name of replica.collections()) for await (const e of replica.collection(name).changes()) if (e.origin === peer) n++
  return n
}

// --- the cast ---

export interface Cast {
  victim: Replica
  victimLogger: ReturnType<typeof countingLogger>
  victimDir: string
  honest: Replica
  hostile: Hostile
  cleanups: (() => Promise<void>)[]
}

/** The honest collection: written by the honest peer during every attack, watched by the victim. */
export const HONEST_COLLECTION = 'honest'

export async function startCast(): Promise<Cast> {
  // Undone in reverse order if a later step fails, so a failed start leaves nothing behind.
  const undo: (() => Promise<unknown>)[] = []
  try {
    const v = await tempDir('convergent-hostile-victim-')
    undo.push(v.cleanup)
    const victimLogger = countingLogger()
    // Rounds run when the test says (victim.sync()): the client side of every round is the same
    // code whether a round starts on connect, on the interval or on demand.
    const victim = await open({ dir: v.dir, logger: victimLogger.logger, syncIntervalMs: 0, syncOnConnect: false })
    undo.push(() => victim.close())
    const h = await tempDir('convergent-hostile-honest-')
    undo.push(h.cleanup)
    const honest = await open({ dir: h.dir, peers: [victim.multiaddrs[0]!], logger: silentLogger, syncIntervalMs: 0, syncOnConnect: false })
    undo.push(() => honest.close())
    await waitFor(() => victim.peers().includes(honest.peerId), 'honest connected')
    const hostile = await Hostile.start(victim)
    return { victim, victimLogger, victimDir: v.dir, honest, hostile, cleanups: [v.cleanup, h.cleanup] }
  } catch (err) {
    for (const step of undo.reverse()) await step().catch(() => undefined)
    throw err
  }
}

export async function stopCast(cast: Cast | undefined): Promise<void> {
  if (cast === undefined) return
  await cast.hostile.stop().catch(() => undefined)
  await Promise.all([cast.honest.close().catch(() => undefined), cast.victim.close().catch(() => undefined)])
  for (const c of cast.cleanups) await c()
}

// --- one attack, measured ---

export interface AttackSpec {
  name: string
  /** One pass of the attack's message sequence. Runs back to back until the window is over. */
  pass: (cast: Cast) => Promise<void>
  /** Keep attacking at least this long (ms), and until the honest write arrived (or its wait ran out). Default 1,200. */
  minWindowMs?: number
  /** Stop after this many passes (for attacks whose single pass is the whole story). Default: unlimited. */
  maxPasses?: number
  /** Free text for the table. */
  note?: (cast: Cast) => string
}

export interface AttackResult extends Figures {
  /** The honest write's latency (as in figures) and its id. */
  honestId: string
  passErrors: string[]
}

let honestSeq = 0

/** How long we wait for the honest write before calling it lost (the bound is 2 s). */
const HONEST_WAIT_MS = 5_000

export async function runAttack(cast: Cast, spec: AttackSpec): Promise<AttackResult> {
  const { victim, honest } = cast
  const honestId = `${HONEST_PREFIX}${++honestSeq}-${spec.name.slice(0, 16).replace(/[^A-Za-z0-9]/g, '_')}`
  gc()
  await sleep(20)
  gc()
  const baseline = process.memoryUsage.rss()
  let peak = baseline
  const sampler = setInterval(() => {
    const r = process.memoryUsage.rss()
    if (r > peak) peak = r
  }, 20)
  const histogram = monitorEventLoopDelay({ resolution: 10 })
  const busy: number[] = []
  let lastCpu = process.cpuUsage()
  let lastTick = performance.now()
  const busyTicker = setInterval(() => {
    const cpu = process.cpuUsage()
    const now = performance.now()
    busy.push(Math.min(now - lastTick, (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000))
    lastCpu = cpu
    lastTick = now
  }, 10)

  // The victim tells us when the honest write arrives.
  let arrivedAt: number | undefined
  const unsubscribe = victim.collection(HONEST_COLLECTION).subscribe((event) => {
    if (event.id === honestId && arrivedAt === undefined) arrivedAt = performance.now()
  })

  const start = performance.now()
  const debug = process.env.HOSTILE_DEBUG === '1'
  if (debug) console.log(`[window ${spec.name}] start hrtime µs ${process.hrtime.bigint() / 1000n}`)
  histogram.enable()
  const cpuBefore = process.cpuUsage()
  const logBefore = { lines: cast.victimLogger.lines, bytes: cast.victimLogger.bytes }
  let passes = 0
  const passErrors: string[] = []
  let writtenAt: number | undefined
  let writeFailed: string | undefined
  let durableAt: number | undefined
  const minWindow = spec.minWindowMs ?? 1_200
  const attacking = (async () => {
    for (;;) {
      try {
        await spec.pass(cast)
      } catch (err) {
        passErrors.push((err as Error).message)
      }
      passes++
      await new Promise((resolve) => setImmediate(resolve)) // a pass that never left the microtask queue must not starve the rest
      const elapsed = performance.now() - start
      const honestSettled = arrivedAt !== undefined || writeFailed !== undefined || (writtenAt !== undefined && performance.now() - writtenAt > HONEST_WAIT_MS)
      if (spec.maxPasses !== undefined && passes >= spec.maxPasses) return
      if (elapsed >= minWindow && honestSettled) return
    }
  })()
  // The honest write goes out once the attack is under way.
  await sleep(100)
  writtenAt = performance.now()
  const writing = honest
    .collection(HONEST_COLLECTION)
    .put(honestId, { at: Date.now() })
    .then(() => void (durableAt = performance.now()))
    .catch((err: unknown) => void (writeFailed = (err as Error).message))
  await attacking
  await writing
  // Attacks that end before the honest write arrived: wait for it (the clock runs from the put).
  while (arrivedAt === undefined && writeFailed === undefined && performance.now() - writtenAt < HONEST_WAIT_MS) await sleep(10)
  histogram.disable()
  const cpu = process.cpuUsage(cpuBefore)
  if (debug) console.log(`[window ${spec.name}] end hrtime µs ${process.hrtime.bigint() / 1000n}`)
  const end = performance.now()
  clearInterval(sampler)
  clearInterval(busyTicker)
  busy.sort((a, b) => a - b)
  unsubscribe()
  peak = Math.max(peak, process.memoryUsage.rss())
  gc()
  await sleep(20)
  const after = process.memoryUsage.rss()
  const figures: AttackResult = {
    attack: spec.name,
    p99Ms: histogram.percentile(99) / 1e6,
    maxMs: histogram.max / 1e6,
    rssPeakMb: (peak - baseline) / MB,
    rssAfterMb: (after - baseline) / MB,
    honestMs: arrivedAt === undefined ? null : arrivedAt - writtenAt,
    honestDurableMs: durableAt === undefined ? null : durableAt - writtenAt,
    busyP99Ms: busy[Math.min(busy.length - 1, Math.floor(busy.length * 0.99))] ?? 0,
    busyMaxMs: busy[busy.length - 1] ?? 0,
    cpuMs: (cpu.user + cpu.system) / 1000,
    logLines: cast.victimLogger.lines - logBefore.lines,
    logKb: (cast.victimLogger.bytes - logBefore.bytes) / 1024,
    windowMs: end - start,
    passes,
    note: spec.note?.(cast) ?? '',
    honestId,
    passErrors,
  }
  FIGURES.push(figures)
  return figures
}

// --- payloads ---

/** Bytes of one Push message on a collection's gossip topic. */
export function push(collection: string, backend: string, entries: [string, Uint8Array][], seq = 1): Uint8Array {
  return encodeMessage(MessageType.Push, { c: collection, b: backend, o: 'hostile', s: seq, e: entries })
}

export function topic(collection: string): string {
  return topicOf('default', collection)
}

/**
 * An Automerge document chunk of 61,318 bytes holding one field: a string of 60 MiB ('a'
 * repeated), which Automerge's columns store deflated. Made with
 *   A.save(A.change(A.from({ '\u0000deleted': false }), { time: 0 }, (r) => { r.v = new A.ImmutableString('a'.repeat(60 * 2 ** 20)) })))
 * (10 s of work), kept here gzipped once more (the deflate stream of one repeated byte is itself
 * repetitive). Loading it inflates ~60 MiB inside Automerge's WASM heap, and reading it builds
 * a 60 MiB string.
 */
const BOMB_GZ_BASE64 =
  'H4sIAAAAAAACA+3dz2vPcRwH8M/n/R3fb5vYkh1Y68uSkuKgtbRlIxIXk2m3UeYysgOL1Nd3mzEH5Yak0MqPVjNycVnk4GCFxCjs4CAWUWh+ffl+28Hf8Onx' +
  'uLxfh/fpeXz1er/eA/s39/9eu6wx+vE6FVd29TT1Xxrfd65i/Oz5LYPd+TieHHry5cChC62NXxc+vdlyovXzm57Lo9mmNZXvl1Q3HKxKxyEV5oe6iubU+rAj' +
  'ZBbMWRzqwup4XdiR7vj0KpWPQ4hCHOLc48Kjidkj+ZErh3NRfDQK6Vwm2t25t/NA5+64p3QnxLn4eD4/mZq62xv9k88++720+lp5BAAAACRc/kV/Ki4WLcM/' +
  't6zYNksiAAAAkHi30ulQPPvav59pHzIbAAAAAMm3Z97csuJZNvpx5eimBQIBAACAxHtYW5MpFdNj9X3XAQAAgKQrP9KdLbYCsoMHj57ccF1zBAAAABJv57fJ' +
  '5lLxoHC7ansbAAAAkHQTMx8KZAvPN24VBwAAACTerpkFgvlfHYtaxAEAAACJN9DUUFnsBVTevzN2f0mbVxMAAACQeKtmFghGbwsvM/YpAgAAQOItn7rbW+oF' +
  'nC501V2VBwAAACTejXQ6FHsBzX9GTl0UBwAAACTevdqaTGkwYHqsvk8cAAAAkHibj3Q3FwcDsu8KH3LHym1QAAAA4H/Ds0IU/wX4XWQNhu8AAA=='
export function automergeBomb(): Uint8Array {
  return new Uint8Array(gunzipSync(Buffer.from(BOMB_GZ_BASE64, 'base64')))
}
