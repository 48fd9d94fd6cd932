// y-leveldb 0.2 ships types, but its package.json "exports" do not point at them.
declare module 'y-leveldb' {
  import type * as Y from 'yjs'
  export class LeveldbPersistence {
    constructor(location: string, options?: { levelOptions?: object })
    storeUpdate(docName: string, update: Uint8Array): Promise<number>
    getYDoc(docName: string): Promise<Y.Doc>
    flushDocument(docName: string): Promise<void>
    destroy(): Promise<void>
  }
}
