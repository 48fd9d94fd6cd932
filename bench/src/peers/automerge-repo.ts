import { once } from 'node:events'
import { join } from 'node:path'
import { Repo, type DocHandle } from '@automerge/automerge-repo'
import { NodeFSStorageAdapter } from '@automerge/automerge-repo-storage-nodefs'
import { WebSocketClientAdapter, WebSocketServerAdapter } from '@automerge/automerge-repo-network-websocket'
import { WebSocketServer } from 'ws'
import type { Product } from '../lib/values.js'
import { CATALOG } from './catalog.js'
import type { BenchNode, OpenOptions, System } from './types.js'

/**
 * automerge-repo 2: one Automerge document per entity, NodeFS storage, the websocket network:
 * the first node serves on 127.0.0.1, a joining node is a client only (a repo that both serves
 * and dials leaves documents it receives stuck in 'loading'). The default share policy
 * announces every new document to every connected peer.
 *
 * automerge-repo acknowledges no write: change() is synchronous and storage saves on a
 * debounce, so durable throughput is measured up to repo.flush().
 */
class AutomergeRepoNode implements BenchNode {
  readonly token = ''
  private readonly handles = new Map<string, DocHandle<Product>>()
  private readonly seen = new Set<string>()
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly repo: Repo,
    private readonly server: WebSocketServer | undefined,
  ) {}

  get port(): number | undefined {
    if (this.server === undefined) return undefined
    const address = this.server.address()
    if (address === null || typeof address === 'string') throw new Error('websocket server has no TCP address')
    return address.port
  }

  async put(id: string, value: Product): Promise<void> {
    this.handles.set(id, this.repo.create<Product>(value))
  }

  async setStock(id: string, stock: number): Promise<void> {
    this.handles.get(id)!.change((d) => {
      d.stock = stock
    })
  }

  flush(): Promise<void> {
    return this.repo.flush()
  }

  /**
   * automerge-repo raises no event when a peer's document arrives, so the repo's handles are
   * polled (every 5 ms, from the first call) for documents that became ready with content.
   */
  received(): number {
    if (this.timer === undefined) {
      const own = new Set([...this.handles.values()].map((h) => h.documentId as string))
      this.timer = setInterval(() => {
        for (const [docId, handle] of Object.entries(this.repo.handles)) {
          if (this.seen.has(docId) || own.has(docId) || !handle.isReady()) continue
          if ((handle.doc() as Product | undefined)?.name !== undefined) this.seen.add(docId)
        }
      }, 5)
    }
    return this.seen.size
  }

  async connect(): Promise<void> {
    throw new Error('automerge-repo nodes here join while opening (OpenOptions.join)')
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    await this.repo.shutdown()
    const server = this.server
    if (server === undefined) return
    for (const client of server.clients) client.terminate()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

export const automergeRepoSystem: System = {
  ...CATALOG['automerge-repo'],
  networked: true,
  async open(options: OpenOptions) {
    const storage = new NodeFSStorageAdapter(join(options.dir, 'automerge-repo'))
    if (options.join !== undefined) {
      const client = new WebSocketClientAdapter(`ws://127.0.0.1:${options.join.port}`)
      return new AutomergeRepoNode(new Repo({ storage, network: [client] }), undefined)
    }
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    await once(server, 'listening')
    // The adapter's types see @types/ws through CommonJS, ours through ESM: same class at runtime.
    const adapter = new WebSocketServerAdapter(server as unknown as ConstructorParameters<typeof WebSocketServerAdapter>[0])
    return new AutomergeRepoNode(new Repo({ storage, network: [adapter] }), server)
  },
}
