// open({ cluster: { key } }) on real libp2p nodes (TCP on 127.0.0.1): replicas with the same key
// replicate; one with another key or none never connects, so nothing reaches it; a bad key is
// refused before anything is touched; without a cluster, open() warns once that it is open.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { expect } from 'chai'
import { silentLogger } from '@convergent/core'
import { createLibp2pNetwork, folderPeerId, generateClusterKey, isConvergentError, open, type OpenOptions, type Replica } from '../src/index.js'
import { recordingLogger, tempDir, waitFor } from './helpers.js'

/** Fast redials, so a refused dialer retries many times within a test's window. */
const FAST_REDIAL = { redialMinMs: 50, redialMaxMs: 200 }

async function rejectsWith(p: Promise<unknown>, code: string, pattern: RegExp): Promise<Error> {
  try {
    await p
  } catch (err) {
    expect(isConvergentError(err), String(err)).to.equal(true)
    expect((err as { code: string }).code, String(err)).to.equal(code)
    expect((err as Error).message).to.match(pattern)
    return err as Error
  }
  throw new Error(`expected a rejection with ${code}`)
}

describe('open({ cluster: { key } }): membership by a pre-shared key', function () {
  this.timeout(20_000)
  let replicas: Replica[] = []

  async function start(options: OpenOptions): Promise<Replica> {
    const replica = await open({ logger: silentLogger, syncIntervalMs: 0, libp2p: FAST_REDIAL, ...options })
    replicas.push(replica)
    return replica
  }

  afterEach(async function () {
    await Promise.all(replicas.map((r) => r.close()))
    replicas = []
  })

  it('generateClusterKey() gives 64 lowercase hex characters, a new value each time', function () {
    const keys = Array.from({ length: 8 }, () => generateClusterKey())
    for (const key of keys) expect(key).to.match(/^[0-9a-f]{64}$/)
    expect(new Set(keys).size).to.equal(keys.length)
  })

  it('replicas with the same key (hex on one, bytes on the other) connect and replicate a write', async function () {
    const key = generateClusterKey()
    const a = await start({ cluster: { key } })
    const b = await start({ cluster: { key: Buffer.from(key, 'hex') }, peers: [a.multiaddrs[0]!] })
    await waitFor(() => a.peers().includes(b.peerId) && b.peers().includes(a.peerId), 'a and b connected')
    await a.collection('orders').put('o-1', { total: 12 })
    await waitFor(async () => {
      if ((await b.collection('orders').get('o-1')) !== undefined) return true
      await b.sync() // pushed before the gossip mesh formed: anti-entropy brings it
      return false
    }, 'the write reached b')
    expect(await b.collection('orders').get('o-1')).to.deep.equal({ total: 12 })
  })

  it('a replica with another key, or with none, never connects and receives nothing', async function () {
    const a = await start({ cluster: { key: generateClusterKey() } })
    await a.collection('orders').put('before', { secret: 1 })
    const target = [a.multiaddrs[0]!]
    // Both keep redialling a; syncOnConnect would pull 'before' the moment either connected.
    const otherKey = await start({ cluster: { key: generateClusterKey() }, peers: target })
    const noKey = await start({ peers: target })
    // The control: a keyless replica dialling another keyless one connects at once, so what
    // keeps them from a below is the key.
    const control = await start({ peers: [noKey.multiaddrs[0]!] })
    await waitFor(() => noKey.peers().includes(control.peerId), 'the keyless control connects')
    await a.collection('orders').put('during', { secret: 2 })
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    expect(a.peers()).to.deep.equal([])
    expect(otherKey.peers()).to.deep.equal([])
    expect(noKey.peers()).to.deep.equal([control.peerId])
    for (const outsider of [otherKey, noKey]) {
      expect((await outsider.sync()).map((round) => round.peer)).not.to.include(a.peerId)
      expect(await outsider.collection('orders').get('before')).to.equal(undefined)
      expect(await outsider.collection('orders').get('during')).to.equal(undefined)
    }
  })

  it('a replica whose bootstrap peer has another key warns that none is connected (nothing else says so); with the same key, no warning', async function () {
    const key = generateClusterKey()
    const a = await start({ cluster: { key } })
    const wrong = recordingLogger()
    const b = await start({ logger: wrong, cluster: { key: generateClusterKey() }, peers: [a.multiaddrs[0]!], bootstrapWarnMs: 1_000 })
    const right = recordingLogger()
    const c = await start({ logger: right, cluster: { key }, peers: [a.multiaddrs[0]!], bootstrapWarnMs: 1_000 })
    const warned = (logger: ReturnType<typeof recordingLogger>): string[] =>
      logger.lines.filter((l) => l.message.includes('bootstrap peer')).map((l) => l.message)
    await waitFor(() => warned(wrong).length > 0, 'b warns')
    expect(warned(wrong)[0]).to.match(/none of the 1 bootstrap peer\(s\) is connected 1 s after open .*same cluster key and namespace/)
    expect(b.peers()).to.deep.equal([])
    expect(c.peers()).to.deep.equal([a.peerId])
    expect(warned(right), 'c connected in time').to.deep.equal([])
    await rejectsWith(open({ network: false, bootstrapWarnMs: -1 }), 'ERR_INVALID_ARGUMENT', /bootstrapWarnMs/)
  })

  describe('validation', function () {
    let dir = ''
    let cleanup: () => Promise<void> = async () => undefined

    beforeEach(async function () {
      ;({ dir, cleanup } = await tempDir('convergent-cluster-'))
      const replica = await open({ dir, network: false, logger: silentLogger })
      await replica.collection('c').put('before', { v: 1 })
      await replica.close()
    })

    afterEach(async function () {
      await cleanup()
    })

    async function expectOpenable(): Promise<void> {
      const replica = await open({ dir, network: false, logger: silentLogger })
      try {
        expect(await replica.collection('c').get('before')).to.deep.equal({ v: 1 })
      } finally {
        await replica.close()
      }
    }

    it('a key that is not 32 bytes or 64 hex characters is ERR_INVALID_ARGUMENT, and the folder stays openable', async function () {
      const key = generateClusterKey()
      const bad: unknown[] = [key.slice(2), key + 'ab', 'z'.repeat(64), '', Buffer.from(key, 'hex').subarray(0, 31), new Uint8Array(33), undefined, 42]
      for (const k of bad) {
        const err = await rejectsWith(
          open({ dir, cluster: { key: k } } as OpenOptions),
          'ERR_INVALID_ARGUMENT',
          /open\(\{ cluster: \{ key \} \}\) must be 32 bytes/,
        )
        expect(err.message).not.to.contain(key.slice(2, 34))
        await expectOpenable()
      }
      // Refused before the folder is made.
      await rejectsWith(open({ dir: join(dir, 'new'), cluster: { key: 'nope' } }), 'ERR_INVALID_ARGUMENT', /cluster/)
      expect(existsSync(join(dir, 'new'))).to.equal(false)
    })

    it('refuses admins that are not peer ids, unknown fields, a cluster with a network passed in, and libp2p.clusterKey', async function () {
      const key = generateClusterKey()
      await rejectsWith(open({ dir, cluster: { key, admins: ['12D3KooW'] } }), 'ERR_INVALID_ARGUMENT', /not a peer id with a public key/)
      await rejectsWith(open({ dir, cluster: { key, admins: [] } }), 'ERR_INVALID_ARGUMENT', /list of 1 to 64 peer ids/)
      await rejectsWith(open({ dir, cluster: { key, members: [] } } as OpenOptions), 'ERR_INVALID_ARGUMENT', /no option "members"/)
      await rejectsWith(open({ dir, cluster: null } as unknown as OpenOptions), 'ERR_INVALID_ARGUMENT', /cluster/)
      await rejectsWith(open({ dir, libp2p: { clusterKey: key } } as OpenOptions), 'ERR_INVALID_ARGUMENT', /open\(\{ cluster: \{ key \} \}\)/)
      const network = await createLibp2pNetwork()
      try {
        await rejectsWith(open({ dir, network, cluster: { key } }), 'ERR_INVALID_ARGUMENT', /createLibp2pNetwork\(\{ clusterKey \}\)/)
      } finally {
        await network.stop()
      }
      await expectOpenable()
      // With no network there is nothing to protect: the key is checked, and accepted.
      const offline = await open({ dir, network: false, cluster: { key }, logger: silentLogger })
      await offline.close()
      // But admins are refused: with no network there is no key to sign a policy with (they were dropped unsaid).
      await rejectsWith(
        open({ dir, network: false, cluster: { key, admins: [await folderPeerId(dir)] }, logger: silentLogger }),
        'ERR_INVALID_ARGUMENT',
        /needs the network/,
      )
      await expectOpenable()
    })
  })

  describe('development mode', function () {
    const unauthenticated = (logger: ReturnType<typeof recordingLogger>): string[] =>
      logger.lines.map((l) => l.message).filter((m) => m.includes('unauthenticated'))

    it('open() without a cluster warns once, through the replica logger, that anyone who reaches it joins', async function () {
      const logger = recordingLogger()
      const replica = await start({ logger, namespace: 'shop' })
      const warnings = unauthenticated(logger)
      expect(warnings).to.have.length(1)
      expect(warnings[0]).to.match(/any process that can reach its port and knows the namespace 'shop' joins/)
      expect(logger.lines.find((l) => l.message.includes('unauthenticated'))?.fields).to.deep.include({ self: replica.peerId, namespace: 'shop' })
    })

    it('no warning with a cluster key, with network: false, or with a network passed in', async function () {
      const withKey = recordingLogger()
      await start({ logger: withKey, cluster: { key: generateClusterKey() } })
      const offline = recordingLogger()
      await start({ logger: offline, network: false })
      const passedIn = recordingLogger()
      await start({ logger: passedIn, network: await createLibp2pNetwork() })
      for (const logger of [withKey, offline, passedIn]) expect(unauthenticated(logger)).to.deep.equal([])
    })
  })
})
