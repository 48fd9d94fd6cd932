// A gap in gossip from an author that is no neighbour (issue #13 follow-up): on libp2p a relayed
// push names its author, and a round with the author cannot start where no connection to it is
// open. The round goes to the relay that passed the push on (NetworkEvents.onMessage `via`).
import { join } from 'node:path'
import { expect } from 'chai'
import { silentLogger, type Network, type NetworkEvents } from '@convergent/core'
import { createLibp2pNetwork, open, type Libp2pNetwork, type Replica } from '../src/index.js'
import { tempDir, waitFor } from './helpers.js'

type Gater = NonNullable<Parameters<typeof createLibp2pNetwork>[0]>['connectionGater']

/** `net` with its gossip passed through `filter` (false: dropped before the replica sees it). */
function filtered(net: Libp2pNetwork, filter: (topic: string, from: string, data: Uint8Array) => boolean): Network {
  return new Proxy(net, {
    get(target, prop, receiver) {
      if (prop === 'start') {
        return (events: NetworkEvents) =>
          target.start({
            ...events,
            onMessage: (topic, data, from, via) => {
              if (filter(topic, from, data)) events.onMessage(topic, data, from, via)
            },
          })
      }
      const value: unknown = Reflect.get(target, prop, receiver)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
}

/** The entity whose first push A loses (its id found in the push's bytes). */
const ENTITY = 'gap-entity-n1'

describe('Gaps in gossip from an author that is no neighbour (real libp2p)', function () {
  this.timeout(60_000)
  const cleanups: (() => Promise<void>)[] = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
  })

  it('a push that waits for one lost on the way starts a round with the relay, which brings the lost one', async () => {
    // A — B — C in a line: A and C refuse each other, so C's pushes reach A through B only.
    const ids: Record<string, string> = {}
    const gater = (other: string): Gater => {
      const deny = (peer: { toString(): string }): boolean => peer.toString() === ids[other]
      return { denyDialPeer: deny, denyInboundEncryptedConnection: deny, denyOutboundEncryptedConnection: deny }
    }
    const replicas: Record<string, Replica> = {}
    let dropNextFromC = false
    let dropped = 0
    const start = async (name: string, peers: string[], refuse?: string): Promise<Replica> => {
      const { dir, cleanup } = await tempDir(`relay-gaps-${name}`)
      cleanups.push(cleanup)
      const net = await createLibp2pNetwork({
        listen: ['/ip4/127.0.0.1/tcp/0'],
        peers,
        identityFile: join(dir, 'peer-id.key'),
        redialMinMs: 50,
        redialMaxMs: 200,
        ...(refuse !== undefined ? { connectionGater: gater(refuse) } : {}),
      })
      ids[name] = net.peerId
      const network =
        name === 'a'
          ? filtered(net, (_topic, from, data) => {
              if (!dropNextFromC || from !== ids.c || !Buffer.from(data).includes(ENTITY)) return true
              dropNextFromC = false
              dropped++
              return false
            })
          : net
      // No scheduled rounds and none on connect: only a round the gap starts can bring the lost push.
      const r = await open({ dir, network, logger: silentLogger, syncIntervalMs: 0, syncOnConnect: false })
      cleanups.push(() => r.close())
      replicas[name] = r
      return r
    }
    // C's id must be known to A's gater before they could meet: B first, then C, then A.
    const b = await start('b', [])
    const c = await start('c', [b.multiaddrs[0]!], 'a')
    const a = await start('a', [b.multiaddrs[0]!], 'c')
    await waitFor(() => b.peers().length === 2, 'B connected to A and C')
    expect(a.peers()).to.deep.equal([ids.b])
    for (const r of [a, b, c]) r.collection('notes', { backend: 'automerge' })
    // The mesh: C's writes reach A by gossip through B.
    // (A new entity each time: a probe that depends on a lost one would wait, as the test's write does.)
    let probes = 0
    await waitFor(
      async () => {
        const id = `probe-${++probes}`
        await c.collection('notes').put(id, { at: Date.now() })
        await new Promise((resolve) => setTimeout(resolve, 100))
        return (await a.collection('notes').get(id)) !== undefined
      },
      "C's probe reaches A through B",
      20_000,
    )
    dropNextFromC = true
    await c.collection('notes').put(ENTITY, { text: 'one' })
    await waitFor(() => dropped === 1, "C's first push dropped at A")
    await waitFor(async () => (await b.collection('notes').get(ENTITY))?.text === 'one', 'B has it')
    await c.collection('notes').update(ENTITY, (d) => void (d.step = 2)) // needs 'one': it waits at A
    await waitFor(async () => (await a.collection('notes').get(ENTITY))?.step === 2, 'A has both writes', 15_000)
    expect(await a.collection('notes').get(ENTITY)).to.deep.equal({ text: 'one', step: 2 })
    // The round that brought it was A's with B (counted once it ended).
    await waitFor(() => (a.stats().peers[ids.b!]?.syncRounds ?? 0) > 0, 'a round of A with B ended')
  })
})
