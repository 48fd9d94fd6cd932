import type { Product } from './protocol.js'

/** The shop's products. Inventory creates them; every service reads them. */
export const CATALOG: readonly (Product & { sku: string })[] = [
  { sku: 'mug', name: 'Mug', price: 12 },
  { sku: 'tee', name: 'T-shirt', price: 25 },
  { sku: 'cap', name: 'Cap', price: 18 },
  { sku: 'poster', name: 'Poster', price: 9 },
]

export const SKUS: readonly string[] = CATALOG.map((p) => p.sku)
