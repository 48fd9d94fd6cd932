import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import * as Y from 'yjs'
import * as A from '@automerge/automerge'
import type { Product } from '../lib/values.js'
import { CATALOG } from './catalog.js'
import { RawLink, type Entries } from './raw-link.js'
import type { BenchNode, OpenOptions, System } from './types.js'

/** The CRDT half of the ceiling: one document per entity, a delta per change. */
interface Docs {
  put(id: string, value: Product): Uint8Array
  setStock(id: string, stock: number): Uint8Array
  /** A peer's delta: applied to the entity's document (made from it if new here), and the value read (as for a change event). */
  apply(id: string, delta: Uint8Array): unknown
}

/**
 * Live documents, least recently used first, at most `size`; `evict` runs on the ones dropped.
 * The ceiling keeps what an optimal implementation would: a bounded cache whose Automerge
 * documents are freed on eviction — Automerge's WASM heap slows every new document down as
 * unfreed ones pile up (0.2 ms per document with A.free, up to ~7 ms at 10k live ones here).
 */
class DocCache<D> {
  private readonly docs = new Map<string, D>()

  constructor(
    private readonly size: number,
    private readonly evict: (doc: D) => void = () => undefined,
  ) {}

  get(id: string): D {
    const doc = this.docs.get(id)
    if (doc === undefined) throw new Error(`raw ceiling: no live document '${id}'`)
    return doc
  }

  find(id: string): D | undefined {
    return this.docs.get(id)
  }

  set(id: string, doc: D): void {
    this.docs.delete(id)
    this.docs.set(id, doc)
    if (this.docs.size > this.size) {
      const [oldId, oldDoc] = this.docs.entries().next().value as [string, D]
      this.docs.delete(oldId)
      this.evict(oldDoc)
    }
  }
}

const LIVE_DOCS = 1_000

class YjsDocs implements Docs {
  private readonly docs = new DocCache<Y.Doc>(LIVE_DOCS)

  put(id: string, value: Product): Uint8Array {
    const doc = new Y.Doc()
    this.docs.set(id, doc)
    return captureUpdate(doc, () => {
      const map = doc.getMap('value')
      map.set('name', value.name)
      map.set('price', value.price)
      map.set('stock', value.stock)
      map.set('tags', Y.Array.from(value.tags))
    })
  }

  setStock(id: string, stock: number): Uint8Array {
    const doc = this.docs.get(id)
    this.docs.set(id, doc)
    return captureUpdate(doc, () => doc.getMap('value').set('stock', stock))
  }

  apply(id: string, delta: Uint8Array): unknown {
    const doc = this.docs.find(id) ?? new Y.Doc()
    Y.applyUpdate(doc, delta)
    this.docs.set(id, doc)
    return doc.getMap('value').toJSON()
  }
}

/** Runs fn in one Yjs transaction and returns the update it produced. */
export function captureUpdate(doc: Y.Doc, fn: () => void): Uint8Array {
  let update: Uint8Array | undefined
  const listener = (u: Uint8Array): void => {
    update = u
  }
  doc.on('update', listener)
  doc.transact(fn)
  doc.off('update', listener)
  return update!
}

class AutomergeDocs implements Docs {
  private readonly docs = new DocCache<A.Doc<Product>>(LIVE_DOCS, (doc) => A.free(doc))

  put(id: string, value: Product): Uint8Array {
    const doc = A.change(A.init<Product>(), (d) => Object.assign(d, value))
    this.docs.set(id, doc)
    return A.getLastLocalChange(doc)!
  }

  setStock(id: string, stock: number): Uint8Array {
    const doc = A.change(this.docs.get(id), (d) => {
      d.stock = stock
    })
    this.docs.set(id, doc)
    return A.getLastLocalChange(doc)!
  }

  apply(id: string, delta: Uint8Array): unknown {
    const live = this.docs.find(id)
    // A new entity is loaded from its delta (cheaper than applying it to an empty document),
    // and a freshly materialised document reads straight from its object (its fields copied).
    const doc = live === undefined ? A.load<Product>(delta) : A.applyChanges(live, [delta])[0]
    this.docs.set(id, doc)
    return live === undefined ? { ...doc } : A.toJS(doc)
  }
}

/**
 * The raw ceiling: the same Yjs / Automerge operations as Convergent, each delta written
 * to classic-level with writes of one tick sharing one batch (group commit; sync: false like
 * Convergent at durability 'process', sync: true against 'fsync') — and no Convergent code: no validation, heads, feed, digest or cache.
 * With a RawLink (W2, W3), durable deltas go to connected peers, which apply and store them.
 */
