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
 * automerge-repo saves peers' sync state on a throttle that shutdown() does not cancel, so a
 * save can fire after the node closed and its directory was removed (an ENOENT that crashes
 * the run). Once closed, this adapter drops writes: nothing is measured after close.
 */
class ClosableNodeFSStorage extends NodeFSStorageAdapter {
  closed = false

  override save(key: string[], binary: Uint8Array): Promise<void> {
    return this.unlessClosed(() => super.save(key, binary))
  }

  override remove(key: string[]): Promise<void> {
    return this.unlessClosed(() => super.remove(key))
  }

  override removeRange(prefix: string[]): Promise<void> {
    return this.unlessClosed(() => super.removeRange(prefix))
  }

  /** Skips the write once closed; a write that was under way when the directory went is let go. */
  private async unlessClosed(write: () => Promise<void>): Promise<void> {
    if (this.closed) return
    try {
      await write()
    } catch (error) {
      if (!this.closed) throw error
    }
  }
}

class AutomergeRepoNode implements BenchNode {
  readonly token = ''
  private readonly handles = new Map<string, DocHandle<Product>>()
  private readonly seen = new Set<string>()
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly repo: Repo,
    private readonly storage: ClosableNodeFSStorage,
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
    try {
      await this.repo.shutdown()
    } finally {
      this.storage.closed = true
    }
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
    const storage = new ClosableNodeFSStorage(join(options.dir, 'automerge-repo'))
    if (options.join !== undefined) {
      const client = new WebSocketClientAdapter(`ws://127.0.0.1:${options.join.port}`)
      return new AutomergeRepoNode(new Repo({ storage, network: [client] }), storage, undefined)
    }
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    await once(server, 'listening')
    // The adapter's types see @types/ws through CommonJS, ours through ESM: same class at runtime.
    const adapter = new WebSocketServerAdapter(server as unknown as ConstructorParameters<typeof WebSocketServerAdapter>[0])
    return new AutomergeRepoNode(new Repo({ storage, network: [adapter] }), storage, server)
  },
}
