// open(), the facade: failures leave nothing locked, bad folders and options get clear errors,
// and the durability option decides whether LevelDB batches are fsynced.
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { expect } from 'chai'
import { silentLogger } from '@convergent/core'
import { isConvergentError, open, type OpenOptions } from '../src/index.js'
import { tempDir } from './helpers.js'

async function rejectsWith(p: Promise<unknown>, code: string, pattern?: RegExp): Promise<Error> {
  try {
    await p
  } catch (err) {
    expect(isConvergentError(err), String(err)).to.equal(true)
    expect((err as { code: string }).code, String(err)).to.equal(code)
    if (pattern !== undefined) expect((err as Error).message).to.match(pattern)
    return err as Error
  }
  throw new Error(`expected a rejection with ${code}`)
}

describe('open()', function () {
  this.timeout(30_000)
  let dir = ''
  let cleanup: () => Promise<void> = async () => undefined

  beforeEach(async function () {
    ;({ dir, cleanup } = await tempDir('convergent-open-'))
  })

  afterEach(async function () {
    await cleanup()
  })

  /** The folder opens (no lock left behind), holds what was written before, and closes again. */
  async function expectOpenable(options: OpenOptions = {}): Promise<void> {
    const replica = await open({ dir, network: false, logger: silentLogger, ...options })
    try {
      expect(await replica.collection('c').get('before')).to.deep.equal({ v: 1 })
    } finally {
      await replica.close()
    }
  }

  describe('a failure to build the network leaves the folder openable in the same process', function () {
    beforeEach(async function () {
      const replica = await open({ dir, network: false, logger: silentLogger })
      await replica.collection('c').put('before', { v: 1 })
      await replica.close()
    })

    it('a damaged peer-id.key', async function () {
      await writeFile(join(dir, 'peer-id.key'), 'not a key')
      await rejectsWith(open({ dir, logger: silentLogger }), 'ERR_INVALID_ARGUMENT', /peer-id\.key/)
      await expectOpenable()
    })

    it('a bad namespace', async function () {
      await rejectsWith(open({ dir, namespace: 'no spaces allowed', logger: silentLogger }), 'ERR_INVALID_ARGUMENT', /namespace/)
      await expectOpenable()
    })

    it('a bad bootstrap peer; and, after the network was built, an option Replica.open refuses', async function () {
      await rejectsWith(open({ dir, peers: ['not a multiaddr'], logger: silentLogger }), 'ERR_INVALID_ARGUMENT', /not a multiaddr/)
      await expectOpenable()
      await rejectsWith(open({ dir, pushDelayMs: -1, logger: silentLogger }), 'ERR_INVALID_ARGUMENT', /pushDelayMs/)
      await expectOpenable()
    })
  })

  it('a defaultBackend other than yjs or automerge is ERR_INVALID_ARGUMENT (a collection keeps the backend it was made with)', async function () {
    for (const defaultBackend of ['sqlite', 'Automerge', '']) {
      await rejectsWith(open({ dir, network: false, logger: silentLogger, defaultBackend } as OpenOptions), 'ERR_INVALID_ARGUMENT', /defaultBackend/)
    }
    const replica = await open({ dir, network: false, logger: silentLogger, defaultBackend: 'automerge' })
    await replica.close()
  })

  it('an option open() does not have is ERR_INVALID_ARGUMENT: a misspelt dir would run in memory and lose everything at exit', async function () {
    await rejectsWith(
      open({ dri: dir, network: false, logger: silentLogger } as OpenOptions),
      'ERR_INVALID_ARGUMENT',
      /open\(\) has no option "dri" \(its options: dir, /,
    )
  })

  it('limits: an unknown name or a value that is not a positive finite number is ERR_INVALID_ARGUMENT', async function () {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ maxValueBytes: -1 }, /limits\.maxValueBytes must be a positive number, got -1/],
      [{ maxDepth: 0 }, /limits\.maxDepth/],
      [{ maxDeltaBytes: Infinity }, /limits\.maxDeltaBytes/],
      [{ maxCollections: '10' }, /limits\.maxCollections/],
      [{ maxValueByte: 1024 }, /no limit "maxValueByte"/],
    ]
    for (const [limits, pattern] of bad) {
      await rejectsWith(open({ dir, network: false, logger: silentLogger, limits }), 'ERR_INVALID_ARGUMENT', pattern)
    }
    const replica = await open({ dir, network: false, logger: silentLogger, limits: { maxValueBytes: 2048, maxDepth: 8, inboundRatePerSecond: 0.5 } })
    await replica.collection('c').put('k', { v: 1 })
    await replica.close()
  })

  describe('dir that cannot be a folder', function () {
    it('an existing file: ERR_INVALID_ARGUMENT that says so', async function () {
      const file = join(dir, 'data.json')
      await writeFile(file, '{}')
      const err = await rejectsWith(open({ dir: file, network: false }), 'ERR_INVALID_ARGUMENT', /is a file, not a folder/)
      expect(err.message).to.contain(file)
    })

    it('a path under a file: ERR_INVALID_ARGUMENT', async function () {
      const file = join(dir, 'data.json')
      await writeFile(file, '{}')
      await rejectsWith(open({ dir: join(file, 'replica'), network: false }), 'ERR_INVALID_ARGUMENT', /part of its path is a file/)
    })

    it('to inspect (nothing is created), an existing file: the same ERR_INVALID_ARGUMENT', async function () {
      const file = join(dir, 'data.json')
      await writeFile(file, '{}')
      const err = await rejectsWith(open({ dir: file, network: false, inspect: true }), 'ERR_INVALID_ARGUMENT', /is a file, not a folder/)
      expect(err.message).to.contain(file)
    })

    it('its db (the LevelDB folder) a file: ERR_STORE naming it, and nothing written (was a raw ENOTDIR)', async function () {
      await writeFile(join(dir, 'db'), 'not a database')
      const db = join(dir, 'db')
      for (const options of [{ network: false }, {}, { inspect: true, network: false }] as OpenOptions[]) {
        const err = await rejectsWith(open({ dir, logger: silentLogger, ...options }), 'ERR_STORE')
        expect(err.message, JSON.stringify(options)).to.contain(`${db} is a file, not a folder; a Convergent store is a LevelDB folder`)
      }
      expect(await readdir(dir), 'no peer identity, no marker').to.deep.equal(['db'])
      expect(await readFile(db, 'utf8')).to.equal('not a database')
    })
  })

  describe('durability', function () {
    // Records the options of every LevelDB batch written (classic-level's chained batch).
    const require = createRequire(import.meta.url)
    const { ChainedBatch } = require('classic-level/chained-batch.js') as { ChainedBatch: { prototype: { _write(options: unknown): Promise<void> } } }
    const original = ChainedBatch.prototype._write
    let writes: { sync?: boolean }[] = []

    before(function () {
      ChainedBatch.prototype._write = function (this: unknown, options: unknown) {
        writes.push(options as { sync?: boolean })
        return original.call(this, options)
      }
    })

    after(function () {
      ChainedBatch.prototype._write = original
    })

    async function batchesOf(options: OpenOptions): Promise<{ sync?: boolean }[]> {
      writes = []
      const replica = await open({ dir, network: false, logger: silentLogger, ...options })
      try {
        await replica.collection('c').put('x', { v: 1 })
        await Promise.all([replica.collection('c').put('y', { v: 2 }), replica.collection('c').update('x', (v) => void (v.v = 3))])
      } finally {
        await replica.close()
      }
      expect(writes.length).to.be.greaterThan(0)
      return writes
    }

    it("fsyncs every batch by default and with 'fsync'; not with 'process'", async function () {
      expect((await batchesOf({})).every((w) => w.sync === true)).to.equal(true)
      expect((await batchesOf({ durability: 'fsync' })).every((w) => w.sync === true)).to.equal(true)
      expect((await batchesOf({ durability: 'process' })).every((w) => w.sync !== true)).to.equal(true)
    })

    it('refuses anything else with ERR_INVALID_ARGUMENT and leaves the folder openable; in memory both are accepted', async function () {
      for (const durability of ['none', 'FSYNC', true, 1]) {
        await rejectsWith(open({ dir, network: false, durability } as unknown as OpenOptions), 'ERR_INVALID_ARGUMENT', /durability/)
        await rejectsWith(open({ network: false, durability } as unknown as OpenOptions), 'ERR_INVALID_ARGUMENT', /durability/)
      }
      const replica = await open({ dir, network: false, logger: silentLogger })
      await replica.close()
      for (const durability of ['fsync', 'process'] as const) {
        const inMemory = await open({ network: false, durability, logger: silentLogger })
        await inMemory.collection('c').put('x', { v: 1 })
        await inMemory.close()
      }
    })
  })
})
