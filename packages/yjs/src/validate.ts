import * as Y from 'yjs'
import { ConvergentError } from '@convergent/core'
import { ROOT_NAMES } from './schema.js'

const MAX_CLIENT = 0xffffffff

type DecodedUpdate = ReturnType<typeof Y.decodeUpdate>
type DeleteSet = DecodedUpdate['ds']

/**
 * Checks that `bytes` are a Yjs update this backend could have produced, before anything
 * touches a document: Yjs may throw half-way through applying garbage, or accept it silently.
 * Returns a private copy to apply (Yjs decodes views into the underlying buffer, so a
 * truncated view over a bigger buffer would read past its end instead of failing).
 *
 * `allowEmpty` admits the update that carries nothing (the snapshot of an empty document);
 * a delta always carries something.
 */
export function validateUpdate(bytes: Uint8Array, allowEmpty = false): Uint8Array {
  if (bytes.byteLength === 0) throw invalid('it is empty')
  const own = bytes.slice()
  let decoded: DecodedUpdate
  try {
    decoded = decodeExactly(own)
  } catch (err) {
    if (err instanceof ConvergentError) throw err
    throw invalid(`Yjs cannot decode it (${err instanceof Error ? err.message : String(err)})`)
  }
  if (!allowEmpty && decoded.structs.length === 0 && decoded.ds.clients.size === 0) throw invalid('it carries no operation')
  for (const struct of decoded.structs) checkStruct(struct)
  checkDeleteSet(decoded.ds)
  return own
}

/**
 * Yjs' decoder stops where the update ends and ignores what follows, so it is decoded with a
 * decoder class that keeps hold of its byte reader: the update fills the bytes exactly when
 * the reader stopped at their end. (decodeUpdateV2 takes the decoder class to use; one
 * decode instead of a second one of all but the last byte, which had to fail with a throw.)
 */
const last: { reader: { pos: number } | undefined } = { reader: undefined }

class TrackedDecoderV1 extends Y.UpdateDecoderV1 {
  constructor(decoder: ConstructorParameters<typeof Y.UpdateDecoderV1>[0]) {
    super(decoder)
    last.reader = decoder
  }
}

function decodeExactly(own: Uint8Array): DecodedUpdate {
  last.reader = undefined
  const decoded = Y.decodeUpdateV2(own, TrackedDecoderV1)
  const at = (last.reader as { pos: number } | undefined)?.pos
  last.reader = undefined
  if (at !== own.byteLength) throw invalid('it has bytes after the end of the update')
  return decoded
}

/** Only what this backend writes: JSON scalars, maps, arrays, tombstones, under our two roots. */
function checkStruct(struct: unknown): void {
  if (struct instanceof Y.GC || struct instanceof Y.Skip) {
    checkClient(struct.id.client)
    return
  }
  if (!(struct instanceof Y.Item)) throw invalid('it holds an unknown kind of struct')
  checkClient(struct.id.client)
  const content: unknown = struct.content
  const knownContent =
    content instanceof Y.ContentAny ||
    content instanceof Y.ContentDeleted ||
    (content instanceof Y.ContentType && (content.type instanceof Y.Map || content.type instanceof Y.Array))
  if (!knownContent) throw invalid(`it holds ${struct.content.constructor.name} content, which this backend never writes`)
  const parent: unknown = struct.parent
  if (typeof parent === 'string' && !ROOT_NAMES.has(parent)) throw invalid(`it writes to an unknown root type "${parent}"`)
}

function checkDeleteSet(ds: DeleteSet): void {
  for (const [client, items] of ds.clients) {
    checkClient(client)
    let end = -1
    for (const item of items) {
      if (item.len <= 0 || item.clock < end) throw invalid('its delete set is malformed')
      end = item.clock + item.len
    }
  }
}

function checkClient(client: number): void {
  if (client > MAX_CLIENT) throw invalid('it names a client id outside uint32')
}

function invalid(why: string): ConvergentError {
  return new ConvergentError('ERR_INVALID_DELTA', `These bytes are not a valid Yjs delta: ${why}. Drop them and fetch the entity again through sync.`)
}
