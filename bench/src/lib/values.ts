/** The entity every workload writes: a product as one of the demo services keeps it. */
export interface Product {
  name: string
  price: number
  stock: number
  tags: string[]
}

const TAGS = ['kitchen', 'office', 'garden', 'sale', 'new', 'eco']

/** A deterministic product for index i (same bytes in every system and every run). */
export function product(i: number): Product {
  i = Math.abs(i)
  return {
    name: `Product ${i}`,
    price: 5 + (i % 100) + 0.99,
    stock: i % 50,
    tags: [TAGS[i % TAGS.length]!, TAGS[(i * 7 + 3) % TAGS.length]!],
  }
}

export const entityId = (i: number): string => `sku-${i}`
