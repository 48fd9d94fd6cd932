import type { NetworkControl } from '../run/context.js'
import type { LinkParams } from '../run/scenario.js'
import type { Wiring } from './topology.js'
import { Cuts } from './cuts.js'
import type { LinkModel } from './link-model.js'

/**
 * Which pairs of nodes should be connected: the links the topology wants, minus the ones the
 * fault schedule cuts. The simulated Fabric and the live (libp2p) environment both extend it,
 * so a scenario's faults are applied the same way in both modes; each one only says how it
 * brings its connections in line afterwards (`reconcile`).
 */
export abstract class LinkControl implements NetworkControl, Wiring {
  abstract readonly link: LinkModel
  /** Links the topology wants (bootstrap lists / dials), symmetric; one set per node. */
  protected readonly wanted: Set<number>[] = []
  /** Partitions, isolated nodes and flapping cuts in force now. */
  protected readonly cuts = new Cuts()
  connectionsOpened = 0
  connectionsClosed = 0

  /** After a cut changes: close connections no longer allowed, redial those allowed again. */
  protected abstract reconcile(): void

  // --- Wiring ---

  want(a: number, b: number): void {
    if (a === b) return
    this.wanted[a]!.add(b)
    this.wanted[b]!.add(a)
  }

  wantedOf(a: number): ReadonlySet<number> {
    return this.wanted[a]!
  }

  // --- NetworkControl ---

  partition(groups: number[][]): void {
    this.cuts.partition(groups)
    this.reconcile()
  }

  isolate(node: number): void {
    this.cuts.isolate(node)
    this.reconcile()
  }

  /** Lifts every partition, isolation and flapping cut. */
  heal(): void {
    this.cuts.heal()
    this.reconcile()
  }

  setFlap(groups: number[][] | undefined, down: boolean): void {
    this.cuts.setFlap(groups, down)
    this.reconcile()
  }

  setLinkParams(set: Partial<LinkParams>): void {
    this.link.params = { ...this.link.params, ...set }
  }

  /** True when no partition, isolation or flapping cut is in force. */
  get whole(): boolean {
    return this.cuts.whole
  }

  allowed(a: number, b: number): boolean {
    return this.cuts.allowed(a, b)
  }
}
