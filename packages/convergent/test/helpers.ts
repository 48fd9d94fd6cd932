import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { classicLevelStore } from '@convergent/level'
import { silentLogger, type Replica } from '@convergent/core'
import { tempDir } from '@convergent/core/testing'
import { folderPeerId, generateClusterKey, open, type OpenOptions, type ReplicaWithMetrics } from '../src/index.js'

export const BACKENDS = ['yjs', 'automerge'] as const
export type BackendName = (typeof BACKENDS)[number]

/** Runs a Node script in a child process (killed after timeoutMs) and collects its output. */
export function runNode(
  file: string,
  args: string[] = [],
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, ...args], options.cwd === undefined ? {} : { cwd: options.cwd })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
    child.on('error', reject)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** The CLI through the bin shim npm links, so the command users run is the one tested. */
export const CLI = fileURLToPath(new URL('../../bin/convergent.js', import.meta.url))

/** Runs `convergent <args>` in a child process. */
export function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runNode(CLI, args)
}

/**
 * Every record of a folder's LevelDB, key and value (read by LevelDB alone: the store's open()
 * would finish drops and check marks itself) — to show that a command changed nothing.
 */
export async function folderRecords(dir: string): Promise<string[]> {
  const db = classicLevelStore(join(dir, 'db')).db as unknown as {
    open(): Promise<void>
    close(): Promise<void>
    iterator(o: object): { all(): Promise<[string, string][]> }
  }
  await db.open()
  try {
    return (await db.iterator({ keyEncoding: 'utf8', valueEncoding: 'hex' }).all()).map(([k, v]) => `${k}=${v}`)
  } finally {
    await db.close()
  }
}

export { dump, recordingLogger, tempDir, waitFor } from '@convergent/core/testing'

/** A folder of a stopped service: 'products' with mug and cup, mug updated once (its log not yet replayed into a table). */
export async function productsFolder(dir: string): Promise<void> {
  const replica = await open({ dir, network: false, logger: silentLogger })
  const products = replica.collection('products')
  await products.put('mug', { name: 'Mug', price: 12 })
  await products.put('cup', { name: 'Cup', price: 8 })
  await products.update('mug', (p) => void (p.price = 10))
  await replica.close()
}

/**
 * Replicas opened by `open()` in temp folders for one suite. After each test: what was given to
 * `first` (servers, raw peers) is stopped, then the replicas are closed, then the folders removed.
 */
export function replicasAfterEach(
  prefix: string,
  defaults: OpenOptions = {},
): {
  replica(options?: OpenOptions): Promise<ReplicaWithMetrics>
  folder(): Promise<string>
  first(stop: () => Promise<unknown>): void
  opened(replica: Replica): void
} {
  const first: (() => Promise<unknown>)[] = []
  const opened: Replica[] = []
  const folders: (() => Promise<void>)[] = []
  afterEach(async function () {
    await Promise.all(first.splice(0).map((stop) => stop()))
    await Promise.all(opened.splice(0).map((r) => r.close()))
    await Promise.all(folders.splice(0).map((remove) => remove()))
  })
  const folder = async (): Promise<string> => {
    const { dir, cleanup } = await tempDir(prefix)
    folders.push(cleanup)
    return dir
  }
  return {
    async replica(options = {}) {
      const r = await open({ dir: await folder(), logger: silentLogger, syncIntervalMs: 0, ...defaults, ...options })
      opened.push(r)
      return r
    },
    folder,
    first: (stop) => void first.push(stop),
    opened: (r) => void opened.push(r),
  }
}

/**
 * Real libp2p replicas (TCP on 127.0.0.1, quick redials) for one suite: `start` opens one in a
 * temp folder (or the `dir` given), and after each test they are closed and the folders removed.
 */
export function libp2pReplicas(prefix: string): { folder(): Promise<string>; start(options: OpenOptions): Promise<ReplicaWithMetrics> } {
  const suite = replicasAfterEach(prefix, { libp2p: { redialMinMs: 50, redialMaxMs: 200 } })
  return { folder: suite.folder, start: (options) => suite.replica(options) }
}

/**
 * A new cluster key, its admin and `members` more replicas (each dialing those before it), all
 * from a libp2pReplicas suite: the admin's peer id is the cluster's trust root. Each comes with
 * its folder (for byte searches of it).
 */
export async function startCluster(
  suite: ReturnType<typeof libp2pReplicas>,
  members: number,
): Promise<{ key: string; adminId: string; admin: ReplicaWithMetrics; members: ReplicaWithMetrics[]; dirs: string[] }> {
  const key = generateClusterKey()
  const dirs = await Promise.all(Array.from({ length: members + 1 }, () => suite.folder()))
  const adminId = await folderPeerId(dirs[0]!)
  const cluster = { key, admins: [adminId] }
  const started: ReplicaWithMetrics[] = []
  for (const dir of dirs) started.push(await suite.start({ dir, cluster, peers: started.map((r) => r.multiaddrs[0]!) }))
  return { key, adminId, admin: started[0]!, members: started.slice(1), dirs }
}

/** Every file under dir, concatenated (a byte search over a replica's folder). */
export async function folderBytes(dir: string): Promise<Buffer> {
  const parts: Buffer[] = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) parts.push(await readFile(join(entry.parentPath, entry.name)).catch(() => Buffer.alloc(0)))
  }
  return Buffer.concat(parts)
}

/** The tab-separated rows of a CLI listing, without its '#' header and summary lines. */
export function rows(stdout: string): string[][] {
  return stdout
    .trim()
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.split('\t'))
}

/** A fresh temp folder for each test of the suite it is called in (removed after each): call the getter inside a test. */
export function folderEachTest(prefix: string): () => string {
  let dir = ''
  beforeEach(() => void (dir = mkdtempSync(join(tmpdir(), prefix))))
  afterEach(() => rmSync(dir, { recursive: true, force: true }))
  return () => dir
}
