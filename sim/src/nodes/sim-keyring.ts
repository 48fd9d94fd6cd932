import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto'
import type { TrustOptions } from '@convergent/core'

/** PKCS#8 DER header of an Ed25519 private key; the 32-byte seed follows it. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

/**
 * Ed25519 keys for a run's peer ids, derived from the run's seed (like core's test Keyring,
 * but deterministic: a key is sha256(seed, peer id), so the same run signs the same bytes and a
 * node keeps its key across crashes and restarts), and the TrustOptions each replica is opened
 * with. A signature is checked only against keys of peer ids that were given trust() (a
 * node's first start registers it), as a real cluster knows only its members' keys.
 */
export class SimKeyring {
  private readonly keys = new Map<string, { priv: KeyObject; pub: KeyObject }>()
  /** Signatures made, checks made, and checks that failed (for the report). */
  signs = 0
  verifies = 0
  failedVerifies = 0

  constructor(private readonly seed: number) {}

  /** The key of `id` (derived on first use; always the same for one seed and id). */
  key(id: string): { priv: KeyObject; pub: KeyObject } {
    let k = this.keys.get(id)
    if (k === undefined) {
      const secret = createHash('sha256').update(`convergent-sim key\u0000${this.seed}\u0000${id}`).digest()
      const priv = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, secret]), format: 'der', type: 'pkcs8' })
      k = { priv, pub: createPublicKey(priv) }
      this.keys.set(id, k)
    }
    return k
  }

  /** Checks a signature under a registered peer's key, off the books (the end-of-run proof checks). */
  check(peer: string, data: Uint8Array, signature: Uint8Array): boolean {
    const k = this.keys.get(peer)
    try {
      return k !== undefined && verify(null, data, k.pub, signature)
    } catch {
      return false
    }
  }

  /** What the replica of peer `id` is opened with: its own key to sign, its peers' keys to verify. */
  trust(id: string, admins: readonly string[]): TrustOptions {
    const own = this.key(id)
    return {
      admins: [...admins],
      sign: async (data) => {
        this.signs++
        return sign(null, data, own.priv)
      },
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
