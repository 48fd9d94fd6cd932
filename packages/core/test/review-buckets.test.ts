// Review of the key exchange by buckets (share-digest.ts, SubjectKeys.page/lacking/bucketsFor,
// key-exchange.ts): two SubjectKeys exchanging through exchangeKeys / serveKeysRequest /
// serveKeysOffer with an in-process request function.
import { expect } from 'chai'
import fc from 'fast-check'
import { silentLogger } from '../src/logger.js'
import { ShareDigest } from '../src/personal/share-digest.js'
import { checkPersonalCipher, SubjectKeys } from '../src/personal/subject-keys.js'
import type { ReplicationContext } from '../src/replication/context.js'
import { exchangeKeys, serveKeysOffer, serveKeysRequest } from '../src/replication/key-exchange.js'
import { decodeMessage, MessageType } from '../src/replication/messages/index.js'
import type { Store, StoreOp } from '../src/store.js'
import type { Access } from '../src/trust/access.js'

interface Rules {
  mayRead: (peer: string, collection: string) => boolean
  mayWrite: (peer: string, collection: string) => boolean
}

/** A store keeping meta records in memory (what SubjectKeys uses). */
function memoryStore(): Store {
  const metas = new Map<string, Uint8Array>()
  return {
    write: async (ops: StoreOp[]) => {
      for (const op of ops as { type: string; key: string; bytes?: Uint8Array }[]) {
        if (op.type === 'meta') metas.set(op.key, op.bytes!)
        else if (op.type === 'delMeta') metas.delete(op.key)
      }
    },
    compact: async () => undefined,
    getMeta: async (key: string) => metas.get(key),
    metas: async function* (prefix: string) {
      for (const [k, v] of [...metas].sort()) if (k.startsWith(prefix)) yield [k, v] as [string, Uint8Array]
    },
  } as unknown as Store
}

/** A replica's SubjectKeys with `self` as its peer id; no admins (tombstones from any member). */
function replicaKeys(self: string, rules: Rules): SubjectKeys {
  const access = {
    self,
    configured: false,
    mayRead: (p: string, c: string) => rules.mayRead(p, c),
    mayWrite: (p: string, c: string) => rules.mayWrite(p, c),
    isAdmin: () => false,
    signOwn: async () => undefined,
  } as unknown as Access
  return new SubjectKeys(memoryStore(), access, 'ns', silentLogger)
}

function ctxOf(keys: SubjectKeys): ReplicationContext {
  return { personal: keys, stats: { drop: () => undefined }, dropLog: { log: () => undefined } } as unknown as ReplicationContext
}

/** `from` runs exchangeKeys against `to` (requests answered in process); returns how many requests it sent. */
async function exchange(from: [string, SubjectKeys], to: [string, SubjectKeys]): Promise<number> {
  let requests = 0
  await exchangeKeys(ctxOf(from[1]), to[0], async (data, expect) => {
    requests++
    const msg = decodeMessage(data, 1 << 26)
    let answer: Uint8Array
    if (msg.type === MessageType.KeysRequest) answer = serveKeysRequest(ctxOf(to[1]), from[0], msg.body)
    else if (msg.type === MessageType.KeysOffer) answer = await serveKeysOffer(ctxOf(to[1]), from[0], msg.body)
    else throw new Error(`unexpected message ${msg.type}`)
    const res = decodeMessage(answer, 1 << 26)
    if (res.type !== expect) throw new Error(`expected ${expect}, got ${res.type}`)
    return res.body
  })
  return requests
}

/** Sort keys of everything `keys` holds (records, as the exchange names them). */
function held(keys: SubjectKeys): string[] {
  return [...(keys as unknown as { digest: ShareDigest }).digest.sortKeysIn(undefined)].sort()
}

const everyone: Rules = { mayRead: () => true, mayWrite: () => true }

