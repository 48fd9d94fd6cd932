/**
 * A Yjs client id from the replica's 16 actor bytes: the first 4 bytes as a uint32.
 * 0 is avoided so that a zeroed actor never looks like an uninitialised id.
 */
export function clientIdFromActor(actor: Uint8Array): number {
  if (actor.byteLength < 4) throw new RangeError(`An actor needs at least 4 bytes, got ${actor.byteLength}`)
  const id = new DataView(actor.buffer, actor.byteOffset, 4).getUint32(0)
  return id === 0 ? 1 : id
}
