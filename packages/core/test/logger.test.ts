import { expect } from 'chai'
import { LoopbackHub, toLogger, type FieldsFirstLogger, type Replica } from '../src/index.js'
import { encodeMessage, MessageType, topicOf } from '../src/internal.js'
import { memoryReplica, recordingLogger, startRawPeer, waitFor } from './helpers.js'

describe('The replica logger', () => {
  let replicas: Replica[] = []
  afterEach(async () => {
    await Promise.all(replicas.map((r) => r.close()))
    replicas = []
  })

  it('bounds what a peer chose: a 1,000-character entity id with a newline is cut to 200 characters, escaped, in the fields and the message', async () => {
    const logger = recordingLogger()
    const hub = new LoopbackHub()
    const good = await memoryReplica({ network: hub.createNetwork('good'), logger })
    replicas.push(good)
    good.collection('p', { backend: 'yjs' })
    const evil = hub.createNetwork('evil')
    await startRawPeer(evil, good, [topicOf('default', 'p')])
    const id = `forged\n{"level":50}${'x'.repeat(1000)}`
    await evil.publish(topicOf('default', 'p'), encodeMessage(MessageType.Push, { c: 'p', b: 'yjs', o: 'evil', s: 1, e: [[id, new Uint8Array([0, 0])]] }))
    await waitFor(() => good.stats().droppedTotal > 0, 'drop counted')
    const line = logger.lines.find((l) => l.fields?.reason === 'invalidId')
    expect(line, JSON.stringify(logger.lines).slice(0, 2000)).to.not.equal(undefined)
    const entity = line!.fields!.entity as string
    expect(entity.startsWith('forged\\x0a{"level":50}xxx')).to.equal(true)
    expect(entity).to.match(/…\(\d+ more chars\)$/)
    expect(entity.length).to.be.below(240)
    for (const l of logger.lines) {
      expect(l.message.length).to.be.below(1100)
      expect(l.message).to.not.include('\n')
    }
    await evil.stop()
  })

  it('calls a pino-shaped logger fields first, and leaves a Logger message first', () => {
    const calls: unknown[][] = []
    const pinoLike: FieldsFirstLogger = {
      warn: (...args: unknown[]) => void calls.push(['warn', ...args]),
      error: (...args: unknown[]) => void calls.push(['error', ...args]),
      debug: (...args: unknown[]) => void calls.push(['debug', ...args]),
      child: () => pinoLike,
      levels: { values: { warn: 40 } },
    }
    toLogger(pinoLike).warn('dropped', { peer: 'p1', reason: 'malformed' })
    toLogger(pinoLike).error('failed')
    expect(calls).to.deep.equal([
      ['warn', { peer: 'p1', reason: 'malformed' }, 'dropped'],
      ['error', {}, 'failed'],
    ])
    const plain = recordingLogger()
    toLogger(plain).warn('dropped', { peer: 'p1', bytes: new Uint8Array(3) })
    toLogger(plain).error('no fields')
    expect(plain.lines).to.deep.equal([{ message: 'dropped', fields: { peer: 'p1', bytes: '3 bytes' } }, { message: 'no fields' }])
  })
})
