/** A notable event of a run (faults, node lifecycle, checker verdicts) at a virtual time. */
export interface TraceEvent {
  at: number
  event: string
}

/** Intervals during which a fault was in force, for the timeline and the healthy-write filter. */
export interface FaultInterval {
  kind: string
  label: string
  fromMs: number
  /** NaN while still in force. */
  toMs: number
}

const MAX_TRACE = 5000

export class Trace {
  readonly events: TraceEvent[] = []
  dropped = 0
  readonly faults: FaultInterval[] = []
  /** Times at which a fault ended (heal, restart, flapping stopped): convergence is measured from these. */
  readonly heals: { at: number; kind: string; live: number[] }[] = []

  constructor(
    private readonly now: () => number,
    /** Nodes up now (recorded with each heal). */
    private readonly liveNodes: () => number[] = () => [],
  ) {}

  log(event: string): void {
    if (this.events.length < MAX_TRACE) this.events.push({ at: this.now(), event })
    else this.dropped++
  }

  open(kind: string, label: string): FaultInterval {
    const f: FaultInterval = { kind, label, fromMs: this.now(), toMs: NaN }
    this.faults.push(f)
    this.log(`${kind} begins: ${label}`)
    return f
  }

  /** Ends every open interval of these kinds (all kinds if none given). */
  close(kinds?: string[], label?: string): void {
    const closed = new Set<string>()
    for (const f of this.faults) {
      if (!Number.isNaN(f.toMs)) continue
      if (kinds !== undefined && !kinds.includes(f.kind)) continue
      if (label !== undefined && f.label !== label) continue
      f.toMs = this.now()
      closed.add(label === undefined ? f.kind : `${f.kind} ${label}`)
    }
    if (closed.size > 0) this.heals.push({ at: this.now(), kind: [...closed].join(', '), live: this.liveNodes() })
  }

  /** A fault that is over at once (a join or a graceful leave), shown as a point. */
  instant(kind: string, label: string): void {
    this.faults.push({ kind, label, fromMs: this.now(), toMs: this.now() })
    this.log(`${kind}: ${label}`)
  }

  /** True if a fault is in force at any time in [from, to]. */
  faultDuring(from: number, to: number, settleMs: number): boolean {
    for (const f of this.faults) {
      const end = Number.isNaN(f.toMs) ? Infinity : f.toMs + settleMs
      if (f.fromMs <= to && end >= from) return true
    }
    return false
  }

  /** The last `n` events up to `at` (for a failure's short trace). */
  tail(n: number): TraceEvent[] {
    return this.events.slice(-n)
  }
}
