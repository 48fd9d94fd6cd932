import { pseudonym } from 'convergent'

/**
 * The customer id: a keyed pseudonym of the normalised email (HMAC under a key of its own,
 * `SHOP_PSEUDONYM_KEY`), so ids — visible metadata in every folder, and the subject named by a
 * forget's tombstone — carry no email. The same email always gives the same id.
 */
export function customerIdOf(pseudonymKey: string, email: string): string {
  return pseudonym(pseudonymKey, normaliseEmail(email), { namespace: 'customers' })
}

export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase()
}

/** Personal fields of a customer: sealed per customer before they enter the CRDT. */
export const PERSONAL_FIELDS = ['email', 'address'] as const
