// `convergent audit` re-verifies signed writes offline (issue #13 item 7), on a folder real
// libp2p nodes wrote: a writer's gossiped changes are signed by it and verify; one that
// anti-entropy brought is unsigned (vouched for by the writer); a rewritten proof or feed entry
// — sealed with a valid checksum, as someone with write access to the folder would — is
// flagged TAMPERED and fails the command.
import { cpSync } from 'node:fs'
import { join } from 'node:path'
import { decode, encode } from 'cborg'
import { expect } from 'chai'
import type { FeedEntry } from '@convergent/core'
import { proofKey } from '@convergent/core/internal'
import { classicLevelStore } from '@convergent/level'
import { folderPeerId, generateClusterKey, open, silentLogger, type OpenOptions } from '../src/index.js'
import { cli, rows, tempDir, waitFor } from './helpers.js'

const NS = 'audit-signed'

interface Audited {
  seq: number
  id: string
  kind: string
  origin: string
  author: string | null
  signature: 'verified' | 'tampered' | 'unsigned' | 'local'
  proof?: string
  deltaHash?: string
  why?: string
}

const jsonLines = (stdout: string): Audited[] =>
  stdout
    .trim()
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => JSON.parse(l) as Audited)

async function feedOf(dir: string): Promise<FeedEntry[]> {
  const store = classicLevelStore(join(dir, 'db'))
  await store.open()
  try {
    const out: FeedEntry[] = []
    for await (const e of store.feed('orders', 0)) out.push(e)
    return out
  } finally {
    await store.close()
  }
}

