/** Counters of everything the simulated network carried, in total and per timeline bucket. */
export interface TrafficTotals {
  /** Every frame between two nodes (gossip RPCs, sync requests and responses). */
  frames: number
  bytes: number
  gossipDataFrames: number
  gossipControlFrames: number
  gossipBytes: number
  syncRequests: number
  syncResponses: number
  syncBytes: number
  /** Frames lost on a link (or dropped because their connection closed). */
  framesLost: number
  /** Reliable frames retransmitted after a loss. */
  retransmits: number
}

export interface GossipCounters {
  /** Messages created by publish(). */
  published: number
  /** Message copies sent (publish and forward). */
  messageCopies: number
  /** Copies that arrived at a node that had already seen the message. */
  duplicatesReceived: number
  ihave: number
  iwant: number
  graft: number
  prune: number
  subscriptions: number
  idontwant: number
}

export type SeriesName = 'gossipData' | 'gossipControl' | 'sync' | 'bytes'

export class Metrics {
  readonly traffic: TrafficTotals = {
    frames: 0,
    bytes: 0,
    gossipDataFrames: 0,
    gossipControlFrames: 0,
    gossipBytes: 0,
    syncRequests: 0,
    syncResponses: 0,
    syncBytes: 0,
    framesLost: 0,
    retransmits: 0,
  }
  readonly gossip: GossipCounters = {
    published: 0,
    messageCopies: 0,
    duplicatesReceived: 0,
    ihave: 0,
    iwant: 0,
    graft: 0,
    prune: 0,
    subscriptions: 0,
    idontwant: 0,
  }
  private readonly series: Record<SeriesName, number[]> = { gossipData: [], gossipControl: [], sync: [], bytes: [] }

  constructor(
    private readonly bucketMs: number,
    private readonly now: () => number,
  ) {}

  gossipFrame(bytes: number, carriesMessages: boolean): void {
    const t = this.traffic
    t.frames++
    t.bytes += bytes
    t.gossipBytes += bytes
    if (carriesMessages) {
      t.gossipDataFrames++
      this.add('gossipData', 1)
    } else {
      t.gossipControlFrames++
      this.add('gossipControl', 1)
    }
    this.add('bytes', bytes)
  }

  syncFrame(bytes: number, isRequest: boolean): void {
    const t = this.traffic
    t.frames++
    t.bytes += bytes
    t.syncBytes += bytes
    if (isRequest) t.syncRequests++
    else t.syncResponses++
    this.add('sync', 1)
    this.add('bytes', bytes)
  }

  /** Values per bucket, from time 0 to `untilMs`. */
  seriesOf(name: SeriesName, untilMs: number): number[] {
    const n = Math.ceil(untilMs / this.bucketMs)
    const s = this.series[name]
    return Array.from({ length: n }, (_, i) => s[i] ?? 0)
  }

  get bucket(): number {
    return this.bucketMs
  }

  private add(name: SeriesName, v: number): void {
    const i = Math.floor(this.now() / this.bucketMs)
    const s = this.series[name]
    while (s.length <= i) s.push(0)
    s[i]! += v
  }
}