describe('review: key exchange by buckets', function () {
  this.timeout(120_000)

  it('HOLE: a member hides a genuine tombstone from a replica for good (group digests join sort keys with U+0001, which subjects may hold)', async () => {
    // W (honest) holds the genuine tombstone of 'cust-1' and a junk tombstone Z the member gave
    // it; H (honest) holds the key of 'cust-1' and one tombstone X whose subject is
    // "cust-1" U+0001 "t" "customers" NUL z: sorted and joined with U+0001, {T, Z} and {X} are
    // the same string, so the group digests, bucket digests and summaries are equal.
    const target = 't' + 'customers\u0000' + 'cust-1'
    const bucket = ShareDigest.bucketOf(target)
    let z: string
    for (let i = 0; ; i++) {
      const candidate = `cust-1~${i}`
      const zKey = 't' + 'customers\u0000' + candidate
      const xKey = target + '\u0001' + zKey
      if (ShareDigest.bucketOf(zKey) === bucket && ShareDigest.bucketOf(xKey) === bucket) {
        z = candidate
        break
      }
    }
    const w = replicaKeys('w', everyone)
    const h = replicaKeys('h', everyone)
    h.keyFor('customers', 'cust-1') // H holds the key the forget must destroy
    await w.forget('cust-1', ['customers']) // the genuine forget
    await w.forget(z, ['customers']) // the member's junk tombstone Z, relayed to W
    await h.forget('cust-1\u0001t' + 'customers\u0000' + z, ['customers']) // the member's X, relayed to H only
    for (let round = 0; round < 3; round++) {
      await exchange(['h', h], ['w', w])
      await exchange(['w', w], ['h', h])
    }
    // The tombstones' bucket has the same digest on both sides, so it is never paged.
    const paged = ShareDigest.differing(w.bucketsFor('h'), h.bucketsFor('w')).has(bucket)
    expect(h.isForgotten('customers', 'cust-1'), `H learns the genuine forget (its bucket differs: ${paged})`).to.equal(true)
    expect(h.size, 'H destroyed the key').to.equal(0)
  })
})

describe('review: key exchange by buckets converges', function () {
  this.timeout(600_000)

  type Op =
    | { t: 'key'; r: 0 | 1; c: number; s: number }
    | { t: 'forget'; r: 0 | 1; c: number; s: number }
    | { t: 'bulk'; r: 0 | 1; c: number; n: number }
    | { t: 'policy'; hidden: boolean; readerOnly: boolean }
    | { t: 'sync'; r: 0 | 1 }

  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.record({ t: fc.constant('key' as const), r: fc.constantFrom(0 as const, 1 as const), c: fc.nat(2), s: fc.nat(7) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('forget' as const), r: fc.constantFrom(0 as const, 1 as const), c: fc.nat(2), s: fc.nat(7) }) },
    {
      weight: 1,
      arbitrary: fc.record({ t: fc.constant('bulk' as const), r: fc.constantFrom(0 as const, 1 as const), c: fc.nat(2), n: fc.constantFrom(3, 40, 1100) }),
    },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('policy' as const), hidden: fc.boolean(), readerOnly: fc.boolean() }) },
    { weight: 4, arbitrary: fc.record({ t: fc.constant('sync' as const), r: fc.constantFrom(0 as const, 1 as const) }) },
  )

  it('two replicas end with the same keys and tombstones, and no key of a collection a peer may not read reaches it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 30 }), async (ops) => {
        // 'b' may not read collection c2 while `hidden` (nor make keys there).
        let hidden = false
        // and 'b' may not write c1 while `readerOnly` (its keys there are refused).
        let readerOnly = false
        const rules: Rules = { mayRead: (p, c) => !(hidden && p === 'b' && c === 'c2'), mayWrite: (p, c) => !(readerOnly && p === 'b' && c === 'c1') }
        const reps: [string, SubjectKeys][] = [
          ['a', replicaKeys('a', rules)],
          ['b', replicaKeys('b', rules)],
        ]
        let bulk = 0
        const c2KeysOfB = (): string[] =>
          held(reps[1]![1]).filter((s) => s.startsWith('k') && reps[1]![1].subjectOf(s.slice(1)) !== undefined && ownerCollection(reps[1]![1], s) === 'c2')
        for (const o of ops) {
          const [name, keys] = reps[o.t === 'policy' ? 0 : o.r]!
          if (o.t === 'policy') {
            hidden = o.hidden
            readerOnly = o.readerOnly
          } else if (o.t === 'key' || o.t === 'bulk') {
            const c = `c${o.c}`
            if (!rules.mayRead(name, c)) continue
            const subjects = o.t === 'key' ? [`s${o.s}`] : Array.from({ length: o.n }, () => `bulk-${bulk++}`)
            for (const s of subjects) {
              try {
                await keys.keyFor(c, s).written
              } catch {
                // forgotten
              }
            }
          } else if (o.t === 'forget') await keys.forget(`s${o.s}`, [`c${o.c}`])
          else {
            const before = c2KeysOfB()
            await exchange(reps[o.r]!, reps[1 - o.r]!)
            if (hidden) expect(c2KeysOfB(), 'b received a key of a collection it may not read').to.deep.equal(before)
          }
        }
        hidden = false
        readerOnly = false
        for (let i = 0; i < 3; i++) {
          await exchange(reps[0]!, reps[1]!)
          await exchange(reps[1]!, reps[0]!)
        }
        expect(held(reps[0]![1])).to.deep.equal(held(reps[1]![1]))
        for (const [, keys] of reps) {
          for (const sk of held(keys))
            if (sk.startsWith('k')) expect(keys.isForgotten(ownerCollection(keys, sk)!, keys.subjectOf(sk.slice(1))!)).to.equal(false)
        }
        const count = await exchange(reps[0]!, reps[1]!)
        expect(count, 'in sync: one request').to.equal(1)
      }),
      { numRuns: 200 },
    )
  })
})

