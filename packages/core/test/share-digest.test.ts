// The key exchange's bucket digests (personal/share-digest.ts) and what SubjectKeys pages from
// them: digests depend only on the set of records (not on the order they came and went), the
// buckets that differ are exactly those where the sets differ, a page lists only the buckets
// asked for, who may see a record is checked when it is sent, and bad bucket fields are refused.
import { expect } from 'chai'
import fc from 'fast-check'
import { sha256 } from '../src/hash.js'
import { silentLogger } from '../src/logger.js'
import { bitmapToBuckets, BUCKETS, bucketsToBitmap, ShareDigest } from '../src/personal/share-digest.js'
import { SubjectKeys } from '../src/personal/subject-keys.js'
import { decodeKeysRequest, decodeKeysResponse } from '../src/replication/messages/keys.js'
import type { Store } from '../src/store.js'
import type { Access } from '../src/trust/access.js'

const all = () => true
const sortKeys = fc.uniqueArray(
  fc.string({ minLength: 1, maxLength: 12 }).map((s) => 'k' + s),
  { maxLength: 60 },
)

/** SubjectKeys over a store that keeps nothing, with `mayRead` as the policy's read rule. */
function subjectKeys(mayRead: (peer: string, collection: string) => boolean = all): SubjectKeys {
  const store = { write: async () => undefined, compact: async () => undefined, getMeta: async () => undefined } as unknown as Store
  const access = { self: 'me', configured: false, mayRead, mayWrite: all, signOwn: async () => undefined } as unknown as Access
  return new SubjectKeys(store, access, 'ns', silentLogger)
}

