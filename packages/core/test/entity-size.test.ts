// How large entities grow against maxDeltaBytes (entity-size.ts): an entity whose whole state is
// over the limit no longer reaches a replica that holds none of it. Nothing refuses the writes
// that take it there; the replica says so — a warning past half, an error past the limit, the
// largest entity in stats() (and metrics), and each send refused for size.
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { expect } from 'chai'
import { automergeBackend } from '@convergent/automerge'
import { classicLevelStore } from '@convergent/level'
import { yjsBackend } from '@convergent/yjs'
import { LoopbackHub, Replica } from '../src/index.js'
import { EntitySizes } from '../src/entity-size.js'
import { closedAfterEach, memoryReplica, recordingLogger, tempDir, waitFor } from './helpers.js'

const LIMIT = 64 * 1024
// Deltas past maxChunkBytes go in parts, where maxDeltaBytes is what bounds them (a larger chunk would send them inline).
const limits = { maxDeltaBytes: LIMIT, maxChunkBytes: 16 * 1024 }
/** ~13 KB that Automerge's compression cannot shrink: each write adds about that much history. */
const filler = (): string => randomBytes(10 * 1024).toString('base64')
const about = (id: string) => (l: { message: string }) => l.message.includes(`entity '${id}' of 'notes'`)

