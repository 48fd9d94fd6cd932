import { isConvergentError } from 'convergent'
import { customerIdOf, normaliseEmail } from '../shared/customers.js'
import type { Customer, CustomerInput } from '../shared/protocol.js'
import { HttpError } from './http-server.js'
import type { ShopReplica } from './shop-replica.js'

const MAX_FIELD = 256

/**
 * The web shop's customers (orders service only: the one writer of `customers`). A customer's
 * id is a keyed pseudonym of the email, so the same email is the same customer; the email and
 * address are personal fields, sealed by the replica before they enter the CRDT.
 */
export class CustomerBook {
  constructor(
    private readonly shop: ShopReplica,
    private readonly pseudonymKey: string,
  ) {}

  /**
   * Creates the customer, or updates its address; unchanged fields write nothing. A forgotten
   * customer cannot be written again: 410 (ERR_FORGOTTEN).
   */
  async register(input: unknown): Promise<{ id: string; customer: Customer }> {
    const { email, address } = parseCustomer(input)
    const id = customerIdOf(this.pseudonymKey, email)
    try {
      const customer = await this.shop.customers.update(
        id,
        (c) => {
          c.customerId = id
          c.email = normaliseEmail(email)
          c.address = address
          c.since ??= Date.now()
        },
        { upsert: true },
      )
      return { id, customer }
    } catch (err) {
      if (isConvergentError(err) && err.code === 'ERR_FORGOTTEN') throw new HttpError(410, `customer ${id} was forgotten: it cannot be written again`, err.code)
      throw err
    }
  }
}

export function parseCustomer(input: unknown): CustomerInput {
  const c = (input ?? {}) as { email?: unknown; address?: unknown }
  const ok = (v: unknown): v is string => typeof v === 'string' && v.trim().length > 0 && v.length <= MAX_FIELD
  if (!ok(c.email) || !c.email.includes('@') || !ok(c.address))
    throw new HttpError(400, `a customer needs { email, address } (strings of 1–${MAX_FIELD} characters)`)
  return { email: c.email, address: c.address }
}
