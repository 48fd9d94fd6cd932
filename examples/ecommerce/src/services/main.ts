/**
 * One service process (inventory, orders or payments), forked by the demo driver with its
 * config as JSON in argv[2]. It opens its own replica, serves its HTTP API on 127.0.0.1 and,
 * on a second port, the replica's /metrics, /healthz, /readyz and /status (convergent's serve()), sends
 * { type: 'ready' } over IPC, and shuts down cleanly on SIGINT, SIGTERM, an IPC 'stop', or
 * when the driver goes away (IPC disconnect) — so it never outlives the demo.
 */
import { mkdir } from 'node:fs/promises'
import { serve as serveReplica, type Logger, type Served } from 'convergent'
import type { ReadyMessage, ServiceConfig } from '../shared/protocol.js'
import { serve, type RunningServer } from './http-server.js'
import { OrderDesk } from './order-desk.js'
import { PartitionGate } from './partition-gate.js'
import { PaymentWorker } from './payment-worker.js'
import { CustomerBook } from './customer-book.js'
import { buildRoutes } from './routes.js'
import { seedInventory } from './seed.js'
import { openShopReplica, type ShopReplica } from './shop-replica.js'
import { StockWatch } from './stock-watch.js'

const SHUTDOWN_DEADLINE_MS = 5_000

const config = JSON.parse(process.argv[2] ?? '{}') as ServiceConfig
const logger = serviceLogger(config.name)

let shop: ShopReplica | undefined
let server: RunningServer | undefined
let ops: Served | undefined
let worker: PaymentWorker | undefined
let watch: StockWatch | undefined
let stopping: Promise<void> | undefined

async function start(): Promise<void> {
  await mkdir(config.dataDir, { recursive: true })
  const gate = new PartitionGate()
  shop = await openShopReplica(config, gate, logger)
  if (config.name === 'inventory') await seedInventory(shop, config.stockPerSku)
  watch = new StockWatch(shop.stock)
  await watch.init()
  if (config.name === 'payments') {
    worker = new PaymentWorker(shop, logger)
    await worker.start()
  }
  // The web shop takes orders at the orders service; the shop counter at inventory — so
  // orders keep coming in on both sides of a partition between them.
  // The web shop also takes the customer's details: orders is the one writer of customers,
  // and derives their ids with the pseudonym key from its environment.
  const customers = config.name === 'orders' ? new CustomerBook(shop, pseudonymKey()) : undefined
  const desk =
    config.name === 'orders'
      ? new OrderDesk(shop, 'orders', 'web', config.waitMs, customers)
      : config.name === 'inventory'
        ? new OrderDesk(shop, 'inventory', 'store', config.waitMs)
        : undefined
  const routes = buildRoutes({ config, shop, gate, watch, ...(desk ? { desk } : {}), ...(customers ? { customers } : {}) })
  server = await serve(routes, config.httpPort, (err) => logger.error('request failed', { err }))
  // Prometheus scrapes this one: /metrics, and /healthz and /readyz for probes.
  ops = await serveReplica(shop.replica, { host: '127.0.0.1', port: config.metricsPort })
  const ready: ReadyMessage = {
    type: 'ready',
    name: config.name,
    pid: process.pid,
    peerId: shop.replica.peerId,
    multiaddrs: shop.replica.multiaddrs,
    url: server.url,
    metricsUrl: ops.url,
  }
  process.send?.(ready)
  log(`ready: ${server.url} (metrics ${ops.url}/metrics) ${shop.replica.multiaddrs.join(' ')}`)
}

function shutdown(why: string): Promise<void> {
  stopping ??= (async () => {
    log(`stopping (${why})`)
    // If closing hangs, leave anyway: the driver must never be left waiting on us.
    setTimeout(() => {
      log('shutdown deadline passed; exiting')
      process.exit(1)
    }, SHUTDOWN_DEADLINE_MS).unref()
    try {
      await server?.close()
      await ops?.close()
      await worker?.stop()
      watch?.stop()
      await shop?.replica.close()
      log('stopped')
    } catch (err) {
      logger.error('shutdown failed', { err })
      process.exitCode = 1
    }
    if (process.connected) process.disconnect()
    process.exit()
  })()
  return stopping
}

process.on('SIGINT', () => void shutdown('SIGINT'))
process.on('SIGTERM', () => void shutdown('SIGTERM'))
process.on('disconnect', () => void shutdown('driver disconnected'))
process.on('message', (m) => {
  if ((m as { type?: string } | null)?.type === 'stop') void shutdown('asked to stop')
})

start().catch((err) => {
  logger.error('start failed', { err })
  process.exitCode = 1
  void shutdown('start failed')
})

function pseudonymKey(): string {
  const key = process.env.SHOP_PSEUDONYM_KEY
  if (key === undefined) throw new Error('SHOP_PSEUDONYM_KEY is not set: the orders service derives customer ids with it')
  return key
}

function log(message: string): void {
  process.stdout.write(`${new Date().toISOString()} [${config.name}] ${message}\n`)
}

function serviceLogger(name: string): Logger {
  const line = (level: string, message: string, fields?: Record<string, unknown>): void => {
    const err = fields?.err
    const detail = err instanceof Error ? ` ${err.stack ?? err.message}` : fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : ''
    process.stderr.write(`${new Date().toISOString()} [${name}] ${level} ${message}${detail}\n`)
  }
  return { warn: (m, f) => line('warn', m, f), error: (m, f) => line('error', m, f) }
}
