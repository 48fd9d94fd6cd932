// What a signed push costs, per operation (issue #13): the micro numbers behind TRUST's W1/W2.
//   npm run build && node bench/dist/src/signing.js [entries=64] [ms=2000]
// In a cluster a replica signs every gossip push it makes (one Ed25519 signature over a payload
// of entity ids + each delta's SHA-256), and every receiver verifies the signature and hashes
// each delta. This times, on one thread, with the project's own code:
//  - one Ed25519 sign / verify of a push's signing input: the project's signer (signerOf, the key
//    imported into Node's crypto once) and verifier (verifyPeerSignature, public keys cached),
//    against the libp2p key's own sign / verify (what gossipsub uses to sign every message);
//  - SHA-256 of a typical delta (a product written as a new entity, Yjs and Automerge);
//  - a whole push of `entries` new entities (64: what one tick commits with W1/W2's 64 writes
//    in flight): signPush against encodePush at the author, and at a receiver decoding the
//    signed push, verifying its signature and hashing its deltas against decoding a plain one.
// Each figure is the median of 7 timed batches of about `ms` / 7 each, after a warm-up.
import '@convergent/libp2p/polyfill'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sha256 } from '@convergent/core'
import { decodeMessage, decodePush, decodeSignedPush, encodePush, signPush, type PushMessage } from '@convergent/core/internal'
import { identityPeerId, loadOrCreateIdentity, signerOf, verifyPeerSignature } from '@convergent/libp2p'
import { automergeBackend, yjsBackend, type Backend, type JsonObject } from 'convergent'
import { entityId, product } from './lib/values.js'

const entries = Number(process.argv[2] ?? 64)
const budgetMs = Number(process.argv[3] ?? 2000)

/** The context signed-push.ts puts before the payload (checked below: a verify must pass). */
const SIGNING_CONTEXT = new TextEncoder().encode('convergent signed push v1\n')

/** µs per call of `fn`: the median of 7 batches, each sized to take about budgetMs / 7. */
async function time(fn: () => unknown): Promise<number> {
  let calls = 1
  for (;;) {
    const t0 = performance.now()
    for (let i = 0; i < calls; i++) await fn()
    const ms = performance.now() - t0
    if (ms > budgetMs / 70) {
      calls = Math.max(1, Math.round((calls * budgetMs) / 7 / ms))
      break
    }
    calls *= 2
  }
  const batches: number[] = []
  for (let b = 0; b < 7; b++) {
    const t0 = performance.now()
    for (let i = 0; i < calls; i++) await fn()
    batches.push(((performance.now() - t0) * 1000) / calls)
  }
  return batches.sort((x, y) => x - y)[3]!
}

const dir = await mkdtemp(join(tmpdir(), 'convergent-bench-signing-'))
try {
  const key = await loadOrCreateIdentity(join(dir, 'peer-id.key'))
  const peerId = (await identityPeerId(join(dir, 'peer-id.key')))!
  const sign = signerOf(key)
  const rows: [string, number][] = []
  const row = async (what: string, fn: () => unknown): Promise<number> => {
    const us = await time(fn)
    rows.push([what, us])
    return us
  }

  for (const name of ['yjs', 'automerge'] as const) {
    const backend = (name === 'yjs' ? yjsBackend() : automergeBackend()) as Backend<unknown>
    const deltas = Array.from({ length: entries }, (_, i) => backend.put(backend.create(randomBytes(16)), product(i) as unknown as JsonObject).delta!)
    const bytes = deltas.reduce((n, d) => n + d.byteLength, 0)
    const push: PushMessage = {
      collection: 'products',
      backend: name,
      origin: peerId,
      sequence: 1,
      entries: deltas.map((d, i): [string, Uint8Array] => [entityId(i), d]),
      time: Date.now(),
    }
    const signed = await signPush('default', push, sign)
    const plain = encodePush(push)
    const body = decodeSignedPush(decodeMessage(signed, Infinity).body)
    const input = Buffer.concat([SIGNING_CONTEXT, body.payload])
    if (!(await verifyPeerSignature(peerId, input, body.signature))) throw new Error('the signing context changed: update SIGNING_CONTEXT here')
    console.log(
      `${name}: a delta of a new product is ${Math.round(bytes / entries)} bytes; a push of ${entries} is ${plain.byteLength} bytes plain, ` +
        `${signed.byteLength} signed (payload ${body.payload.byteLength} bytes)`,
    )
    if (name === 'yjs') {
      // Signatures over this push's signing input (same size whatever the backend).
      const signature = await sign(input)
      const publicKey = key.publicKey
      await row(`Ed25519 sign, signerOf (key imported once), ${input.byteLength} bytes`, () => sign(input))
      await row(`Ed25519 sign, libp2p key.sign (what gossipsub uses)`, () => key.sign(input))
      await row(`Ed25519 verify, verifyPeerSignature (key cached)`, () => verifyPeerSignature(peerId, input, signature))
      await row(`Ed25519 verify, libp2p publicKey.verify`, () => publicKey.verify(input, signature))
    }
    const hashUs = await row(`${name}: SHA-256 of one delta (${Math.round(bytes / entries)} bytes)`, () => sha256(deltas[0]!))
    const signUs = await row(`${name}: signPush, ${entries} entries (hashes + payload + sign + encode)`, () => signPush('default', push, sign))
    const encodeUs = await row(`${name}: encodePush, ${entries} entries (unsigned)`, () => encodePush(push))
    const receiveUs = await row(`${name}: receive signed: decode + verify + ${entries} hashes`, async () => {
      const m = decodeSignedPush(decodeMessage(signed, Infinity).body)
      if (!(await verifyPeerSignature(peerId, Buffer.concat([SIGNING_CONTEXT, m.payload]), m.signature))) throw new Error('bad signature')
      for (const d of m.deltas) sha256(d)
    })
    const decodeUs = await row(`${name}: receive plain: decode`, () => {
      const m = decodeMessage(plain, Infinity)
      return decodePush(m.type, m.body)
    })
    console.log(
      `${name}: per entity, signing adds ${((signUs - encodeUs) / entries).toFixed(2)} µs at the author and ${((receiveUs - decodeUs) / entries).toFixed(2)} µs ` +
        `at a receiver (of which hashing ${hashUs.toFixed(2)} µs)`,
    )
  }
  console.log('')
  for (const [what, us] of rows) console.log(`${us.toFixed(2).padStart(9)} µs  ${what}`)
} finally {
  await rm(dir, { recursive: true, force: true })
}
