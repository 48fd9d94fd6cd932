// Signed heads over real libp2p (TCP on 127.0.0.1, classic-level on disk): a write relayed by
// anti-entropy keeps its author's signature. The writer goes away; a late joiner that reaches
// only a relay still takes the write, vouched by the writer's own signed head, and keeps that
// head to relay it further.
import { join } from 'node:path'
import { expect } from 'chai'
import { folderPeerId, generateClusterKey } from '../src/index.js'
import { actorOwnedBy, headPrefixOf } from '@convergent/core/internal'
import { classicLevelStore } from '@convergent/level'
import { cli, libp2pReplicas, waitFor } from './helpers.js'

type Note = { text: string }

describe('signed heads over real libp2p', function () {
  this.timeout(60_000)
  const suite = libp2pReplicas('convergent-heads-')

  it('a write reaches a late joiner through a relay after its author is gone, vouched by the author’s signed head', async function () {
    const key = generateClusterKey()
    const [adminDir, relayDir, lateDir] = [await suite.folder(), await suite.folder(), await suite.folder()]
    const [adminId, relayId, lateId] = (await Promise.all([adminDir, relayDir, lateDir].map((d) => folderPeerId(d)))) as [string, string, string]
    const cluster = { key, admins: [adminId] }
    const admin = await suite.start({ dir: adminDir, cluster })
    const relay = await suite.start({ dir: relayDir, cluster, peers: [admin.multiaddrs[0]!] })
    await waitFor(() => admin.peers().length === 1, 'connected')
    await admin.policy.set({
      roles: { admin: [adminId], members: [relayId, lateId] },
      collections: { notes: { read: ['*'], write: ['admin', 'members'] } },
    })
    await waitFor(() => relay.policy.get()?.version === 1, 'adopted')
    await admin.collection<Note>('notes', { backend: 'automerge' }).put('n1', { text: 'signed by the admin' })
    await admin.collection<Note>('notes', { backend: 'automerge' }).put('n2', { text: 'begun by the admin' })
    await waitFor(async () => {
      const notes = relay.collection<Note>('notes', { backend: 'automerge' })
      if ((await notes.get('n1')) !== undefined && (await notes.get('n2')) !== undefined) return true
      await relay.sync()
      return false
    }, 'n1 and n2 reach the relay')
    // n2 gets a second author: the relay's own change.
    await relay.collection<Note & { more?: string }>('notes', { backend: 'automerge' }).update('n2', (d) => void (d.more = 'by the relay'))
    await admin.close() // the first author is gone

    const late = await suite.start({ dir: lateDir, cluster, peers: [relay.multiaddrs[0]!] })
    await waitFor(async () => {
      const notes = late.collection<Note & { more?: string }>('notes', { backend: 'automerge' })
      if ((await notes.get('n1')) !== undefined && (await notes.get('n2'))?.more !== undefined) return true
      await late.sync().catch(() => undefined)
      return false
    }, 'n1 and n2 reach the late joiner')
    expect((await late.collection<Note>('notes', { backend: 'automerge' }).get('n1'))?.text).to.equal('signed by the admin')
    expect(late.stats().peers[relayId]?.dropped.forbidden ?? 0).to.equal(0)
    // The late joiner keeps the admin's head of the write, to relay it on.
    await late.close()
    const store = classicLevelStore(join(lateDir, 'db'))
    await store.open()
    const actors: string[] = []
    try {
      for await (const [key] of store.metas(headPrefixOf('notes', 'n1'))) actors.push(key.slice(headPrefixOf('notes', 'n1').length))
    } finally {
      await store.close()
    }
    expect(actors).to.have.length(1)
    expect(actorOwnedBy(actors[0]!, adminId)).to.equal(true)
    // `convergent audit` re-verifies it offline: the admin's write, vouched by its head, not by the relay.
    const audit = await cli('audit', lateDir, 'notes', '--json')
    expect(audit.code, audit.stderr).to.equal(0)
    const entries = audit.stdout
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { id: string; author: string; origin: string; signature: string; authors?: string[] })
    expect(entries.find((e) => e.id === 'n1')).to.include({ author: adminId, signature: 'verified' })
    // n2 came whole with both authors' changes: both heads verified, the relay named as what it is.
    const n2 = entries.filter((e) => e.id === 'n2')
    expect(n2.map((e) => [e.signature, e.origin, e.authors])).to.deep.equal([['verified', relayId, [adminId, relayId].sort()]])
    const text = await cli('audit', lateDir, 'notes', 'n2')
    expect(text.stdout).to.match(/verified \(heads of 2 authors, relayed by /)
  })
})
