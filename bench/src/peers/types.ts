import type { Product } from '../lib/values.js'
import type { SystemInfo } from './catalog.js'

/**
 * One running node of a system under test. Every workload drives Convergent, the raw ceiling
 * and the peers through this interface only, so they all run the same driver.
 */
export interface BenchNode {
  /** Writes a whole new entity; resolves once the system says it is durable. */
  put(id: string, value: Product): Promise<void>
  /** Changes one field of an existing entity; resolves once durable. */
  setStock(id: string, stock: number): Promise<void>
  /**
   * Resolves when every write made so far is on disk. A no-op for systems that acknowledge
   * writes only once durable; automerge-repo saves on a debounce and needs it.
   */
  flush(): Promise<void>
  /**
   * How many entities this node has received from other nodes so far. Cheap to call: the
   * workloads poll it. Each system counts in the cheapest exact way it allows.
   */
  received(): number
  /** Where others dial this node (TCP on 127.0.0.1); undefined for systems without a network. */
  readonly port: number | undefined
  /** What a dialer needs besides the port (a peer id, a database address…). */
  readonly token: string
  /** Dials another node of the same system at 127.0.0.1:port and starts replicating with it. */
  connect(port: number, token: string): Promise<void>
  close(): Promise<void>
}

export interface OpenOptions {
  /** A fresh temp dir the node owns. */
  dir: string
  /** Another node to replicate with, dialed while opening (its port may be a TcpMeter's). */
  join?: { port: number; token: string }
  /** The node will replicate (openPair): systems that can run without a network start it. */
  network?: boolean
}

export interface System extends SystemInfo {
  readonly networked: boolean
  open(options: OpenOptions): Promise<BenchNode>
}
