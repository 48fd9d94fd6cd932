import { expect } from 'chai'
import { LoopbackHub, type Replica } from '../src/index.js'
import { waitFor } from '../src/testing/helpers.js'
import { BACKENDS, memoryReplica, rejectsWith } from './helpers.js'

// Concurrent writes that each keep maxValueBytes can merge into a larger value. Refusing the
// merge at maxValueBytes kept two honest replicas apart for good: each had taken its own write
// and refused the other's, round after round.
describe('a value that concurrent writes grow past maxValueBytes', function () {
  this.timeout(60_000)
  const limits = { maxValueBytes: 4096, maxMergedValueBytes: 6144 }
  let replicas: Replica[] = []
  afterEach(async () => {
    await Promise.all(replicas.map((r) => r.close()))
    replicas = []
  })

  async function splitWrites(backend: string, size: number): Promise<{ hub: LoopbackHub; a: Replica; b: Replica }> {
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('a'), limits })
    const b = await memoryReplica({ network: hub.createNetwork('b'), limits })
    replicas.push(a, b)
    await a.collection('p', { backend }).put('k', { base: 1 })
    await waitFor(async () => (await b.collection('p', { backend }).get('k')) !== undefined, 'b has k')
    hub.partition(['a'], ['b'])
    await waitFor(() => a.peers().length === 0 && b.peers().length === 0, 'a and b cut apart')
    await a.collection('p').update('k', (v) => ({ ...v, x: 'a'.repeat(size) })) // each within maxValueBytes
    await b.collection('p').update('k', (v) => ({ ...v, y: 'b'.repeat(size) }))
    hub.heal()
    await waitFor(() => a.peers().includes('b'), 'a and b connected again')
    return { hub, a, b }
  }

  for (const backend of BACKENDS) {
    it(`${backend}: is taken by every replica, which converge; a late joiner gets it whole; a local write must bring it back under`, async () => {
      const { hub, a, b } = await splitWrites(backend, 3000)
      await waitFor(async () => {
        await Promise.all([a.sync(), b.sync()])
        const [va, vb] = [await a.collection('p').get('k'), await b.collection('p').get('k')]
        return va?.x !== undefined && va.y !== undefined && JSON.stringify(va) === JSON.stringify(vb)
      }, 'a and b converge on both writes')
      expect(JSON.stringify(await a.collection('p').get('k')).length).to.be.greaterThan(limits.maxValueBytes)
      expect(a.stats().peers.b?.dropped.tooLarge ?? 0).to.equal(0)
      expect(b.stats().peers.a?.dropped.tooLarge ?? 0).to.equal(0)

      const c = await memoryReplica({ network: hub.createNetwork('c'), limits })
      replicas.push(c)
      await waitFor(async () => {
        await c.sync()
        return (await c.collection('p').get('k'))?.y !== undefined
      }, 'the late joiner has k, merged')
      expect(await c.collection('p').get('k')).to.deep.equal(await a.collection('p').get('k'))

      // The application's own writes still keep maxValueBytes: to grow it fails, to shrink it works.
      await rejectsWith(
        a.collection('p').update('k', (v) => ({ ...v, z: 1 })),
        'ERR_TOO_LARGE',
      )
      await a.collection('p').update('k', ({ y: _, ...rest }) => rest)
      await waitFor(async () => (await b.collection('p').get('k'))?.y === undefined, 'the shrinking write reaches b')
    })

    it(`${backend}: a merge over maxMergedValueBytes is still refused`, async () => {
      const { a, b } = await splitWrites(backend, 4000) // 2 × 4,000 > 6,144
      await Promise.all([a.sync(), b.sync()])
      await waitFor(() => (a.stats().peers.b?.dropped.tooLarge ?? 0) > 0, 'a refuses b’s write as too large')
      expect((await a.collection('p').get('k'))?.y).to.equal(undefined)
    })
  }
})
