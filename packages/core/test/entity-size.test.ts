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
})
