import type { Counter } from './shop-replica.js'

/**
 * Remembers the lowest stock value this replica ever held, for any SKU: it sees every change
 * the replica applies (local or remote), not only the moments someone polls.
 */
export class StockWatch {
  private lowest: number | null = null
  private readonly unsubscribe: () => void

  constructor(private readonly stock: Counter) {
    this.unsubscribe = stock.subscribe((e) => this.see(e.value))
  }

  /** Includes the values stored before the watch began. */
  async init(): Promise<void> {
    for await (const sku of this.stock.keys()) this.see(await this.stock.value(sku))
  }

  get lowestSeen(): number | null {
    return this.lowest
  }

  stop(): void {
    this.unsubscribe()
  }

  private see(value: number): void {
    if (this.lowest === null || value < this.lowest) this.lowest = value
  }
}