describe('key exchange buckets (share-digest)', () => {
  it('digests depend on the set of records only: any order of adds and removes gives the digests of the final set', () => {
    fc.assert(
      fc.property(sortKeys, fc.array(fc.nat(), { maxLength: 80 }), (keys, ops) => {
        const shuffled = new ShareDigest()
        const present = new Set<string>()
        for (const op of ops) {
          const k = keys.length === 0 ? 'kx' : keys[op % keys.length]!
          if (op % 3 === 0) {
            shuffled.remove(k)
            present.delete(k)
          } else {
            shuffled.add('c', 'k', k)
            present.add(k)
          }
        }
        const fresh = new ShareDigest()
        for (const k of [...present].sort()) fresh.add('c', 'k', k)
        expect(Buffer.from(shuffled.buckets(all)).equals(Buffer.from(fresh.buckets(all)))).to.equal(true)
        expect([...shuffled.sortKeysIn(undefined)].sort()).to.deep.equal([...present].sort())
      }),
    )
  })

  it('the buckets that differ are exactly those where the two sets differ', () => {
    fc.assert(
      fc.property(sortKeys, sortKeys, (a, b) => {
        const da = new ShareDigest()
        const db = new ShareDigest()
        for (const k of a) da.add('c', 'k', k)
        for (const k of b) db.add('c', 'k', k)
        const inA = new Set(a)
        const inB = new Set(b)
        const expected = new Set([...a.filter((k) => !inB.has(k)), ...b.filter((k) => !inA.has(k))].map((k) => ShareDigest.bucketOf(k)))
        expect([...ShareDigest.differing(da.buckets(all), db.buckets(all))].sort((x, y) => x - y)).to.deep.equal([...expected].sort((x, y) => x - y))
      }),
    )
  })

  it('digests cover only what the peer may see: collections and kinds it may not are left out', () => {
    const d = new ShareDigest()
    d.add('customers', 'k', 'kone')
    d.add('payments', 'k', 'ktwo')
    d.add('payments', 't', 'tthree')
    const onlyCustomers = new ShareDigest()
    onlyCustomers.add('customers', 'k', 'kone')
    const seen = d.buckets((collection) => collection === 'customers')
    expect(Buffer.from(seen).equals(Buffer.from(onlyCustomers.buckets(all)))).to.equal(true)
    const tombstonesToo = d.buckets((collection, kind) => collection === 'customers' || kind === 't')
    expect(ShareDigest.differing(seen, tombstonesToo)).to.deep.equal(new Set([ShareDigest.bucketOf('tthree')]))
  })

  it('bucket bitmaps round-trip', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: BUCKETS - 1 })), (bs) => {
        expect(bitmapToBuckets(bucketsToBitmap(new Set(bs)))).to.deep.equal(new Set(bs))
      }),
    )
  })

  it('SubjectKeys pages only the buckets asked for, and offers only what the peer did not list there', () => {
    const keys = subjectKeys()
    for (let i = 0; i < 2000; i++) keys.keyFor('customers', `cust-${i}`)
    const everything = keys.page('peer', undefined)
    expect(everything.keys.length, 'a page without buckets: everything, up to the page size').to.equal(1000)
    const wanted = new Set([7, 200])
    const page = keys.page('peer', undefined, wanted)
    expect(page.keys.length).to.be.within(1, 100)
    for (const s of page.sortKeys) expect(wanted.has(ShareDigest.bucketOf(s)), s).to.equal(true)
    const offered = keys.lacking('peer', new Set(page.sortKeys.slice(1)), wanted)
    expect(offered.flatMap((p) => p.keys).length, 'only the one record of those buckets left out of the listing').to.equal(1)
    // Paging on from a cursor reaches every record exactly once.
    const seen: string[] = []
    let cursor: string | undefined
    for (;;) {
      const p = keys.page('peer', cursor)
      seen.push(...p.sortKeys)
      if (p.next === undefined) break
      cursor = p.next
    }
    expect(new Set(seen).size).to.equal(2000)
    expect(seen.length).to.equal(2000)
  })

  it('who may see a record is checked when a page is made, not when the list was sorted (a policy can change between pages)', () => {
    let readable = true
    const keys = subjectKeys((peer, collection) => peer === 'me' || (readable && collection === 'customers'))
    for (let i = 0; i < 1500; i++) keys.keyFor('customers', `cust-${i}`)
    const first = keys.page('peer', undefined)
    expect(first.keys.length).to.equal(1000)
    readable = false // the peer lost read on 'customers' between two pages of one transfer
    expect(keys.page('peer', first.next).keys).to.deep.equal([])
    expect(keys.lacking('peer', new Set())).to.deep.equal([])
    expect(Buffer.from(keys.bucketsFor('peer')).equals(Buffer.alloc(BUCKETS * 16)), 'its digests show nothing').to.equal(true)
  })

  it('the summary is SHA-256 over the bucket digests, and moves when a record is added', () => {
    const keys = subjectKeys()
    const before = keys.summaryFor('peer')
    expect(Buffer.from(before).equals(Buffer.from(sha256(keys.bucketsFor('peer'))))).to.equal(true)
    keys.keyFor('customers', 'cust-1')
    expect(Buffer.from(keys.summaryFor('peer')).equals(Buffer.from(before))).to.equal(false)
  })

  it('a request or response with bucket fields of the wrong size is refused as invalid', () => {
    for (const b of [new Uint8Array(0), new Uint8Array(BUCKETS * 16 - 1), new Uint8Array(BUCKETS * 16 + 1), 'x', 42]) {
      expect(() => decodeKeysRequest({ h: null, b })).to.throw(/bucket digests/)
    }
    for (const d of [new Uint8Array(31), new Uint8Array(33), [1, 2]]) {
      expect(() => decodeKeysRequest({ h: null, a: 'k', d })).to.throw(/bucket bitmap/)
      expect(() => decodeKeysResponse({ t: [], k: [], d })).to.throw(/bucket bitmap/)
    }
    expect(decodeKeysRequest({ h: null, b: new Uint8Array(BUCKETS * 16) }).buckets?.byteLength).to.equal(BUCKETS * 16)
    expect(decodeKeysResponse({ t: [], k: [] }).differ, 'a release before buckets: no bitmap, every bucket').to.equal(undefined)
  })
})