describe('entity size against maxDeltaBytes', function () {
  this.timeout(60_000)
  const opened = closedAfterEach()
  const cleanups: (() => Promise<void>)[] = []
  // After closedAfterEach's hook (registered first): the folders go once their replicas are closed.
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup()
  })

  /**
   * A replica on classic-level in a temp folder that wrote 'big' `writes` times, closed and
   * opened again ('big' no longer in memory: a range serves it from the store), and a fresh
   * replica c that caught up from it (two rounds). `bytes`: the stored size before the restart.
   */
  async function restartedThenJoined(writes: number): Promise<{ a: Replica; c: Replica; bytes: number }> {
    const dir = await tempDir()
    cleanups.push(dir.cleanup)
    const hub = new LoopbackHub()
    const open = () =>
      Replica.open({
        store: classicLevelStore(join(dir.dir, 'r')),
        backends: [yjsBackend(), automergeBackend()],
        syncIntervalMs: 0,
        limits,
        network: hub.createNetwork('a'),
        logger: recordingLogger(),
      })
    const first = await open()
    for (let i = 0; i < writes; i++) await first.collection('notes', { backend: 'automerge' }).put('big', { text: filler() })
    const bytes = first.stats().entitySize.largest!.bytes
    await first.close()
    const a = await open()
    opened.replicas.push(a)
    a.collection('notes', { backend: 'automerge' })
    const c = await memoryReplica({ network: hub.createNetwork('c'), limits })
    opened.replicas.push(c)
    await waitFor(() => a.peers().includes('c'), 'a sees c')
    await c.sync()
    await c.sync()
    return { a, c, bytes }
  }

  it('warns once past half of the limit and errors once past it, names the largest entity, counts each send refused for size; the rest still replicates', async () => {
    const hub = new LoopbackHub()
    const logA = recordingLogger()
    const a = await memoryReplica({ network: hub.createNetwork('a'), limits, logger: logA })
    const b = await memoryReplica({ network: hub.createNetwork('b'), limits })
    opened.replicas.push(a, b)
    const notes = a.collection('notes', { backend: 'automerge' })
    await notes.put('small', { text: 'hi' })
    await notes.put('big', { text: filler() })
    expect(a.stats().entitySize).to.deep.include({ maxDeltaBytes: LIMIT, notSent: 0 })
    expect(a.stats().entitySize.largest).to.include({ collection: 'notes', id: 'big' })
    expect(logA.lines.filter(about('big')), 'under half: nothing logged').to.deep.equal([])

    // Each write keeps its ~13 KB in the history: past half of the limit after three.
    for (let i = 0; i < 2; i++) await notes.put('big', { text: filler() })
    const half = a.stats().entitySize.largest!
    expect(half.bytes).to.be.within(LIMIT / 2, LIMIT)
    expect(logA.lines.filter(about('big')).map((l) => l.message)).to.have.length(1)
    expect(logA.lines.find(about('big'))!.message).to.match(/over half the limit/)
    await notes.put('big', { text: filler() })
    expect(logA.lines.filter(about('big')), 'once per entity and level').to.have.length(1)

    // Past the limit: one error, whatever comes after.
    for (let i = 0; i < 2; i++) await notes.put('big', { text: filler() })
    expect(a.stats().entitySize.largest!.bytes).to.be.above(LIMIT)
    const said = logA.lines.filter(about('big')).map((l) => l.message)
    expect(said).to.have.length(2)
    expect(said[1]).to.match(/can no longer receive it/)
    await notes.put('big', { text: filler() })
    expect(logA.lines.filter(about('big'))).to.have.length(2)

    // b held it from the start: it still takes every write (each delta is small).
    await waitFor(async () => (await b.collection('notes', { backend: 'automerge' }).get('big'))?.text === (await notes.get('big'))?.text, 'b follows big')

    // c joins holding nothing: a cannot send it whole, counts that, and c gets everything else.
    const c = await memoryReplica({ network: hub.createNetwork('c'), limits })
    opened.replicas.push(c)
    await waitFor(() => a.peers().includes('c'), 'a sees c')
    await c.sync()
    await c.sync()
    const onC = c.collection('notes', { backend: 'automerge' })
    expect({ small: await onC.get('small'), big: await onC.get('big') }).to.deep.equal({ small: { text: 'hi' }, big: undefined })
    expect(a.stats().entitySize.notSent).to.be.at.least(1)
    expect(c.stats().entitySize.notSent, 'c sent nothing over the limit').to.equal(0)
  })

  it('an entity loaded from the store is measured too (after a restart, before any write)', async () => {
    const dir = await tempDir()
    try {
      const open = (logger = recordingLogger()) =>
        Replica.open({ store: classicLevelStore(join(dir.dir, 'r')), backends: [yjsBackend(), automergeBackend()], syncIntervalMs: 0, limits, logger })
      const first = await open()
      for (let i = 0; i < 4; i++) await first.collection('notes', { backend: 'automerge' }).put('big', { text: filler() })
      const bytes = first.stats().entitySize.largest!.bytes
      await first.close()
      const log = recordingLogger()
      const again = await open(log)
      opened.replicas.push(again)
      expect(again.stats().entitySize.largest, 'nothing loaded yet').to.equal(undefined)
      await again.collection('notes', { backend: 'automerge' }).get('big')
      expect(again.stats().entitySize.largest).to.deep.equal({ collection: 'notes', id: 'big', bytes })
      expect(log.lines.filter(about('big'))).to.have.length(1)
    } finally {
      await dir.cleanup()
    }
  })
  it('the largest entity stays the largest when another one folds smaller (compaction): the gauge does not drop under half while an entity is past it', async () => {
    const a = await memoryReplica({ limits, compactAfter: 4 })
    opened.replicas.push(a)
    // Yjs: a value written over is dropped from the state at the next fold.
    const notes = a.collection('notes', { backend: 'yjs' })
    for (let i = 0; i < 3; i++) await notes.put('b', { text: filler() })
    for (let i = 0; i < 4; i++) await notes.put('a', { text: filler() })
    const b = a.stats().entitySize.largest!
    expect(b.id).to.equal('a')
    await notes.put('a', { text: filler() }) // the fifth write folds 'a' down to one value
    const after = a.stats().entitySize.largest!
    expect(after.bytes * 2, `largest ${JSON.stringify(after)}`).to.be.at.least(LIMIT)
    expect(after.id).to.equal('b')
  })

  it('a dropped collection leaves no largest entity behind (the warning alert would fire until a restart)', async () => {
    const log = recordingLogger()
    const a = await memoryReplica({ limits, logger: log })
    opened.replicas.push(a)
    const notes = a.collection('notes', { backend: 'automerge' })
    for (let i = 0; i < 3; i++) await notes.put('big', { text: filler() })
    expect(a.stats().entitySize.largest).to.include({ collection: 'notes', id: 'big' })
    await a.dropCollection('notes')
    expect(a.stats().entitySize.largest).to.equal(undefined)
    // Made anew, it is told of anew.
    const again = a.collection('notes', { backend: 'automerge' })
    for (let i = 0; i < 3; i++) await again.put('big', { text: filler() })
    expect(log.lines.filter(about('big'))).to.have.length(2)
  })

  it('an entity over maxDeltaBytes but under maxChunkBytes is refused for size by its sender (counted), not sent inline for the receiver to drop', async () => {
    const hub = new LoopbackHub()
    const small = { maxDeltaBytes: LIMIT } // maxChunkBytes stays 512 KiB
    const a = await memoryReplica({ network: hub.createNetwork('a'), limits: small })
    opened.replicas.push(a)
    const notes = a.collection('notes', { backend: 'automerge' })
    // Nine writes: its whole state (A.save, compressed) is over the limit too, not only its stored changes.
    for (let i = 0; i < 9; i++) await notes.put('big', { text: filler() })
    expect(a.stats().entitySize.largest!.bytes).to.be.above(LIMIT)
    const c = await memoryReplica({ network: hub.createNetwork('c'), limits: small })
    opened.replicas.push(c)
    await waitFor(() => a.peers().includes('c'), 'a sees c')
    await c.sync()
    expect(await c.collection('notes', { backend: 'automerge' }).get('big')).to.equal(undefined)
    expect(a.stats().entitySize.notSent, 'a counts what it could not send').to.be.at.least(1)
    expect(c.stats().droppedByReason.tooLarge, 'c was sent nothing over the limit').to.equal(0)
  })

  it('an entity served whole straight from the store (a late joiner, after a restart) is measured', async () => {
    const { a, c, bytes } = await restartedThenJoined(3)
    expect((await c.collection('notes', { backend: 'automerge' }).get('big'))?.text).to.be.a('string')
    expect(a.stats().entitySize.largest).to.deep.equal({ collection: 'notes', id: 'big', bytes })
  })

  it('an entity told of past half is still told of past the limit once 1,000 others were told of', () => {
    const log = recordingLogger()
    const sizes = new EntitySizes(100, log)
    sizes.met('c', 'first', 60)
    for (let i = 0; i < 1000; i++) sizes.met('c', `e${i}`, 60)
    sizes.met('c', 'first', 150)
    expect(log.lines.filter((l) => l.message.includes("entity 'first'")).map((l) => l.message)).to.have.length(2)
  })
  it('past 1,000 entities over half, the largest is still the largest: the smallest kept leaves for a larger one, not the other way', () => {
    const sizes = new EntitySizes(100, recordingLogger())
    for (let i = 0; i < 1000; i++) sizes.met('c', `e${i}`, 60)
    sizes.met('c', 'huge', 500)
    sizes.met('d', 'less', 55) // smaller than every one kept: not kept, the largest unchanged
    expect(sizes.largest).to.deep.equal({ collection: 'c', id: 'huge', bytes: 500 })
    sizes.met('c', 'huge', 10) // folded back under half
    expect(sizes.largest!.bytes).to.equal(60)
    sizes.forget('c')
    expect(sizes.largest).to.equal(undefined)
  })
  it('an Automerge entity not in memory whose stored changes are over the limit, but whose saved document is not, still reaches a late joiner', async () => {
    // Six writes: ~82 KB of stored changes (uncompressed), ~62 KB saved whole (compressed).
    const { a, c, bytes } = await restartedThenJoined(6)
    expect(bytes).to.be.above(LIMIT)
    expect((await c.collection('notes', { backend: 'automerge' }).get('big'))?.text).to.be.a('string')
    expect(a.stats().entitySize.notSent).to.equal(0)
  })

  it('an upload refused for size (the replica that holds it starts the round) is counted too', async () => {
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('a'), limits })
    opened.replicas.push(a)
    const notes = a.collection('notes', { backend: 'automerge' })
    for (let i = 0; i < 9; i++) await notes.put('big', { text: filler() })
    const c = await memoryReplica({ network: hub.createNetwork('c'), limits })
    opened.replicas.push(c)
    c.collection('notes', { backend: 'automerge' })
    await waitFor(() => a.peers().includes('c'), 'a sees c')
    const before = a.stats().entitySize.notSent
    await a.sync()
    expect(a.stats().entitySize.notSent).to.be.above(before)
    expect(await c.collection('notes', { backend: 'automerge' }).get('big')).to.equal(undefined)
  })
})
