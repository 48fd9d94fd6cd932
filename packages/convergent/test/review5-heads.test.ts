// Review 5 of signed heads, the CLI side: `convergent audit` of a feed entry naming several heads.
// "HOLE n" tests failed before their fix.
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { decode, encode } from 'cborg'
import { expect } from 'chai'
import { boundActor, headPrefixOf } from '@convergent/core/internal'
import { classicLevelStore } from '@convergent/level'
import { folderPeerId, generateClusterKey, open, silentLogger } from '../src/index.js'
import { cli, tempDir } from './helpers.js'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const sha256 = (...parts: Uint8Array[]): Uint8Array => createHash('sha256').update(Buffer.concat(parts)).digest()

describe('review 5: convergent audit of several heads', function () {
  this.timeout(60_000)
  const cleanups: (() => Promise<void>)[] = []
  after(async () => Promise.all(cleanups.map((c) => c())))

  it("HOLE 2: a forged head beside a genuine one, carrying the genuine one's signature over other statement bytes, was printed verified (the signature cache did not key on the signed bytes)", async () => {
    const { dir, cleanup } = await tempDir('convergent-review5-')
    cleanups.push(cleanup)
    const self = await folderPeerId(dir)
    const replica = await open({ dir, logger: silentLogger, syncIntervalMs: 0, cluster: { key: generateClusterKey(), admins: [self] } })
    try {
      await replica.policy.set({ roles: { admin: [self] }, collections: { notes: { read: ['*'], write: ['admin'] } } })
      await replica.collection('notes', { backend: 'automerge' }).put('n1', { text: 'mine' })
    } finally {
      await replica.close()
    }

    // Someone with write access to the folder (records sealed with valid checksums) adds a second
    // head of an actor bound to the same author — a statement nobody signed, with the genuine
    // head's signature — and a feed entry naming both.
    const store = classicLevelStore(join(dir, 'db'))
    await store.open()
    try {
      const prefix = headPrefixOf('notes', 'n1')
      const stored: [string, Uint8Array][] = []
      for await (const [key, record] of store.metas(prefix)) stored.push([key.slice(prefix.length), record])
      expect(stored).to.have.length(1)
      const [[genuineActor, genuine]] = stored as [[string, Uint8Array]]
      const proof = decode(genuine) as { s: Uint8Array; g: Uint8Array }
      const statement = decode(proof.s) as { n: string; c: string; a: string; t: number }
      expect(statement.a).to.equal(self)
      // Sorted after the genuine actor, so the genuine head is checked first.
      let actor = ''
      for (let n = 0; actor <= genuineActor; n++) actor = hex(boundActor(self, new Uint8Array(16).fill(n)))
      const leaf = encode(['n1', Buffer.from(actor, 'hex'), 7, sha256(new TextEncoder().encode('a change never made'))])
      const forgedStatement = encode({ ...statement, r: sha256(new Uint8Array([0]), leaf), k: 1 })
      await store.write([
        { type: 'meta', key: `${prefix}${actor}`, bytes: encode({ s: forgedStatement, g: proof.g, l: leaf, i: 0, p: [] }) },
        {
          type: 'feed',
          collection: 'notes',
          entry: { seq: (await store.lastSeq('notes')) + 1, id: 'n1', origin: self, time: 1, kind: 'remote', proof: `h:${genuineActor},${actor}` },
        },
      ])
    } finally {
      await store.close()
    }

    const r = await cli('audit', dir, 'notes', 'n1', '--json')
    const entries = r.stdout
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { proof?: string; signature: string; why?: string })
    const forged = entries.find((e) => e.proof?.includes(',') === true)
    expect(forged, r.stdout).to.deep.include({ signature: 'tampered' })
    expect(forged!.why).to.match(/does not verify/)
    expect(r.code).to.equal(1)
  })
})
