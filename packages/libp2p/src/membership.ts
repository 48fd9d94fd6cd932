import type { ConnectionGater, PeerId, PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'

/**
 * The cluster's members as a libp2p connection gater: once the replica adopts a policy, dials
 * to and connections from peers it does not name are refused (the replica also drops anything
 * they send). Until then (undefined) everyone the cluster key lets in may connect.
 */
export class MembershipGate {
  private members: ReadonlySet<string> | undefined

  set(members: ReadonlySet<string> | undefined): void {
    this.members = members
  }

  allows(peer: PeerId | string): boolean {
    return this.members === undefined || this.members.has(peer.toString())
  }

  /** A gater that refuses non-members, then asks the user's gater (if any). */
  gater(user: ConnectionGater | undefined): ConnectionGater {
    return {
      ...user,
      denyDialPeer: async (peer) => !this.allows(peer) || ((await user?.denyDialPeer?.(peer)) ?? false),
      denyInboundEncryptedConnection: async (peer, conn) => !this.allows(peer) || ((await user?.denyInboundEncryptedConnection?.(peer, conn)) ?? false),
      denyOutboundEncryptedConnection: async (peer, conn) => !this.allows(peer) || ((await user?.denyOutboundEncryptedConnection?.(peer, conn)) ?? false),
    }
  }
}

/** Signs with the node's private key (the key its peer id names). */
export function signerOf(key: PrivateKey): (data: Uint8Array) => Promise<Uint8Array> {
  return async (data) => key.sign(data)
}

/**
 * True if `signature` over `data` was made by the key `peerId` names (Ed25519 and secp256k1
 * peer ids embed their public key). False for anything else, never throws.
 */
export async function verifyPeerSignature(peerId: string, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
  try {
    const key = peerIdFromString(peerId).publicKey
    return key !== undefined && (await key.verify(data, signature))
  } catch {
    return false
  }
}

/** True for a peer id that names its public key (so signatures by it can be verified). */
export function isVerifiablePeerId(id: unknown): boolean {
  try {
    return typeof id === 'string' && peerIdFromString(id).publicKey !== undefined
  } catch {
    return false
  }
}