class RawNode implements BenchNode {
  private link: RawLink | undefined
  /** Entities received from peers (what W2/W3 count), applied and durable. */
  private readonly arrived = new Set<string>()
  private readonly pushes = new Set<Promise<void>>()
  /** Writes of the coming batch; `push` marks local ones, sent to peers once durable. */
  private pending: { id: string; key: string; value: Uint8Array; push: boolean; done: () => void; fail: (e: unknown) => void }[] = []
  private writing: Promise<void> = Promise.resolve()
  private scheduled = false
  private seq = 0

  constructor(
    private readonly db: ClassicLevel<string, Uint8Array>,
    private readonly docs: Docs,
    /** fsync each batch (W1's -fsync cases, against Convergent's durability 'fsync'). */
    private readonly sync = false,
  ) {}

  /** Starts the network (and joins a peer, pulling what it stores). */
  async listen(join: OpenOptions['join']): Promise<void> {
    this.link = await RawLink.start(
      () => this.stored(),
      (entries) => this.receive(entries),
    )
    if (join !== undefined) await this.link.join(join.port, join.token)
  }

  get port(): number | undefined {
    return this.link?.port
  }

  get token(): string {
    return this.link?.token ?? ''
  }

  /** Every stored delta, each entity's in the order written (keys sort as text: 'e/10' < 'e/9'). */
  private async stored(): Promise<Entries> {
    await this.writing
    const rows: [string, number, Uint8Array][] = []
    for await (const [key, value] of this.db.iterator()) {
      const at = key.lastIndexOf('/')
      rows.push([key.slice(0, at), Number(key.slice(at + 1)), value])
    }
    rows.sort((a, b) => a[1] - b[1])
    return rows.map(([id, , value]) => [id, value])
  }

  private async receive(entries: Entries): Promise<void> {
    await Promise.all(entries.map(([id, delta]) => (this.docs.apply(id, delta), this.write(id, delta, false))))
    for (const [id] of entries) this.arrived.add(id)
  }

  put(id: string, value: Product): Promise<void> {
    return this.write(id, this.docs.put(id, value))
  }

  setStock(id: string, stock: number): Promise<void> {
    return this.write(id, this.docs.setStock(id, stock))
  }

  /** Queues a delta of `id` under its own key (`id/seq`) for the tick's batch. */
  private write(id: string, value: Uint8Array, push = true): Promise<void> {
    return new Promise((done, fail) => {
      this.pending.push({ id, key: `${id}/${this.seq++}`, value, push, done, fail })
      if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => this.commit())
      }
    })
  }

  private commit(): void {
    this.scheduled = false
    const batch = this.pending
    this.pending = []
    this.writing = this.writing.then(async () => {
      try {
        await this.db.batch(
          batch.map((w) => ({ type: 'put' as const, key: w.key, value: w.value })),
          { sync: this.sync },
        )
        for (const w of batch) w.done()
        const local: Entries = batch.filter((w) => w.push).map((w) => [w.id, w.value])
        if (this.link !== undefined && local.length > 0) {
          const p = this.link.push(local).catch((err: Error) => {
            process.stderr.write(`[bench] raw push failed: ${err.message}\n`)
          })
          this.pushes.add(p)
          void p.finally(() => this.pushes.delete(p))
        }
      } catch (err) {
        for (const w of batch) w.fail(err)
      }
    })
  }

  async flush(): Promise<void> {
    await this.writing
  }

  received(): number {
    return this.arrived.size
  }

  async connect(): Promise<void> {
    throw new Error('raw ceiling nodes join while opening (OpenOptions.join)')
  }

  async close(): Promise<void> {
    await this.writing
    await Promise.all([...this.pushes])
    await this.link?.stop()
    await this.db.close()
  }
}

export function rawSystem(backend: 'yjs' | 'automerge', durability: { sync?: boolean } = {}): System {
  return {
    ...CATALOG[`raw-${backend}`],
    networked: true,
    async open(options: OpenOptions) {
      const db = new ClassicLevel<string, Uint8Array>(join(options.dir, 'raw'), { valueEncoding: 'view' })
      await db.open()
      const node = new RawNode(db, backend === 'yjs' ? new YjsDocs() : new AutomergeDocs(), durability.sync ?? false)
      // W1 measures local writes only: no network running beside them.
      if (options.network === true || options.join !== undefined) await node.listen(options.join)
      return node
    },
  }
}
