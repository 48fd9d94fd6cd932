// Who a data folder's replica is, for the CLI's listings: its peer id from `<dir>/peer-id.key`,
// or why that is unknown. A folder without the file (a replica that never ran networked), one
// whose file is damaged or unreadable, and one whose file is a link to a missing file are
// different problems, so they are told apart.
import { join } from 'node:path'
import { isConvergentError } from '@convergent/core'
import { DanglingIdentityLinkError, identityPeerId } from '@convergent/libp2p'

export type FolderIdentity = { peerId: string; why?: undefined } | { peerId: undefined; why: string }

/** The folder's peer id without creating an identity, or why it is unknown (the file named). */
export async function folderIdentity(dir: string): Promise<FolderIdentity> {
  const file = join(dir, 'peer-id.key')
  try {
    const peerId = await identityPeerId(file, { create: false })
    return peerId === undefined ? { peerId, why: `no identity file (${file})` } : { peerId }
  } catch (err) {
    // identityPeerId throws DanglingIdentityLinkError for a link to a missing file, a
    // ConvergentError for bytes that are not a key, the fs error otherwise.
    if (err instanceof DanglingIdentityLinkError)
      return { peerId: undefined, why: `identity file ${file} is a symbolic link to ${err.target}, which is missing` }
    const why = isConvergentError(err)
      ? `identity file ${file} is damaged: it does not hold a libp2p private key`
      : `identity file ${file} is unreadable: ${(err as Error).message}`
    return { peerId: undefined, why }
  }
}