function ownerCollection(keys: SubjectKeys, sortKey: string): string | undefined {
  return (keys as unknown as { digest: { places: Map<string, { collection: string }> } }).digest.places.get(sortKey)?.collection
}

describe('review: crafted key requests', () => {
  it('no bucket digests, bitmap or cursor gets a key or tombstone of a collection the peer may not read', () => {
    const rules: Rules = { mayRead: (p, c) => !(p === 'm' && c === 'secret'), mayWrite: () => true }
    const keys = replicaKeys('me', rules)
    for (let i = 0; i < 1200; i++) keys.keyFor(i % 2 === 0 ? 'secret' : 'open', `s${i}`)
    void keys.forget('s0', ['secret'])
    fc.assert(
      fc.property(
        fc.option(fc.uint8Array({ minLength: 4096, maxLength: 4096 }), { nil: undefined }),
        fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }), { nil: undefined }),
        fc.option(fc.string({ minLength: 1, maxLength: 30 }), { nil: undefined }),
        fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }), { nil: undefined }),
        (b, d, a, h) => {
          const body: Record<string, unknown> = { h: h ?? null }
          if (b !== undefined) body.b = b
          if (d !== undefined) body.d = d
          if (a !== undefined) body.a = a
          const res = decodeMessage(serveKeysRequest(ctxOf(keys), 'm', body), 1 << 26).body as { k?: { c: string }[]; t?: unknown[] }
          for (const k of res.k ?? []) expect(k.c).to.equal('open')
          expect(res.t ?? []).to.deep.equal([])
        },
      ),
      { numRuns: 300 },
    )
  })
})

describe('review: personalCipher and key hygiene after forget', () => {
  it('checkPersonalCipher: default AES-256-GCM, the two names only', () => {
    expect(checkPersonalCipher(undefined)).to.equal('aes-256-gcm')
    for (const bad of [null, '', 'AES-256-GCM', 'xchacha20', 'chacha20-poly1305', 1, {}]) {
      expect(() => checkPersonalCipher(bad), JSON.stringify(bad)).to.throw(/personalCipher/)
    }
  })

  for (const cipher of ['aes-256-gcm', 'xchacha20-poly1305'] as const) {
    it(`${cipher}: after forget() nothing opens, the key, its KeyObject and its subkey are gone or zero, and a kept HeldKey seals nothing`, async () => {
      const keys = replicaKeys('me', everyone)
      keys.cipher = cipher
      const { key } = keys.keyFor('customers', 'cust-1')
      const sealed = keys.seal('customers', 'c1', 'email', 'ada@example.com', key)
      expect(sealed.charAt(9 + 22 + 1) === '~', 'form').to.equal(cipher === 'xchacha20-poly1305')
      // Both forms open whatever the setting; the other form too.
      keys.cipher = cipher === 'aes-256-gcm' ? 'xchacha20-poly1305' : 'aes-256-gcm'
      const sealedOther = keys.seal('customers', 'c1', 'phone', '123', key)
      expect(keys.open('customers', 'c1', 'email', sealed)).to.equal('ada@example.com')
      expect(keys.open('customers', 'c1', 'phone', sealedOther)).to.equal('123')
      const subkey = key.aead
      expect(subkey, 'the XChaCha20 subkey was derived').to.not.equal(undefined)
      await keys.forget('cust-1', ['customers'])
      expect(key.key.every((b) => b === 0)).to.equal(true)
      expect(subkey!.every((b) => b === 0)).to.equal(true)
      expect(key.object).to.equal(undefined)
      expect(key.aead).to.equal(undefined)
      expect(keys.open('customers', 'c1', 'email', sealed)).to.equal(undefined)
      expect(keys.open('customers', 'c1', 'phone', sealedOther)).to.equal(undefined)
      expect(() => keys.seal('customers', 'c2', 'email', 'x', key)).to.throw(/forgotten/)
    })
  }
})
