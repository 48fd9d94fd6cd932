import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import type { TrustOptions } from '../trust/access.js'

/** PKCS#8 DER header of an Ed25519 private key; the 32-byte seed follows it. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

/**
 * Ed25519 keys for test peer ids (loopback and simulated networks: on libp2p the peer id itself
 * names the public key), and the TrustOptions a replica with one of those ids is opened with.
 * With a `seed`, keys are derived from it (sha256(seed, peer id)): the same run signs the same
 * bytes (the simulator's determinism) and a peer keeps its key across restarts. A signature is
 * checked only against keys of peer ids the keyring has made, as a real cluster knows only its
 * members' keys.
 */
export class Keyring {
  private readonly keys = new Map<string, { priv: KeyObject; pub: KeyObject }>()
  /** Signatures made and checks made through trust() (a test of how many a peer can cause), and the checks that failed. */
  signs = 0
  verifies = 0
  failedVerifies = 0

  constructor(private readonly seed?: number) {}

  /** The key of `id` (made on first use; with a seed, always the same for one seed and id). */
  key(id: string): { priv: KeyObject; pub: KeyObject } {
    let k = this.keys.get(id)
    if (k === undefined) {
      if (this.seed === undefined) {
        const { privateKey, publicKey } = generateKeyPairSync('ed25519')
        k = { priv: privateKey, pub: publicKey }
      } else {
        const secret = createHash('sha256').update(`convergent-sim key\u0000${this.seed}\u0000${id}`).digest()
        const priv = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, secret]), format: 'der', type: 'pkcs8' })
        k = { priv, pub: createPublicKey(priv) }
      }
      this.keys.set(id, k)
    }
    return k
  }

  /** Checks a signature under a known peer's key, off the books (not counted). */
  check(peer: string, data: Uint8Array, signature: Uint8Array): boolean {
    const k = this.keys.get(peer)
    try {
      return k !== undefined && verify(null, data, k.pub, signature)
    } catch {
      return false // not a signature
    }
  }

  /** What the replica of peer `id` is opened with: its own key to sign, the known peers' keys to verify. */
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
        const ok = this.check(peer, data, signature)
        if (!ok) this.failedVerifies++
        return ok
      },
    }
  }
}
