import { CATALOG } from '../shared/catalog.js'
import type { ShopReplica } from './shop-replica.js'

/**
 * Inventory creates the catalog and the initial stock on its first start. The increment gives
 * it every right to the stock; other services get rights from it on request. A restart finds
 * the products already stored and adds nothing.
 */
export async function seedInventory(shop: ShopReplica, stockPerSku: number): Promise<void> {
  for (const { sku, name, price } of CATALOG) {
    if (await shop.products.has(sku)) continue
    await shop.stock.increment(sku, stockPerSku)
    await shop.products.put(sku, { name, price })
  }
}
