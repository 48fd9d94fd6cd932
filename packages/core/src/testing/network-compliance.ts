import assert from 'node:assert/strict'
import { isConvergentError, type ErrorCode } from '../errors.js'
import type { Network, NetworkEvents } from '../network.js'

/**
 * The acceptance suite every Network runs (loopback, libp2p, the simulator's network).
 *
 * makeCluster(n) returns n networks that are NOT started yet: the suite starts each with its
 * own event recorder. connectAll() links every started network with every other one and
 * resolves once each lists all the others in peers(). cleanup() stops whatever is still
 * running and frees resources; it must accept networks the test already stopped.
 *
 * Real-time waits (polling with setTimeout) are used, so a virtual-clock network has to run
 * its clock in real time for this suite. Nothing asserts how fast delivery is: gossip needs
 * subscriptions to propagate first, so tests publish until the first message arrives.
 */
export interface NetworkCluster {
  networks: Network[]
  connectAll: () => Promise<void>
  cleanup: () => Promise<void>
}

export interface NetworkComplianceOptions {
  /**
   * For networks that keep clusters apart (libp2p: a namespace per cluster): a network of
   * another cluster, not started, and connect(to), which links it with `to` at the transport
   * level and resolves once each side has learned what the other is (libp2p: identify ran both
   * ways). The suite then checks that neither counts the other as a peer. Networks without a
   * notion of clusters leave it out, and the case is not run.
   */
  foreign?: () => Promise<{ network: Network; connect: (to: Network) => Promise<void> }>
}

