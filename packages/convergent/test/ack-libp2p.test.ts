// Write acknowledgements on real nodes: open() with classic-level on disk and libp2p over TCP
// on 127.0.0.1. The holds query travels on the sync protocol's streams.
import { expect } from 'chai'
import { silentLogger } from '@convergent/core'
import { AckTimeoutError, open, type Replica } from '../src/index.js'
import { replicasAfterEach, waitFor } from './helpers.js'

describe('Write acknowledgements over libp2p (real nodes, LevelDB on disk)', function () {
  this.timeout(60_000)
  const suite = replicasAfterEach('convergent-ack-')

  async function replicaIn(dir: string, peers: string[] = []): Promise<Replica> {
    const r = await open({ dir, peers, logger: silentLogger, syncIntervalMs: 0 })
    suite.opened(r)
    return r
  }

  it('put with ack resolves once both peers hold it on disk; asking for more peers than exist times out, the write kept', async function () {
    const a = await suite.replica()
    const bDir = await suite.folder()
    const b = await replicaIn(bDir, a.multiaddrs)
    const c = await replicaIn(await suite.folder(), a.multiaddrs)
    await waitFor(() => a.peers().length === 2, 'a sees b and c')

    const orders = a.collection('orders', { backend: 'yjs' })
    await orders.put('o-1', { total: 10 }, { ack: { peers: 2, timeoutMs: 20_000 } })
    expect(await c.collection('orders').get('o-1')).to.deep.equal({ total: 10 })
    // "Durable" means on b's disk: closed and opened again from its folder, alone, it has it.
    await b.close()
    const reopened = await replicaIn(bDir)
    expect(await reopened.collection('orders').get('o-1')).to.deep.equal({ total: 10 })

    // Only c is left: two confirmations cannot come.
    const err = await orders.delete('o-1', { ack: { peers: 2, timeoutMs: 500 } }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).to.be.instanceOf(AckTimeoutError)
    expect((err as AckTimeoutError).code).to.equal('ERR_ACK_TIMEOUT')
    expect((err as AckTimeoutError).confirmed).to.deep.equal([c.peerId])
    expect(await orders.get('o-1')).to.equal(undefined)
    expect(await c.collection('orders').get('o-1')).to.equal(undefined)
  })
})
