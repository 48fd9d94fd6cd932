// The cluster key: a libp2p private network (pnet) on every connection. Nodes with the same key
// connect; a node with another key or none cannot complete a connection, in either direction.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { inspect } from 'node:util'
import { isConvergentError, type NetworkEvents } from '@convergent/core'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2pNetwork, parseClusterKey, type Libp2pNetwork, type Libp2pNetworkOptions } from '../src/index.js'

describe('libp2p cluster key', function () {
  this.timeout(15_000)
  const running: Libp2pNetwork[] = []

  async function node(options: Libp2pNetworkOptions = {}): Promise<Libp2pNetwork> {
    const net = await createLibp2pNetwork(options)
    running.push(net)
    await net.start(new Events())
    return net
  }

  afterEach(async function () {
    await Promise.all(running.splice(0).map((net) => net.stop()))
  })

  it('reads 32 bytes or 64 hex characters (either case, whitespace around ignored) and refuses anything else without repeating it', function () {
    const bytes = Uint8Array.from(randomBytes(32))
    const hex = Buffer.from(bytes).toString('hex')
    assert.deepEqual(parseClusterKey(bytes), bytes)
    assert.deepEqual(parseClusterKey(hex), bytes)
    assert.deepEqual(parseClusterKey(hex.toUpperCase()), bytes)
    assert.deepEqual(parseClusterKey(` ${hex}\n`), bytes)
    /** Says it is 32 bytes long and holds 64. */
    class Lying extends Uint8Array {
      override get byteLength(): number {
        return 32
      }
    }
    const bad: unknown[] = [
      bytes.subarray(1),
      Uint8Array.from([...bytes, 0]),
      new Lying(64).fill(7),
      new Uint8Array(32),
      '0'.repeat(64),
      hex.slice(1),
      hex + '0',
      'g' + hex.slice(1),
      '',
      undefined,
      null,
      42,
      [...bytes],
    ]
    for (const key of bad) {
      assert.throws(
        () => parseClusterKey(key, 'open({ cluster: { key } })'),
        (err: Error) => {
          assert.ok(isConvergentError(err, 'ERR_INVALID_ARGUMENT'), String(err))
          assert.match(err.message, /^open\(\{ cluster: \{ key \} \}\) must be 32 bytes/)
          assert.ok(!err.message.includes(hex.slice(2, 34)), 'the message does not repeat the key')
          return true
        },
      )
    }
  })

  it('the network does not keep the key where util.inspect would print it', async function () {
    const key = randomBytes(32)
    const a = await node({ clusterKey: key })
    const shown = inspect(a, { depth: 4 })
    assert.ok(!shown.includes(key.toString('hex')) && !shown.includes([...key.subarray(0, 8)].join(', ')), 'the key is not in inspect output')
  })

  it('createLibp2pNetwork refuses a malformed clusterKey with ERR_INVALID_ARGUMENT', async function () {
    await assert.rejects(createLibp2pNetwork({ clusterKey: 'abc' }), (err) => isConvergentError(err, 'ERR_INVALID_ARGUMENT'))
    await assert.rejects(createLibp2pNetwork({ clusterKey: new Uint8Array(16) }), (err) => isConvergentError(err, 'ERR_INVALID_ARGUMENT'))
  })

  it('nodes with the same key connect and count each other; given as bytes on one side and hex on the other', async function () {
    const key = randomBytes(32)
    const a = await node({ clusterKey: key.toString('hex') })
    const b = await node({ clusterKey: Uint8Array.from(key) })
    await b.libp2p.dial(multiaddr(a.multiaddrs[0]))
    await waitFor(() => a.peers().includes(b.peerId) && b.peers().includes(a.peerId), 'a and b count each other')
  })

  it('a node with another key, or with none, cannot complete a connection either way', async function () {
    const a = await node({ clusterKey: randomBytes(32) })
    const other = await node({ clusterKey: randomBytes(32) })
    const open = await node()
    // The control: without keys the same dial connects (so it is the key that refuses below).
    const open2 = await node()
    await open2.libp2p.dial(multiaddr(open.multiaddrs[0]))
    // Some of these dials fail at once (the other side resets), others would hang until
    // libp2p's own timeouts (the two sides wait for bytes that never make sense): a same-key
    // dial completes in well under the 1.5 s allowed here.
    const refused = async (from: Libp2pNetwork, to: Libp2pNetwork): Promise<void> => {
      await assert.rejects(from.libp2p.dial(multiaddr(to.multiaddrs[0]), { signal: AbortSignal.timeout(1_500) }), `${label(from)} → ${label(to)}`)
    }
    const label = (net: Libp2pNetwork): string => (net === a ? 'keyed' : net === other ? 'other key' : 'no key')
    await Promise.all([refused(other, a), refused(a, other), refused(open, a), refused(a, open)])
    for (const net of [a, other]) {
      assert.equal(net.libp2p.getConnections().length, 0, `${label(net)} has no connection`)
      assert.deepEqual(net.peers(), [])
    }
    assert.deepEqual(
      open.libp2p.getConnections().map((c) => c.remotePeer.toString()),
      [open2.peerId],
      'the keyless node is connected only to the other keyless one',
    )
  })
})

class Events implements NetworkEvents {
  onMessage(): void {}
  onRequest(_from: string, data: Uint8Array): Promise<Uint8Array> {
    return Promise.resolve(data)
  }
  onPeerConnected(): void {}
  onPeerDisconnected(): void {}
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
