// Logs: open() with a pino logger writes JSON lines a pipeline can filter (level, peer,
// collection, entity, reason) for a real drop; a user's plain { warn, error } logger still
// gets every line; the default is pino on stderr at 'warn'.
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { pino } from 'pino'
import { LoopbackHub, type Network } from '@convergent/core'
import { topicOf } from '@convergent/core/internal'
import { GARBAGE_CASES } from '@convergent/core/testing'
import { open, type OpenOptions, type Replica } from '../src/index.js'
import { recordingLogger, runNode, waitFor } from './helpers.js'

const CHILD = fileURLToPath(new URL('./log-child.js', import.meta.url))

/** The case whose drop names its collection and entity: a delta for 'p'/'k' that fails to apply. */
const [, invalidDelta] = GARBAGE_CASES.find(([, , reason]) => reason === 'invalidDelta')!

/** A stream that keeps what pino writes, one JSON line per chunk. */
function memoryStream(): Writable & { lines: () => Record<string, unknown>[] } {
  const chunks: string[] = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString())
      done()
    },
  })
  const lines = (): Record<string, unknown>[] =>
    chunks
      .join('')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
  return Object.assign(stream, { lines })
}

describe('Logs', function () {
  this.timeout(30_000)
  let replica: Replica | undefined
  let evil: Network | undefined

  afterEach(async function () {
    await evil?.stop()
    await replica?.close()
    replica = evil = undefined
  })

  /** Opens a replica on a loopback hub with `logger`, and has a raw peer 'evil' push a delta that fails to apply. */
  async function dropFromEvil(logger: OpenOptions['logger']): Promise<Replica> {
    const hub = new LoopbackHub()
    replica = await open({ network: hub.createNetwork('good'), logger, syncIntervalMs: 0 })
    await replica.collection('p', { backend: 'yjs' }).put('k', { v: 1 })
    evil = hub.createNetwork('evil')
    await evil.start({ onMessage: () => {}, onRequest: async () => new Uint8Array(), onPeerConnected: () => {}, onPeerDisconnected: () => {} })
    evil.subscribe(topicOf('default', 'p'))
    const good = replica
    await waitFor(() => good.peers().includes('evil'), 'evil connected')
    await evil.publish(topicOf('default', 'p'), invalidDelta())
    await waitFor(() => good.stats().droppedTotal > 0, 'drop counted')
    return good
  }

  it('a pino logger gets a JSON line with level, peer, collection, entity and reason for a hostile drop', async function () {
    const stream = memoryStream()
    await dropFromEvil(pino({ level: 'warn' }, stream))
    const line = stream.lines().find((l) => l.reason === 'invalidDelta')
    expect(line, JSON.stringify(stream.lines())).to.not.equal(undefined)
    expect(line).to.include({ level: 40, peer: 'evil', collection: 'p', entity: 'k', reason: 'invalidDelta' })
    expect(line!.msg)
      .to.be.a('string')
      .and.match(/^dropped input from evil: /)
  })

  it("a user's plain { warn, error } logger still receives the drop, message first, fields second", async function () {
    const logger = recordingLogger()
    await dropFromEvil({ warn: logger.warn, error: logger.error })
    const line = logger.lines.find((l) => l.fields?.reason === 'invalidDelta')
    expect(line, JSON.stringify(logger.lines)).to.not.equal(undefined)
    expect(line!.message).to.match(/^dropped input from evil: /)
    expect(line!.fields).to.include({ peer: 'evil', collection: 'p', entity: 'k' })
  })

  it("by default: JSON lines on stderr at level 'warn', nothing on stdout; logLevel 'error' leaves the warning out", async function () {
    const warned = await runNode(CHILD)
    expect(warned.code, warned.stderr).to.equal(0)
    expect(warned.stdout).to.equal('')
    const lines = warned.stderr
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    const warning = lines.find((l) => String(l.msg).includes('unauthenticated replica'))
    expect(warning, warned.stderr).to.include({ level: 40, name: 'convergent' })
    expect(warning!.self).to.be.a('string')

    const quiet = await runNode(CHILD, ['error'])
    expect(quiet.code, quiet.stderr).to.equal(0)
    expect(quiet.stderr).to.equal('')
  })

  it('refuses an unknown logLevel, and logLevel together with a logger', async function () {
    for (const options of [{ logLevel: 'loud' as never }, { logLevel: 'debug' as const, logger: recordingLogger() }]) {
      let code: string | undefined
      await open({ network: false, ...options }).catch((err: { code?: string }) => (code = err.code))
      expect(code, JSON.stringify(options)).to.equal('ERR_INVALID_ARGUMENT')
    }
  })
})
