import type { ServiceName, StockView } from '../shared/protocol.js'
import type { HttpClient } from './http-client.js'
import type { ServiceHandle } from './cluster.js'
import { Repeater } from './repeater.js'

export interface StockSample {
  /** ms since the scenario began */
  t: number
  service: ServiceName
  /** Stock per SKU as that service saw it. */
  skus: Record<string, number>
  /** Rights that service held, summed over SKUs. */
  rights: number
}

/**
 * Polls every service's view of the stock while the scenario runs: the lowest value any
 * replica showed, and a timeline for the report. Each service also tracks the lowest value it
 * ever held (every applied change, between polls too); lowestWatched collects those (the lowest
 * over every process of a service, when one was restarted).
 */
export class StockMonitor {
  readonly samples: StockSample[] = []
  lowestPolled: number | null = null
  readonly lowestWatched: Partial<Record<ServiceName, number | null>> = {}
  private readonly repeater: Repeater

  constructor(
    private readonly client: HttpClient,
    private readonly services: () => ServiceHandle[],
    private readonly now: () => number,
    intervalMs = 100,
  ) {
    this.repeater = new Repeater(() => this.pollOnce(), intervalMs)
  }

  start(): void {
    this.repeater.start()
  }

  stop(): Promise<void> {
    return this.repeater.stop()
  }

  /** One poll of every service (also called once more at the end, after convergence). */
  async pollOnce(): Promise<void> {
    await Promise.all(
      this.services().map(async (s) => {
        try {
          const view = await this.client.getOk<StockView>(`${s.url}/stock`)
          this.record(s.name, view)
        } catch {
          // A service that is stopping or busy: the next poll will tell.
        }
      }),
    )
  }

  /** The lowest stock any replica showed, by either measure. */
  get lowest(): number | null {
    const all = [this.lowestPolled, ...Object.values(this.lowestWatched)].filter((v): v is number => typeof v === 'number')
    return all.length === 0 ? null : Math.min(...all)
  }

  private record(service: ServiceName, view: StockView): void {
    const skus: Record<string, number> = {}
    let rights = 0
    for (const [sku, s] of Object.entries(view.skus)) {
      skus[sku] = s.value
      rights += s.rights
      if (this.lowestPolled === null || s.value < this.lowestPolled) this.lowestPolled = s.value
    }
    // The lowest over every process of the service (a restarted one starts its watch again).
    const before = this.lowestWatched[service] ?? null
    this.lowestWatched[service] = before === null ? view.lowestSeen : view.lowestSeen === null ? before : Math.min(before, view.lowestSeen)
    this.samples.push({ t: this.now(), service, skus, rights })
  }
}