export function networkComplianceSuite(name: string, makeCluster: (n: number) => Promise<NetworkCluster>, options: NetworkComplianceOptions = {}): void {
  describe(`Network compliance: ${name}`, function () {
    this.timeout(20_000)

    let cluster: NetworkCluster | undefined
    let recorders: Recorder[] = []
    /** Networks a case started besides the cluster's; stopped after it. */
    let extra: Network[] = []

    /** n started, fully connected networks, each with its recorder. */
    async function setup(n: number): Promise<{ nets: Network[]; recs: Recorder[] }> {
      cluster = await makeCluster(n)
      recorders = cluster.networks.map(() => new Recorder())
      await Promise.all(cluster.networks.map((net, i) => net.start(recorders[i]!)))
      await cluster.connectAll()
      return { nets: cluster.networks, recs: recorders }
    }

    afterEach(async function () {
      await Promise.all(extra.map((net) => net.stop()))
      extra = []
      await cluster?.cleanup()
      cluster = undefined
    })

    describe('publish/subscribe', function () {
      it('reaches subscribers of the topic, not non-subscribers nor the sender', async function () {
        const { nets, recs } = await setup(3)
        const [a, b] = nets as [Network, Network, Network]
        a.subscribe('t')
        b.subscribe('t')
        await warmUp(a, 't', [recs[1]!])
        const payload = bytes([1, 2, 3, 0, 255])
        await a.publish('t', payload)
        await waitFor(() => recs[1]!.received('t', payload), 'b receives the message')
        assert.equal(recs[1]!.messages.find((m) => equal(m.data, payload))?.from, a.peerId, 'from is the sender')
        await settle()
        assert.equal(recs[0]!.messages.length, 0, 'the sender gets none of its own messages')
        assert.equal(recs[0]!.warmUps.size, 0, 'the sender gets none of its own warm-ups')
        assert.equal(recs[2]!.messages.length, 0, 'a non-subscriber gets nothing')
        assert.equal(recs[2]!.warmUps.size, 0, 'a non-subscriber gets no warm-up')
      })

      it('keeps topics apart', async function () {
        const { nets, recs } = await setup(3)
        const [a, b, c] = nets as [Network, Network, Network]
        b.subscribe('t1')
        c.subscribe('t2')
        await warmUp(a, 't1', [recs[1]!])
        await warmUp(a, 't2', [recs[2]!])
        const x = bytes([10])
        const y = bytes([20])
        await a.publish('t1', x)
        await a.publish('t2', y)
        await waitFor(() => recs[1]!.received('t1', x) && recs[2]!.received('t2', y), 'both messages arrive')
        await settle()
        assert.ok(
          recs[1]!.messages.every((m) => m.topic === 't1'),
          'b only gets t1',
        )
        assert.ok(
          recs[2]!.messages.every((m) => m.topic === 't2'),
          'c only gets t2',
        )
      })

      it('delivers the bytes unchanged, even if the sender reuses its buffer', async function () {
        const { nets, recs } = await setup(2)
        const [a, b] = nets as [Network, Network]
        b.subscribe('t')
        await warmUp(a, 't', [recs[1]!])
        const payloads = [bytes([]), bytes([0]), bytes(Array.from({ length: 256 }, (_, i) => i)), pseudoRandomBytes(100_000, 7)]
        for (const p of payloads) {
          const buffer = p.slice()
          await a.publish('t', buffer)
          buffer.fill(0xaa)
        }
        await waitFor(() => payloads.every((p) => recs[1]!.received('t', p)), 'every payload arrives intact')
        for (const m of recs[1]!.messages) assert.ok(m.data instanceof Uint8Array)
      })

      it('resolves publish when nobody is subscribed', async function () {
        const { nets } = await setup(2)
        await nets[0]!.publish('nobody-listens', bytes([1]))
        nets[0]!.subscribe('mine')
        await nets[0]!.publish('mine', bytes([2]))
      })

      it('stops delivering a topic after unsubscribe', async function () {
        const { nets, recs } = await setup(2)
        const [a, b] = nets as [Network, Network]
        b.subscribe('t')
        await warmUp(a, 't', [recs[1]!])
        b.unsubscribe('t')
        const before = recs[1]!.messages.filter((m) => m.topic === 't').length
        await a.publish('t', bytes([9, 9]))
        await settle()
        assert.equal(recs[1]!.messages.filter((m) => m.topic === 't').length, before, 'nothing arrives after unsubscribe')
      })
    })

    describe('request/response', function () {
      it('round-trips binary payloads, including empty and ~1 MiB', async function () {
        const { nets, recs } = await setup(2)
        const [a, b] = nets as [Network, Network]
        const seenFrom: string[] = []
        recs[1]!.handler = async (from, data) => {
          seenFrom.push(from)
          return concat(bytes([0xfe]), data)
        }
        for (const payload of [bytes([]), bytes([0, 1, 255]), pseudoRandomBytes(1024 * 1024, 3)]) {
          const response = await a.request(b.peerId, payload)
          assert.ok(equal(response, concat(bytes([0xfe]), payload)), `response to ${payload.byteLength} bytes`)
        }
        assert.deepEqual(seenFrom, [a.peerId, a.peerId, a.peerId])
        recs[1]!.handler = async () => new Uint8Array(0)
        assert.equal((await a.request(b.peerId, bytes([1]))).byteLength, 0)
      })

      it('rejects when the handler rejects, and keeps serving', async function () {
        const { nets, recs } = await setup(2)
        const [a, b] = nets as [Network, Network]
        recs[1]!.handler = async () => {
          throw new Error('handler failed on purpose')
        }
        await expectCode(a.request(b.peerId, bytes([1])), 'ERR_NETWORK')
        recs[1]!.handler = async (_from, data) => data
        assert.ok(equal(await a.request(b.peerId, bytes([7])), bytes([7])), 'still serving after a failure')
      })

      it('rejects requests to an unknown or stopped peer with ERR_NETWORK', async function () {
        const { nets } = await setup(3)
        const [a, , c] = nets as [Network, Network, Network]
        await expectCode(a.request('no-such-peer', bytes([1])), 'ERR_NETWORK')
        await c.stop()
        await expectCode(a.request(c.peerId, bytes([1])), 'ERR_NETWORK')
      })

      it('enforces maxBytes on the response (ERR_TOO_LARGE)', async function () {
        const { nets, recs } = await setup(2)
        const [a, b] = nets as [Network, Network]
        recs[1]!.handler = async () => new Uint8Array(2048).fill(1)
        await expectCode(a.request(b.peerId, bytes([1]), { maxBytes: 1024 }), 'ERR_TOO_LARGE')
        assert.equal((await a.request(b.peerId, bytes([1]), { maxBytes: 2048 })).byteLength, 2048)
      })

      it('aborts through the AbortSignal (ERR_ABORTED)', async function () {
        const { nets, recs } = await setup(2)
        const [a, b] = nets as [Network, Network]
        let release = (): void => {}
        let arrived = false
        recs[1]!.handler = (_from, data) =>
          new Promise((resolve) => {
            arrived = true
            release = () => resolve(data)
          })
        await expectCode(a.request(b.peerId, bytes([1]), { signal: AbortSignal.abort() }), 'ERR_ABORTED')
        const controller = new AbortController()
        const pending = a.request(b.peerId, bytes([2]), { signal: controller.signal })
        await waitFor(() => arrived, 'the request reaches the handler')
        controller.abort()
        await expectCode(pending, 'ERR_ABORTED')
        release()
        recs[1]!.handler = async (_from, data) => data
        assert.ok(equal(await a.request(b.peerId, bytes([3])), bytes([3])), 'still serving after an abort')
      })
    })

    describe('peers and lifecycle', function () {
      it('fires onPeerConnected and lists connected peers', async function () {
        const { nets, recs } = await setup(3)
        for (const [i, net] of nets.entries()) {
          const others = nets.filter((n) => n !== net).map((n) => n.peerId)
          await waitFor(() => others.every((p) => recs[i]!.connected.includes(p)), `network ${i} hears of every peer`)
          assert.ok(
            others.every((p) => net.peers().includes(p)),
            `network ${i} lists every peer`,
          )
          assert.ok(!net.peers().includes(net.peerId), 'peers() excludes ourselves')
        }
      })

      it('fires onPeerDisconnected when a peer stops, and drops it from peers()', async function () {
        const { nets, recs } = await setup(2)
        const [a, b] = nets as [Network, Network]
        await b.stop()
        await waitFor(() => recs[0]!.disconnected.includes(b.peerId), 'a hears that b left')
        await waitFor(() => !a.peers().includes(b.peerId), 'b leaves a.peers()')
      })

      if (options.foreign !== undefined) {
        const foreign = options.foreign
        it('counts only peers of its own cluster: one of another, though connected, is never listed nor told', async function () {
          const { nets, recs } = await setup(2)
          const [a, b] = nets as [Network, Network]
          const other = await foreign()
          extra.push(other.network)
          const otherRec = new Recorder()
          await other.network.start(otherRec)
          await other.connect(a)
          await other.connect(b)
          await settle()
          for (const [i, net] of nets.entries()) {
            assert.ok(!net.peers().includes(other.network.peerId), `network ${i} does not list the other cluster's network`)
            assert.ok(!recs[i]!.connected.includes(other.network.peerId), `network ${i} is not told it connected`)
          }
          assert.deepEqual(other.network.peers(), [], 'the other cluster lists none of ours')
          assert.deepEqual(otherRec.connected, [])
          assert.ok(a.peers().includes(b.peerId) && b.peers().includes(a.peerId), 'peers of one cluster still count')
          await expectCode(a.request(other.network.peerId, bytes([1])), 'ERR_NETWORK')
          await other.network.stop()
          await settle()
          for (const [i, rec] of recs.entries()) assert.ok(!rec.disconnected.includes(other.network.peerId), `network ${i} is not told it left`)
          assert.ok(a.peers().includes(b.peerId))
        })
      }

      it('delivers nothing after stop(), and stop() twice is fine', async function () {
        const { nets, recs } = await setup(2)
        const [a, b] = nets as [Network, Network]
        b.subscribe('t')
        await warmUp(a, 't', [recs[1]!])
        await b.stop()
        const calls = recs[1]!.calls
        await a.publish('t', bytes([5]))
        await expectCode(a.request(b.peerId, bytes([1])), 'ERR_NETWORK')
        await settle()
        assert.equal(recs[1]!.calls, calls, 'no event reaches a stopped network')
        await b.stop()
      })
    })
  })
}

