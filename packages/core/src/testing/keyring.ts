import { generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import type { TrustOptions } from '../trust/access.js'

/**
 * Ed25519 keys for test peer ids (loopback and simulated networks: on libp2p the peer id itself
 * names the public key), and the TrustOptions a replica with one of those ids is opened with.
 */
export class Keyring {
  private readonly keys = new Map<string, { priv: KeyObject; pub: KeyObject }>()
  /** Signature checks made through trust() (a test of how many a peer can cause). */
  verifies = 0
  /** Those of them that failed. */
  failedVerifies = 0

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
        let ok = false
        try {
          ok = k !== undefined && verify(null, data, k.pub, signature)
        } catch {
          // not a signature: fails
        }
        if (!ok) this.failedVerifies++
        return ok
      },
    }
  }
}
