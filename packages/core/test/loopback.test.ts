import assert from 'node:assert/strict'
import { ConvergentError, LoopbackHub, type Network, type NetworkEvents } from '../src/index.js'
import { networkComplianceSuite } from '../src/testing/index.js'

networkComplianceSuite('loopback', async (n) => {
  const hub = new LoopbackHub()
  const networks = Array.from({ length: n }, () => hub.createNetwork())
  return {
    networks,
    // The hub links every started pair at once; wait for the events to be delivered.
    connectAll: () => waitFor(() => networks.every((net) => net.peers().length === n - 1)),
    cleanup: async () => {
      await Promise.all(networks.map((net) => net.stop()))
    },
  }
})

describe('LoopbackHub', function () {
  let hub: LoopbackHub
  let nets: Network[]
  let logs: Log[]

  async function startAll(ids: string[], options?: ConstructorParameters<typeof LoopbackHub>[0]): Promise<void> {
    hub = new LoopbackHub(options)
    nets = ids.map((id) => hub.createNetwork(id))
    logs = nets.map(() => new Log())
    await Promise.all(nets.map((net, i) => net.start(logs[i]!)))
    await tick()
  }

  afterEach(async function () {
    await Promise.all(nets.map((net) => net.stop()))
  })

  it('partition() cuts links across groups and heal() restores them', async function () {
    await startAll(['a', 'b', 'c'])
    hub.partition(['a'], ['b', 'c'])
    await tick()
    assert.deepEqual(nets[0]!.peers(), [])
    assert.deepEqual(nets[1]!.peers(), ['c'])
    assert.deepEqual(logs[1]!.disconnected, ['a'])
    await expectCode(nets[0]!.request('b', new Uint8Array([1])), 'ERR_NETWORK')
    nets[1]!.subscribe('t')
    await nets[0]!.publish('t', new Uint8Array([1]))
    await tick()
    assert.equal(logs[1]!.messages.length, 0)

    hub.heal()
    // (Deliveries hop through timers: on a loaded machine a fixed pause may not cover them.)
    await waitFor(() => nets[0]!.peers().length === 2 && logs[1]!.connected.length === 3)
    assert.deepEqual(nets[0]!.peers().sort(), ['b', 'c'])
    assert.deepEqual(logs[1]!.connected, ['a', 'c', 'a'])
    await nets[0]!.publish('t', new Uint8Array([2]))
    await waitFor(() => logs[1]!.messages.length > 0)
    await tick()
    assert.deepEqual(logs[1]!.messages, [{ topic: 't', data: new Uint8Array([2]), from: 'a' }])
  })

  it('drops messages in flight when the link is cut', async function () {
    await startAll(['a', 'b'])
    nets[1]!.subscribe('t')
    await nets[0]!.publish('t', new Uint8Array([1]))
    hub.disconnect('a', 'b')
    await tick()
    assert.equal(logs[1]!.messages.length, 0)
    hub.connect('a', 'b')
    await tick()
    assert.deepEqual(nets[0]!.peers(), ['b'])
  })

  it('rejects a pending request when the link is cut', async function () {
    await startAll(['a', 'b'])
    logs[1]!.respond = () => new Promise(() => {})
    const pending = nets[0]!.request('b', new Uint8Array([1]))
    await tick()
    hub.disconnect('a', 'b')
    await expectCode(pending, 'ERR_NETWORK')
  })

  it('links only connect()ed pairs when connectOnStart is false', async function () {
    await startAll(['a', 'b', 'c'], { connectOnStart: false })
    assert.deepEqual(nets[0]!.peers(), [])
    hub.connect('a', 'b')
    await tick()
    assert.deepEqual(nets[0]!.peers(), ['b'])
    assert.deepEqual(nets[2]!.peers(), [])
  })

  it('enforces maxMessageBytes on publish and request', async function () {
    await startAll(['a', 'b'], { maxMessageBytes: 10 })
    await expectCode(nets[0]!.publish('t', new Uint8Array(11)), 'ERR_TOO_LARGE')
    await expectCode(nets[0]!.request('b', new Uint8Array(11)), 'ERR_TOO_LARGE')
  })

  it('refuses a peer id in use, and reuses it once stopped', async function () {
    await startAll(['a'])
    assert.throws(() => hub.createNetwork('a'), ConvergentError)
    await nets[0]!.stop()
    const again = hub.createNetwork('a')
    nets.push(again)
    await again.start(new Log())
    await expectCode(again.start(new Log()), 'ERR_CLOSED')
  })

  it('delivers through the clock it was given', async function () {
    const queued: (() => void)[] = []
    let now = 0
    const clock = {
      now: () => now,
      setTimeout: (fn: () => void) => {
        queued.push(fn)
        return { id: queued.length }
      },
      clearTimeout: () => {},
      random: () => 0.5,
    }
    hub = new LoopbackHub({ clock })
    nets = [hub.createNetwork('a'), hub.createNetwork('b')]
    logs = [new Log(), new Log()]
    await nets[0]!.start(logs[0]!)
    await nets[1]!.start(logs[1]!)
    nets[1]!.subscribe('t')
    await nets[0]!.publish('t', new Uint8Array([1]))
    assert.equal(logs[1]!.messages.length, 0)
    while (queued.length > 0) queued.shift()!()
    now++
    assert.equal(logs[1]!.messages.length, 1)
  })
})

class Log implements NetworkEvents {
  messages: { topic: string; data: Uint8Array; from: string }[] = []
  connected: string[] = []
  disconnected: string[] = []
  respond: (from: string, data: Uint8Array) => Promise<Uint8Array> = async (_f, d) => d
  onMessage(topic: string, data: Uint8Array, from: string): void {
    this.messages.push({ topic, data, from })
  }
  onRequest(from: string, data: Uint8Array): Promise<Uint8Array> {
    return this.respond(from, data)
  }
  onPeerConnected(peer: string): void {
    this.connected.push(peer)
  }
  onPeerDisconnected(peer: string): void {
    this.disconnected.push(peer)
  }
}

/** Lets every zero-delay delivery queued so far run. */
function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 5))
}

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out')
    await tick()
  }
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  assert.ok(err instanceof ConvergentError, `expected a rejection with ${code}, got ${String(err)}`)
  assert.equal(err.code, code)
}
