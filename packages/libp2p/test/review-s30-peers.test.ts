// Review s30: bootstrap peers' /p2p/ parts are checked at open (options.ts). Valid forms stay valid.
import { expect } from 'chai'
import { validate } from '../src/options.js'

const ED = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'
const ED2 = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
const RSA = 'QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN'

describe('review s30: bootstrap peer addresses', function () {
  it('holds: relay (p2p-circuit), dnsaddr, ws/wss, RSA (Qm) and ipv6 addresses are accepted', function () {
    for (const address of [
      `/ip4/10.0.0.1/tcp/4001/p2p/${ED}/p2p-circuit/p2p/${ED2}`,
      `/dnsaddr/bootstrap.libp2p.io/p2p/${RSA}`,
      `/dnsaddr/example.com`,
      `/dns4/example.com/tcp/443/wss/p2p/${ED}`,
      `/ip4/127.0.0.1/tcp/9000/ws/p2p/${ED}`,
      `/ip6/::1/tcp/4001/p2p/${ED}`,
      `/ip4/127.0.0.1/tcp/4001`,
    ]) {
      expect(() => validate({ peers: [address] }), address).to.not.throw()
    }
  })

  it('holds: a bad peer id after any /p2p/ (the relay’s or the target’s) is ERR_INVALID_ARGUMENT', function () {
    for (const address of [`/ip4/10.0.0.1/tcp/4001/p2p/${ED}/p2p-circuit/p2p/QmTypo`, `/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWtypo/p2p-circuit/p2p/${ED2}`]) {
      expect(() => validate({ peers: [address] }), address).to.throw(/not a peer id/)
    }
  })
})
