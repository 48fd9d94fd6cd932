import { fork, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SERVICE_NAMES, type PolicyDoc, type ReadyMessage, type ServiceConfig, type ServiceName } from '../shared/protocol.js'

const SERVICE_MAIN = fileURLToPath(new URL('../services/main.js', import.meta.url))
const READY_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 6_000

export interface ServiceHandle {
  name: ServiceName
  pid: number
  url: string
  /** Base URL of the replica's /metrics, /healthz, /readyz and /status. */
  metricsUrl: string
  peerId: string
  multiaddrs: string[]
  /** The service's stdout and stderr (its own log, kept out of the demo's output). */
  logFile: string
  child: ChildProcess
}

export type ServiceSettings = Omit<ServiceConfig, 'name' | 'dataDir' | 'peers' | 'listen' | 'httpPort' | 'metricsPort' | 'policy'>

/**
 * The three service processes: orders connects to inventory, payments to both. Every process started here is tracked, and stop() ends them all — politely first
 * (SIGTERM), then with SIGKILL if one does not exit in time.
 */
export class Cluster {
  readonly services = {} as Record<ServiceName, ServiceHandle>
  private readonly children = new Set<ChildProcess>()
  /** Every pid ever started, to check afterwards that none is left. */
  readonly pids: number[] = []
  /** Where each service listened (libp2p, HTTP, metrics) and whom it dialled: a restart reuses them. */
  private readonly addresses = new Map<ServiceName, { listen: string; peers: string[]; httpPort: number; metricsPort: number }>()

  constructor(
    readonly dataRoot: string,
    private readonly settings: ServiceSettings,
    /**
     * The cluster key (each service gets it in CONVERGENT_CLUSTER_KEY), the policy inventory, the
     * admin, signs, and the customer-id key (orders only, in SHOP_PSEUDONYM_KEY).
     */
    private readonly trust: { key: string; policy: PolicyDoc; pseudonymKey: string },
  ) {}

  /**
   * Starts the three at once: their libp2p ports are chosen here, so each knows where the
   * others will listen before they run (the bootstrap redialer retries until they do).
   */
  async start(onStarted?: (s: ServiceHandle) => void): Promise<void> {
    // A port found free may be taken by another process before a service binds it (tests run in
    // parallel): then everything started is stopped and the three start again on new ports.
    for (let attempt = 1; ; attempt++) {
      const [inv, ord, pay] = await freePorts(3)
      const at = (port: number): string => `/ip4/127.0.0.1/tcp/${port}`
      const started = await Promise.allSettled([
        this.startService('inventory', at(inv!), []),
        this.startService('orders', at(ord!), [at(inv!)]),
        this.startService('payments', at(pay!), [at(inv!), at(ord!)]),
      ])
      const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected')
      if (failed === undefined) break
      if (attempt >= 3 || !String(failed.reason).includes('EADDRINUSE')) throw failed.reason
      await this.stop()
      for (const name of SERVICE_NAMES) delete this.services[name]
    }
    for (const s of this.list()) onStarted?.(s)
  }

  /** The running services, always in the order inventory, orders, payments. */
  list(): ServiceHandle[] {
    return SERVICE_NAMES.map((n) => this.services[n]).filter((s): s is ServiceHandle => s !== undefined)
  }

  /** Stops every process started; resolves when all have exited. Safe to call twice. */
  async stop(): Promise<void> {
    await Promise.all([...this.children].map((child) => stopChild(child)))
  }

  /**
   * Stops one service cleanly (SIGTERM: it closes its replica and exits) and takes it out of
   * list(), so nothing polls it while it is down. Its folder stays, for restart().
   */
  async stopService(name: ServiceName): Promise<void> {
    const handle = this.services[name]
    if (handle === undefined) return
    delete (this.services as Partial<Record<ServiceName, ServiceHandle>>)[name]
    await stopChild(handle.child)
  }

  /**
   * Starts a stopped service again: a new process on the same folder (so the same peer id and
   * stored state), on the same libp2p, HTTP and metrics ports (its URLs do not change), dialling
   * the same peers.
   */
  async restart(name: ServiceName): Promise<ServiceHandle> {
    const at = this.addresses.get(name)
    if (at === undefined) throw new Error(`${name} was never started`)
    if (this.services[name] !== undefined) throw new Error(`${name} is running`)
    return this.startService(name, at.listen, at.peers, { httpPort: at.httpPort, metricsPort: at.metricsPort })
  }

  /** Kills every process at once (a second Ctrl-C). */
  kill(): void {
    for (const child of this.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }

  private async startService(name: ServiceName, listen: string, peers: string[], ports = { httpPort: 0, metricsPort: 0 }): Promise<ServiceHandle> {
    const dataDir = join(this.dataRoot, name)
    const logFile = join(this.dataRoot, `${name}.log`)
    const config: ServiceConfig = {
      ...this.settings,
      name,
      dataDir,
      peers,
      listen: [listen],
      ...ports,
      ...(name === 'inventory' ? { policy: this.trust.policy } : {}),
    }
    const fd = openSync(logFile, 'a')
    let child: ChildProcess
    try {
      child = fork(SERVICE_MAIN, [JSON.stringify(config)], {
        stdio: ['ignore', fd, fd, 'ipc'],
        execArgv: ['--enable-source-maps'],
        // Keys in the environment, not in argv (which `ps` shows to every user).
        env: {
          ...process.env,
          CONVERGENT_CLUSTER_KEY: this.trust.key,
          ...(name === 'orders' ? { SHOP_PSEUDONYM_KEY: this.trust.pseudonymKey } : {}),
        },
      })
    } finally {
      closeSync(fd) // the child has its own copy
    }
    this.children.add(child)
    if (child.pid !== undefined) this.pids.push(child.pid)
    child.once('exit', () => this.children.delete(child))
    const ready = await waitReady(child, name, logFile)
    const handle: ServiceHandle = {
      name,
      pid: ready.pid,
      url: ready.url,
      metricsUrl: ready.metricsUrl,
      peerId: ready.peerId,
      multiaddrs: ready.multiaddrs,
      logFile,
      child,
    }
    this.services[name] = handle
    this.addresses.set(name, { listen, peers, httpPort: Number(new URL(handle.url).port), metricsPort: Number(new URL(handle.metricsUrl).port) })
    return handle
  }
}

/** Ports free on 127.0.0.1 right now (the OS picks them; held together so they differ). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((resolve, reject) => {
          const server = createServer()
          server.once('error', reject)
          server.listen(0, '127.0.0.1', () => resolve(server))
        }),
    ),
  )
  const ports = servers.map((s) => (s.address() as AddressInfo).port)
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
  return ports
}

function waitReady(child: ChildProcess, name: ServiceName, logFile: string): Promise<ReadyMessage> {
  return new Promise((resolve, reject) => {
    const fail = (why: string): void => {
      cleanup()
      reject(new Error(`${name} did not start: ${why}\n--- ${logFile} ---\n${tail(logFile)}`))
    }
    const onMessage = (m: unknown): void => {
      if ((m as ReadyMessage | null)?.type !== 'ready') return
      cleanup()
      resolve(m as ReadyMessage)
    }
    const onExit = (code: number | null, signal: string | null): void => fail(`exited (${signal ?? code})`)
    const timer = setTimeout(() => fail(`no ready message within ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS)
    const cleanup = (): void => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
  await exited
  clearTimeout(timer)
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** True if a process with this pid still exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
