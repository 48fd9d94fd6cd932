import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { link, lstat, mkdir, open, readlink, unlink, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ConvergentError } from '@convergent/core'

/**
 * Loads the node's private key from `file`, or creates an Ed25519 key there, so the peer id
 * survives restarts. The file holds the key's protobuf encoding, mode 0600. It appears
 * atomically and is never overwritten: the key is written to a temporary file that is then
 * hard-linked into place, which fails if another process created the file first (we then
 * use theirs). A `file` that is a symbolic link to a missing file is refused
 * (DanglingIdentityLinkError): no identity is created through it.
 */
export async function loadOrCreateIdentity(file: string): Promise<PrivateKey> {
  const existing = await readKey(file)
  if (existing !== undefined) return existing

  await mkdir(dirname(file), { recursive: true })
  const key = await generateKeyPair('Ed25519')
  const temp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  await writeFile(temp, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx', flush: true })
  try {
    await link(temp, file)
    return key
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    const winner = await readKey(file)
    if (winner === undefined) throw err
    return winner
  } finally {
    await unlink(temp).catch(() => {})
  }
}

/**
 * The peer id of the identity in `file` (12D3KooW…), created there like createLibp2pNetwork({
 * identityFile }) would if it is missing; with `create: false`, undefined if there is none.
 * Lets a cluster name its admins and members before any replica runs.
 */
export async function identityPeerId(file: string, options: { create?: boolean } = {}): Promise<string | undefined> {
  const key = options.create === false ? await readKey(file) : await loadOrCreateIdentity(file)
  return key === undefined ? undefined : peerIdFromPrivateKey(key).toString()
}

/**
 * Far above any private key's protobuf (an Ed25519 one is 68 bytes, an RSA-8192 one ~4.8 KB): a
 * longer file is not a key, and is not read whole (a file of gigabytes, or /dev/zero, would be).
 */
const MAX_KEY_FILE_BYTES = 64 * 1024

/**
 * The identity file is a symbolic link whose target is missing (a volume not mounted, a file
 * moved). The peer id is in the target: a new identity would change it under the user.
 */
export class DanglingIdentityLinkError extends ConvergentError {
  constructor(
    readonly file: string,
    readonly target: string,
  ) {
    super(
      'ERR_INVALID_ARGUMENT',
      `identity file ${file} is a symbolic link to ${target}, which is missing; restore ${target} to keep this replica's peer id, or remove the link ${file} to get a new peer id`,
    )
  }
}

async function readKey(file: string): Promise<PrivateKey | undefined> {
  let bytes: Uint8Array
  try {
    bytes = await readAtMost(file, MAX_KEY_FILE_BYTES + 1)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    // Missing, or a link to something missing: link() would then fail with EEXIST.
    const isLink = await lstat(file).then(
      (s) => s.isSymbolicLink(),
      () => false,
    )
    if (isLink) throw new DanglingIdentityLinkError(file, await missingTarget(file))
    return undefined
  }
  try {
    if (bytes.byteLength > MAX_KEY_FILE_BYTES) throw new Error(`over ${MAX_KEY_FILE_BYTES} bytes`)
    return privateKeyFromProtobuf(bytes)
  } catch (err) {
    // Never replace a damaged identity silently: the peer id would change under the user.
    throw new ConvergentError(
      'ERR_INVALID_ARGUMENT',
      `identity file ${file} does not hold a libp2p private key; restore it or delete it to get a new peer id`,
      { cause: err },
    )
  }
}

/** The missing file at the end of the chain of links from `link` (a link to a link to …). */
async function missingTarget(link: string): Promise<string> {
  let path = link
  for (let hops = 0; hops < 40; hops++) {
    const target = await readlink(path).catch(() => undefined)
    if (target === undefined) return path
    path = resolve(dirname(path), target)
  }
  return path
}

/**
 * The first `max` bytes of a file (all of it if shorter). Opened without blocking: a FIFO in the
 * file's place fails to read (EAGAIN) rather than waiting for a writer forever.
 */
async function readAtMost(file: string, max: number): Promise<Uint8Array> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK)
  try {
    const buffer = new Uint8Array(max)
    let filled = 0
    while (filled < max) {
      const { bytesRead } = await handle.read(buffer, filled, max - filled, null)
      if (bytesRead === 0) break
      filled += bytesRead
    }
    return buffer.subarray(0, filled)
  } finally {
    await handle.close()
  }
}
