/**
 * Micro-benchmark of the store's write and read paths, for comparing two builds of
 * @convergent/level in ONE run (the machine is shared, so runs are interleaved: A B B A …).
 *
 *   node packages/level/dist/test/bench/write-path.js [other-build-dir] [rounds]
 *
 * `other-build-dir` holds another build's dist/src (e.g. a copy of the build before a change,
 * in packages/level/.tmp/old/src); without it only this build runs. Each round, per build:
 *   memory  W1-shaped writes (delta, head, leaf, feed) to memory-level, 64 in flight: CPU only
 *   disk    the same to classic-level in a temp dir (no fsync, as W1's default)
 *   read    readEntity of every written entity on that classic-level store (per CPU second)
 *   encode  toLevelOps alone (validation, encoding, and whatever a build adds per op), in ns
 *           per StoreOp: the part of a write that a per-record checksum can slow down
 * Prints the rates per round and the medians.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { Store, StoreOp } from '@convergent/core'
import * as current from '../../src/index.js'
import { toLevelOps } from '../../src/ops.js'
import { PLAIN_SEALER } from '../../src/record.js'
import { entityWrite, entityId } from '../entity-ops.js'

type ToLevelOps = (ops: readonly StoreOp[], prefixes: Record<string, string>, sealer?: unknown) => unknown[]

interface Build {
  name: string
  classicLevelStore: (dir: string) => Store
  memoryLevelStore: () => Store
  toLevelOps: ToLevelOps
}

const PREFIXES = Object.fromEntries(
  ['heads', 'snapshots', 'deltas', 'feed', 'leaves', 'collections', 'meta', 'quarantine', 'store'].map((name) => [name, `!${name}!`]),
)

/** CPU ns per StoreOp of toLevelOps over W1-shaped writes. */
function encodeCost(toLevelOps: ToLevelOps): number {
  const writes = Array.from({ length: 5_000 }, (_, k) => entityWrite('c', k + 1))
  // CPU time, not wall time: on a shared machine a preempted run would count others' work.
  const start = process.cpuUsage()
  let ops = 0
  for (let pass = 0; pass < 10; pass++) {
    for (const write of writes) {
      toLevelOps(write, PREFIXES, PLAIN_SEALER)
      ops += write.length
    }
  }
  const used = process.cpuUsage(start)
  return ((used.user + used.system) * 1000) / ops
}

const WRITES = 20_000
const WINDOW = 64

async function writeAll(store: Store): Promise<number> {
  const start = process.hrtime.bigint()
  let next = 1
  const worker = async (): Promise<void> => {
    while (next <= WRITES) await store.write(entityWrite('c', next++))
  }
  await Promise.all(Array.from({ length: WINDOW }, worker))
  return WRITES / (Number(process.hrtime.bigint() - start) / 1e9)
}

/** readEntity of every entity; CPU time (the reads are synchronous getSync calls, from LevelDB's caches). */
async function readAll(store: Store): Promise<number> {
  const start = process.cpuUsage()
  for (let n = 1; n <= WRITES; n++) if ((await store.readEntity('c', entityId(n))) === undefined) throw new Error(`missing ${n}`)
  const used = process.cpuUsage(start)
  return WRITES / ((used.user + used.system) / 1e6)
}

async function round(build: Build): Promise<{ memory: number; disk: number; read: number; encode: number }> {
  const encode = encodeCost(build.toLevelOps)
  const memStore = build.memoryLevelStore()
  await memStore.open()
  const memory = await writeAll(memStore)
  await memStore.close()
  const dir = await mkdtemp(join(tmpdir(), 'convergent-bench-'))
  try {
    const disk = build.classicLevelStore(dir)
    await disk.open()
    const diskRate = await writeAll(disk)
    const read = await readAll(disk)
    await disk.close()
    return { memory, disk: diskRate, read, encode }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const [otherDir, roundsArg] = process.argv.slice(2)
const builds: Build[] = [{ name: 'this build', ...current, toLevelOps: toLevelOps as ToLevelOps }]
if (otherDir !== undefined && otherDir !== '-') {
  const other = (await import(pathToFileURL(join(resolve(otherDir), 'index.js')).href)) as Omit<Build, 'name' | 'toLevelOps'>
  const ops = (await import(pathToFileURL(join(resolve(otherDir), 'ops.js')).href)) as { toLevelOps: ToLevelOps }
  builds.unshift({
    name: `other (${otherDir})`,
    classicLevelStore: other.classicLevelStore,
    memoryLevelStore: other.memoryLevelStore,
    toLevelOps: ops.toLevelOps,
  })
}
const rounds = Number(roundsArg ?? 6)
const results = new Map(builds.map((b) => [b.name, { memory: [] as number[], disk: [] as number[], read: [] as number[], encode: [] as number[] }]))
await round(builds[0]!) // warm-up (JIT), not counted
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? builds : [...builds].reverse()
  for (const build of order) {
    const got = await round(build)
    const into = results.get(build.name)!
    into.memory.push(got.memory)
    into.disk.push(got.disk)
    into.read.push(got.read)
    into.encode.push(got.encode)
    console.log(
      `round ${r + 1} ${build.name}: encode ${got.encode.toFixed(0)} ns/op, memory ${got.memory.toFixed(0)} w/s, disk ${got.disk.toFixed(0)} w/s, read ${got.read.toFixed(0)} r/s`,
    )
  }
}
for (const [name, r] of results) {
  console.log(
    `median ${name}: encode ${median(r.encode).toFixed(0)} ns/op, memory ${median(r.memory).toFixed(0)} w/s, disk ${median(r.disk).toFixed(0)} w/s, readEntity ${median(r.read).toFixed(0)} r/s`,
  )
}
