import { generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import type { Network, Replica } from '../src/index.js'
import type { TrustOptions } from '../src/trust/access.js'

/** Ed25519 keys for loopback peer ids (on libp2p the peer id itself names the public key). */
export class Keyring {
  private readonly keys = new Map<string, { priv: KeyObject; pub: KeyObject }>()
  /** Signature checks made through trust() (a test of how many a peer can cause). */
  verifies = 0

  key(id: string): { priv: KeyObject; pub: KeyObject } {
    let k = this.keys.get(id)
    if (k === undefined) {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519')
      k = { priv: privateKey, pub: publicKey }
      this.keys.set(id, k)
    }
    return k
  }

  trust(id: string, admins: string[]): TrustOptions {
    return {
      admins,
      sign: async (data) => sign(null, data, this.key(id).priv),
      verify: async (peer, data, signature) => {
        this.verifies++
        const k = this.keys.get(peer)
        try {
          return k !== undefined && verify(null, data, k.pub, signature)
        } catch {
          return false
        }
      },
    }
  }
}

export const ADMIN = 'a-admin'
export const ORDERS = 'b-orders'
export const SUPPORT = 'c-support'

/** The network a replica was opened with (a test's raw requests go through it). */
export function netOf(r: Replica): Network {
  return (r as unknown as { options: { network: Network } }).options.network
}