describe('convergent audit: signed writes re-verified offline (real libp2p, classic-level)', function () {
  this.timeout(120_000)
  const cleanups: (() => Promise<void>)[] = []
  let aDir = ''
  let aId = ''
  let bId = ''

  async function folder(): Promise<string> {
    const { dir, cleanup } = await tempDir('convergent-audit-')
    cleanups.push(cleanup)
    return dir
  }

  // A (admin) and B (a writer by the policy) in a cluster. A writes o-0 itself; B's o-1 + o-2
  // (one push), o-3 and o-4 reach A by gossip; B's o-ae is written while A is closed and reaches
  // A by anti-entropy when it comes back.
  before(async function () {
    aDir = await folder()
    const bDir = await folder()
    aId = await folderPeerId(aDir)
    bId = await folderPeerId(bDir)
    const base: OpenOptions = { logger: silentLogger, syncIntervalMs: 0, namespace: NS, cluster: { key: generateClusterKey(), admins: [aId] } }
    const libp2p = { redialMinMs: 50, redialMaxMs: 200 }
    let a = await open({ ...base, dir: aDir, libp2p })
    const b = await open({ ...base, dir: bDir, libp2p, peers: [a.multiaddrs[0]!] })
    try {
      await waitFor(() => a.peers().includes(bId) && b.peers().includes(aId), 'connected')
      await a.policy.set({ roles: { admin: [aId], writers: [bId] }, collections: { orders: { read: ['*'], write: ['writers', 'admin'] } } })
      await waitFor(() => b.policy.get()?.version === 1, 'B adopts the policy')
      await a.collection('orders').put('o-0', { qty: 0 })
      const orders = b.collection('orders')
      // Gossip carries the signed pushes: write until one reaches A that way (A never syncs).
      let n = 0
      await waitFor(
        async () => {
          await orders.put('warm', { n: n++ })
          await new Promise((r) => setTimeout(r, 200))
          for await (const e of a.collection('orders').changes()) if (e.id === 'warm' && e.proof !== undefined) return true
          return false
        },
        'gossip from B reaches A',
        30_000,
      )
      await Promise.all([orders.put('o-1', { qty: 1 }), orders.put('o-2', { qty: 2 })])
      // o-3 and o-4 each in a push of its own: each written once the one before has reached A.
      await waitFor(async () => (await a.collection('orders').get('o-2')) !== undefined, 'o-1, o-2 by gossip')
      await orders.put('o-3', { qty: 3 })
      await waitFor(async () => (await a.collection('orders').get('o-3')) !== undefined, 'o-3 by gossip')
      await orders.put('o-4', { qty: 4 })
      await waitFor(async () => (await a.collection('orders').get('o-4')) !== undefined && (await a.collection('orders').get('o-3')) !== undefined, 'gossip')
      await a.close()
      await orders.put('o-ae', { qty: 5 })
      a = await open({ ...base, dir: aDir, libp2p, peers: [b.multiaddrs[0]!] })
      await waitFor(async () => (await a.collection('orders').get('o-ae')) !== undefined || (await a.sync(), false), 'anti-entropy brings o-ae')
    } finally {
      await b.close()
      await a.close()
    }
  })

  after(async function () {
    await Promise.all(cleanups.map((c) => c()))
  })

  it("B's gossiped writes are verified under B's key, the anti-entropy one unsigned, A's own local; --namespace checks what they were signed for", async function () {
    const r = await cli('audit', aDir, 'orders')
    expect(r.code, r.stderr).to.equal(0)
    const list = rows(r.stdout)
    const byId = (id: string) => list.filter((row) => row[2] === id)
    expect(byId('o-0').map((row) => row.slice(3))).to.deep.equal([['put', aId, `local (${aId})`]])
    for (const id of ['o-1', 'o-2', 'o-3', 'o-4']) {
      const [row] = byId(id)
      expect(row!.slice(3, 5), id).to.deep.equal(['remote', bId])
      expect(row![5], id).to.match(/^verified \(delta [0-9a-f]{16}\)$/)
    }
    expect(byId('o-ae').map((row) => row.slice(3))).to.deep.equal([['remote', '-', `unsigned: vouched by ${bId}`]])
    const warm = list.filter((row) => row[2] === 'warm').length
    expect(r.stdout).to.contain(`# ${warm + 6} changes: ${warm + 4} verified, 0 TAMPERED, 1 unsigned, 1 local\n`)

    const json = jsonLines((await cli('audit', aDir, 'orders', '--json')).stdout)
    const signed = json.filter((e) => e.signature === 'verified')
    expect(signed.map((e) => e.id).filter((id) => id !== 'warm')).to.deep.equal(['o-1', 'o-2', 'o-3', 'o-4'])
    for (const e of signed) {
      expect(e).to.include({ author: bId, origin: bId })
      expect(e.proof).to.match(/^[0-9a-f]{32}$/)
      expect(e.deltaHash).to.match(/^[0-9a-f]{64}$/)
    }
    // The text shows the start of the same signed hash.
    const o3 = signed.find((e) => e.id === 'o-3')!
    expect(byId('o-3')[0]![5]).to.equal(`verified (delta ${o3.deltaHash!.slice(0, 16)})`)
    expect(json.find((e) => e.id === 'o-ae')).to.deep.include({ signature: 'unsigned', author: null, origin: bId })
    expect(json.find((e) => e.id === 'o-ae')).not.to.have.property('proof')
    expect(json.find((e) => e.id === 'o-0')).to.deep.include({ signature: 'local', author: aId, origin: 'local' })

    expect((await cli('audit', aDir, 'orders', '--namespace', NS)).code).to.equal(0)
    const other = await cli('audit', aDir, 'orders', '--namespace', 'elsewhere', '--json')
    expect(other.code).to.equal(1)
    const flagged = jsonLines(other.stdout).filter((e) => e.signature === 'tampered')
    expect(flagged).to.have.length(signed.length)
    expect(flagged[0]!.why).to.equal(`signed for namespace '${NS}'`)
  })

  it('a proof whose signature or signed payload was rewritten, and a feed entry whose author was rewritten, are TAMPERED; the command lists everything and exits 1', async function () {
    const dir = await folder()
    cpSync(aDir, dir, { recursive: true })
    const feed = await feedOf(dir)
    const entry = (id: string) => feed.find((e) => e.id === id && e.proof !== undefined)!
    const [o1, o3, o4] = [entry('o-1'), entry('o-3'), entry('o-4')]
    expect(new Set([o1.proof, o3.proof, o4.proof]).size, 'three pushes').to.equal(3)

    // Rewritten offline through the store, so every record still passes its checksum: only the
    // signature check can catch it.
    const store = classicLevelStore(join(dir, 'db'))
    await store.open()
    const proof = async (id: string) => decode((await store.getMeta(proofKey('orders', id)))!) as { p: Uint8Array; g: Uint8Array }
    const sig = await proof(o1.proof!)
    sig.g[10]! ^= 1 // (a) one byte of the signature
    const payload = await proof(o4.proof!)
    const signed = decode(payload.p) as { t?: number }
    payload.p = encode({ ...signed, t: (signed.t ?? 0) + 1 }) // (c) the signed payload: another commit time
    await store.write([
      { type: 'meta', key: proofKey('orders', o1.proof!), bytes: encode(sig) },
      { type: 'meta', key: proofKey('orders', o4.proof!), bytes: encode(payload) },
      { type: 'feed', collection: 'orders', entry: { ...o3, origin: aId } }, // (b) the author the feed names
    ])
    await store.close()

    const r = await cli('audit', dir, 'orders', '--json')
    expect(r.code).to.equal(1)
    const json = jsonLines(r.stdout)
    expect(
      json.map((e) => e.seq),
      'every entry listed',
    ).to.deep.equal(feed.map((e) => e.seq))
    const tampered = json.filter((e) => e.signature === 'tampered')
    const expected = feed.filter((e) => e.proof === o1.proof || e.proof === o4.proof || e.seq === o3.seq)
    expect(tampered.map((e) => e.seq)).to.deep.equal(expected.map((e) => e.seq))
    expect(tampered.find((e) => e.id === 'o-1')!.why).to.equal(`proof ${o1.proof!} holds another push's signature`)
    expect(tampered.find((e) => e.id === 'o-3')).to.deep.include({ author: aId, why: `signed by ${bId}, the feed says ${aId}` })
    expect(tampered.find((e) => e.id === 'o-4')!.why).to.equal(`the signature does not verify under ${bId}'s key`)
    expect(json.filter((e) => e.signature === 'verified').length).to.equal(feed.filter((e) => e.proof !== undefined).length - expected.length)
    expect(json.find((e) => e.id === 'o-ae')!.signature).to.equal('unsigned')
    expect(r.stderr.trim()).to.equal(`convergent: ${expected.length} changes of 'orders' TAMPERED: their stored proof does not verify (see the listing)`)

    const text = await cli('audit', dir, 'orders', 'o-3')
    expect(text.code).to.equal(1)
    expect(rows(text.stdout)).to.deep.equal([
      [String(o3.seq), new Date(o3.time).toISOString(), 'o-3', 'remote', aId, `TAMPERED: signed by ${bId}, the feed says ${aId}`],
    ])
    expect(text.stdout).to.contain('# 1 change: 0 verified, 1 TAMPERED, 0 unsigned, 0 local\n')
    expect(text.stderr.trim()).to.equal("convergent: 1 change of 'orders' TAMPERED: its stored proof does not verify (see the listing)")
  })
})
