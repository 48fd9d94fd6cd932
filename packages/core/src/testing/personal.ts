import type { Replica } from '../replica.js'

/**
 * Makes a replica write like a member running its own code: strings of the envelope form
 * (`$sealed1.<key id>.…`) it puts in top-level fields go out as they are, instead of being
 * refused as reserved (ERR_INVALID_VALUE) — for tests of what receivers do with hostile or
 * hand-made envelopes.
 */
export function writesRawEnvelopes(replica: Replica): Replica {
  ;(replica as unknown as { services: { reserveSealedForm?: boolean } }).services.reserveSealedForm = false
  return replica
}
