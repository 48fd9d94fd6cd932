import { createPrivateKey, createPublicKey, KeyObject, sign, verify } from 'node:crypto'
import type { ConnectionGater, PeerId, PrivateKey, PublicKey } from '@libp2p/interface'
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

/**
 * Signs with the node's private key (the key its peer id names). An Ed25519 key is imported
 * into Node's crypto once (libp2p imports it again for every signature: twice the cost);
 * the signature is the same Ed25519 signature either way.
 */
export function signerOf(key: PrivateKey): (data: Uint8Array) => Promise<Uint8Array> {
  if (key.type !== 'Ed25519') return async (data) => key.sign(data)
  const raw = key.raw // 32-byte seed, then the 32-byte public key
  const object = createPrivateKey({
    format: 'jwk',
    key: { kty: 'OKP', crv: 'Ed25519', d: base64url(raw.subarray(0, 32)), x: base64url(raw.subarray(32, 64)) },
  })
  return async (data) => new Uint8Array(sign(null, data, object))
}

/** Public keys of peer ids checked so far (parsing a peer id and importing its key costs more than a verify). */
const publicKeys = new Map<string, KeyObject | PublicKey | null>()
const MAX_CACHED_KEYS = 4096

function publicKeyOf(peerId: string): KeyObject | PublicKey | null {
  let key = publicKeys.get(peerId)
  if (key !== undefined) return key
  try {
    const pub = peerIdFromString(peerId).publicKey
    if (pub === undefined) key = null
    else if (pub.type === 'Ed25519') key = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x: base64url(pub.raw) } })
    else key = pub
  } catch {
    key = null
  }
  if (publicKeys.size >= MAX_CACHED_KEYS) publicKeys.clear()
  publicKeys.set(peerId, key)
  return key
}

/**
 * True if `signature` over `data` was made by the key `peerId` names (Ed25519 and secp256k1
 * peer ids embed their public key). False for anything else, never throws.
 */
export async function verifyPeerSignature(peerId: string, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
  try {
    const key = publicKeyOf(peerId)
    if (key === null) return false
    if (key instanceof KeyObject) return signature.byteLength === 64 && verify(null, data, key, signature)
    return await key.verify(data, signature)
  } catch {
    return false
  }
}

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url')
}

/** True for a peer id that names its public key (so signatures by it can be verified). */
export function isVerifiablePeerId(id: unknown): boolean {
  try {
    return typeof id === 'string' && peerIdFromString(id).publicKey !== undefined
  } catch {
    return false
  }
}
