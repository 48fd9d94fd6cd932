import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import * as Y from 'yjs'
import * as A from '@automerge/automerge'
import type { Product } from '../lib/values.js'
import { CATALOG } from './catalog.js'
import type { BenchNode, OpenOptions, System } from './types.js'

/** The CRDT half of the ceiling: one document per entity, a delta per change. */
interface Docs {
  put(id: string, value: Product): Uint8Array
  setStock(id: string, stock: number): Uint8Array
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
}

/**
 * The raw ceiling: the same Yjs / Automerge operations as Convergent, each delta written
 * to classic-level with writes of one tick sharing one batch (group commit, sync: false like
 * Convergent's store) — and no Convergent code: no validation, heads, feed, digest or cache.
 */
class RawNode implements BenchNode {
  readonly port = undefined
  readonly token = ''
  private pending: { key: string; value: Uint8Array; done: () => void; fail: (e: unknown) => void }[] = []
  private writing: Promise<void> = Promise.resolve()
  private scheduled = false
  private seq = 0

  constructor(
    private readonly db: ClassicLevel<string, Uint8Array>,
    private readonly docs: Docs,
  ) {}

  put(id: string, value: Product): Promise<void> {
    return this.write(`${id}/${this.seq++}`, this.docs.put(id, value))
  }

  setStock(id: string, stock: number): Promise<void> {
    return this.write(`${id}/${this.seq++}`, this.docs.setStock(id, stock))
  }

  private write(key: string, value: Uint8Array): Promise<void> {
    return new Promise((done, fail) => {
      this.pending.push({ key, value, done, fail })
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
        await this.db.batch(batch.map((w) => ({ type: 'put' as const, key: w.key, value: w.value })))
        for (const w of batch) w.done()
      } catch (err) {
        for (const w of batch) w.fail(err)
      }
    })
  }

  async flush(): Promise<void> {
    await this.writing
  }

  received(): number {
    return 0
  }

  async connect(): Promise<void> {
    throw new Error('the raw ceiling has no network')
  }

  async close(): Promise<void> {
    await this.writing
    await this.db.close()
  }
}

export function rawSystem(backend: 'yjs' | 'automerge'): System {
  return {
    ...CATALOG[`raw-${backend}`],
    networked: false,
    async open(options: OpenOptions) {
      const db = new ClassicLevel<string, Uint8Array>(join(options.dir, 'raw'), { valueEncoding: 'view' })
      await db.open()
      return new RawNode(db, backend === 'yjs' ? new YjsDocs() : new AutomergeDocs())
    },
  }
}