/** Records every event a network delivers; answers requests with `handler` (echo by default). */
class Recorder implements NetworkEvents {
  messages: { topic: string; data: Uint8Array; from: string }[] = []
  connected: string[] = []
  disconnected: string[] = []
  readonly warmUps = new Set<string>()
  calls = 0
  handler: (from: string, data: Uint8Array) => Promise<Uint8Array> = async (_from, data) => data

  onMessage(topic: string, data: Uint8Array, from: string): void {
    this.calls++
    if (!isWarmUp(data)) this.messages.push({ topic, data, from })
    else this.warmUps.add(topic)
  }

  onRequest(from: string, data: Uint8Array): Promise<Uint8Array> {
    this.calls++
    return this.handler(from, data)
  }

  onPeerConnected(peer: string): void {
    this.calls++
    this.connected.push(peer)
  }

  onPeerDisconnected(peer: string): void {
    this.calls++
    this.disconnected.push(peer)
  }

  received(topic: string, data: Uint8Array): boolean {
    return this.messages.some((m) => m.topic === topic && equal(m.data, data))
  }
}

// Warm-up messages carry this 8-byte marker so tests can tell them from their own payloads.
const WARM_UP = bytes([0x57, 0x41, 0x52, 0x4d, 0x2d, 0x55, 0x50, 0x21])

function isWarmUp(data: Uint8Array): boolean {
  return data.byteLength === WARM_UP.byteLength + 4 && equal(data.subarray(0, WARM_UP.byteLength), WARM_UP)
}

/** Publishes warm-up messages until every receiver got one: the subscription has propagated. */
async function warmUp(sender: Network, topic: string, receivers: Recorder[], timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (let i = 0; !receivers.every((r) => r.warmUps.has(topic)); i++) {
    if (Date.now() > deadline) throw new Error(`warm-up on topic ${topic} did not arrive within ${timeoutMs} ms`)
    const message = concat(WARM_UP, new Uint8Array(new Uint32Array([i]).buffer))
    await sender.publish(topic, message)
    await sleep(50)
  }
}

/** Polls cond until it holds; fails after timeoutMs. */
async function waitFor(cond: () => boolean, what = 'condition', timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
    await sleep(20)
  }
}

/** Gives stray deliveries a chance to show up before asserting that none came. */
function settle(): Promise<void> {
  return sleep(300)
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  try {
    await promise
  } catch (err) {
    assert.ok(isConvergentError(err), `expected a ConvergentError ${code}, got ${String(err)}`)
    assert.equal(err.code, code, String(err))
    return
  }
  assert.fail(`expected a rejection with ${code}`)
}

function bytes(values: number[]): Uint8Array {
  return Uint8Array.from(values)
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength)
  out.set(a, 0)
  out.set(b, a.byteLength)
  return out
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i])
}

/** Deterministic filler bytes (xorshift), so failures reproduce. */
function pseudoRandomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n)
  let x = seed | 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}
