import { join } from 'node:path'
import * as Y from 'yjs'
import { LeveldbPersistence } from 'y-leveldb'
import type { Product } from '../lib/values.js'
import { CATALOG } from './catalog.js'
import { captureUpdate } from './raw.js'
import type { BenchNode, OpenOptions, System } from './types.js'

/**
 * Yjs + y-leveldb, the usual way to keep Yjs documents on disk: one Y.Doc per entity, each
 * update stored with storeUpdate (awaited: it resolves once LevelDB has written it).
 * y-leveldb has no network of its own (y-websocket would be the usual one).
 */
class YLeveldbNode implements BenchNode {
  readonly port = undefined
  readonly token = ''
  private readonly docs = new Map<string, Y.Doc>()

  constructor(private readonly persistence: LeveldbPersistence) {}

  put(id: string, value: Product): Promise<void> {
    const doc = new Y.Doc()
    this.docs.set(id, doc)
    return this.store(id, doc, () => {
      const map = doc.getMap('value')
      map.set('name', value.name)
      map.set('price', value.price)
      map.set('stock', value.stock)
      map.set('tags', Y.Array.from(value.tags))
    })
  }

  setStock(id: string, stock: number): Promise<void> {
    const doc = this.docs.get(id)!
    return this.store(id, doc, () => doc.getMap('value').set('stock', stock))
  }

  private async store(id: string, doc: Y.Doc, fn: () => void): Promise<void> {
    await this.persistence.storeUpdate(id, captureUpdate(doc, fn))
  }

  async flush(): Promise<void> {}

  received(): number {
    return 0
  }

  async connect(): Promise<void> {
    throw new Error('y-leveldb has no network')
  }

  close(): Promise<void> {
    return this.persistence.destroy()
  }
}

export const yLeveldbSystem: System = {
  ...CATALOG['y-leveldb'],
  networked: false,
  async open(options: OpenOptions) {
    return new YLeveldbNode(new LeveldbPersistence(join(options.dir, 'y-leveldb')))
  },
}
