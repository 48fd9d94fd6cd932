/**
 * Every error Convergent throws on purpose is a ConvergentError with a stable `code`.
 * Codes never change meaning; messages say what happened and what to do.
 */
export type ErrorCode =
  | 'ERR_CLOSED' // the replica or store is closed
  | 'ERR_INVALID_ID' // empty, too long or malformed entity id / collection name
  | 'ERR_INVALID_VALUE' // not JSON data (function, symbol, BigInt, cycle, undefined…)
  | 'ERR_TOO_LARGE' // value, delta or message over the configured limit
  | 'ERR_BACKEND_MISMATCH' // collection opened with another backend than it was created with
  | 'ERR_UNKNOWN_BACKEND' // no backend registered under that name
  | 'ERR_NOT_FOUND' // update() of an entity that does not exist
  | 'ERR_INVALID_DELTA' // delta bytes that a backend cannot decode or apply
  | 'ERR_INVALID_VERSION' // version bytes that a backend cannot decode
  | 'ERR_INVALID_MESSAGE' // malformed, truncated or wrong-version wire message
  | 'ERR_STORE' // the store failed to read or write
  | 'ERR_STORE_CORRUPT' // a stored record failed its checksum (StoreCorruptError names it)
  | 'ERR_WRONG_KEY' // the data dir is encrypted at rest with another key than the one given
  | 'ERR_ENCRYPTED' // the data dir is encrypted at rest and no key was given
  | 'ERR_NOT_ENCRYPTED' // an encryption key was given for a plain (unencrypted) data dir
  | 'ERR_NETWORK' // the network failed
  | 'ERR_INSUFFICIENT_RIGHTS' // bounded counter: not enough local rights to decrement
  | 'ERR_FORBIDDEN' // the cluster's policy does not allow it (a write, a read, a policy change)
  | 'ERR_INVALID_ARGUMENT' // a bad option or argument
  | 'ERR_ABORTED' // the operation was aborted through its AbortSignal
  | 'ERR_ACK_TIMEOUT' // a write's ack: fewer peers confirmed in time than asked; the local write stands
  | 'ERR_TIMEOUT'
  | 'ERR_FORGOTTEN' // personal fields of a subject that was forgotten (replica.forget) cannot be written again

export class ConvergentError extends Error {
  readonly code: ErrorCode
  override readonly name = 'ConvergentError'

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/**
 * A delta holding a change of an actor at a seq where the document holds another change of
 * that actor (the actor's writer forked it: equivocation). Automerge cannot hold both, so the
 * replicas that took the other one refuse this one for good; the receiver counts it apart
 * from bad deltas, against the actor's owner where it can tell.
 */
export class ForkedActorError extends ConvergentError {
  constructor(
    readonly actor: string,
    readonly seq: number,
    options?: { cause?: unknown },
  ) {
    super(
      'ERR_INVALID_DELTA',
      `a change of actor ${actor} at seq ${seq}, where this replica holds another change of that actor and seq: its writer forked the actor`,
      options,
    )
  }
}

/**
 * A delta refused for one of its changes (ERR_INVALID_DELTA), naming that change's actor when
 * the backend can tell: the receiver charges what judging the delta read to that change's author
 * rather than to the peer that relayed it (replication/history-work.ts).
 */
export class RefusedChangeError extends ConvergentError {
  constructor(
    message: string,
    readonly actor?: string,
  ) {
    super('ERR_INVALID_DELTA', message)
  }
}

export function isConvergentError(err: unknown, code?: ErrorCode): err is ConvergentError {
  return err instanceof ConvergentError && (code === undefined || err.code === code)
}

/** Wraps an unknown thrown value into a ConvergentError with the given code (keeps the cause). */
export function wrapError(code: ErrorCode, message: string, cause: unknown): ConvergentError {
  if (cause instanceof ConvergentError) return cause
  const detail = cause instanceof Error ? cause.message : String(cause)
  return new ConvergentError(code, `${message}: ${detail}`, { cause })
}

/** Where a stored record lives, as a Store reports it when the record fails its checksum. */
export interface CorruptRecord {
  /** The keyspace: 'heads', 'snapshots', 'deltas', 'feed', 'leaves', 'collections', 'meta'. */
  readonly keyspace: string
  /** The record's raw key in its keyspace, exactly as stored (what Store.quarantine removes). */
  readonly key: string
  /** The collection and entity id the key names, when they could be read from it. */
  readonly collection?: string
  readonly id?: string
}

/** What a damaged record belongs to, for messages: an entity, a collection, or the store. */
export function corruptRecordOwner(record: CorruptRecord): string {
  return record.id !== undefined
    ? `entity '${record.id}' of '${record.collection}'`
    : record.collection !== undefined
      ? `collection '${record.collection}'`
      : 'the store'
}

/**
 * A record read from the store failed its checksum (a damaged disk, a flipped byte): it is
 * never served as data. The message names the record (keyspace and key) and, when the store
 * tells it, its folder. Core moves the record aside; an entity's record is fetched again from
 * peers — what happens to other records is up to their reader (and said in its log line).
 */
export class StoreCorruptError extends ConvergentError {
  constructor(
    readonly record: CorruptRecord,
    detail = 'it failed its checksum',
    /** The store's folder, for the message. */
    location?: string,
  ) {
    const what = corruptRecordOwner(record)
    const where = location === undefined ? '' : ` in ${location}`
    const then = record.id !== undefined ? '; the entity is fetched again from peers' : ''
    super(
      'ERR_STORE_CORRUPT',
      `A stored ${record.keyspace} record ${JSON.stringify(record.key)} of ${what}${where} is corrupt (${detail}); it is not served. The disk may be damaged: check it${then}.`,
    )
  }
}
