// @orbitdb/core 4 ships no type declarations; this is the little of it the bench uses.
declare module '@orbitdb/core' {
  export interface OrbitDBEntry {
    hash: string
    /** Hash of the writer's identity. */
    identity: string
    clock: { id: string; time: number }
    payload: { op: string; key: string | null; value: unknown }
  }
  export interface KeyValueDatabase {
    address: string
    put(key: string, value: unknown): Promise<string>
    get(key: string): Promise<unknown>
    all(): Promise<{ key: string; value: unknown; hash: string }[]>
    events: {
      on(event: 'update', listener: (entry: OrbitDBEntry) => void): void
      on(event: 'join', listener: (peerId: unknown, heads: unknown) => void): void
      on(event: 'error', listener: (err: Error) => void): void
    }
    close(): Promise<void>
  }
  export interface OrbitDB {
    identity: { id: string; hash: string }
    open(address: string, options?: { type?: string }): Promise<KeyValueDatabase>
    stop(): Promise<void>
  }
  export function createOrbitDB(options: { ipfs: unknown; id?: string; directory?: string }): Promise<OrbitDB>
}
