// PeerRateLimiter: token buckets per peer for messages, bytes and entries.
import { expect } from 'chai'
import { PeerRateLimiter } from '../src/replication/rate-limit.js'
import { ManualClock } from './helpers.js'

const LIMITS = {
  inboundRatePerSecond: 10,
  inboundBurst: 20,
  inboundEntriesPerSecond: 100,
  inboundEntriesBurst: 200,
  inboundBytesPerSecond: 1000,
  inboundBytesBurst: 2000,
}

describe('rate limit', function () {
  it('a peer that reconnects does not get a fresh burst; its buckets go once they have refilled', async () => {
    const clock = new ManualClock()
    const limiter = new PeerRateLimiter(clock, LIMITS)
    let taken = 0
    while (limiter.take('p')) taken++
    expect(taken).to.equal(20) // the burst
    limiter.forget('p') // disconnects …
    expect(limiter.take('p')).to.equal(false) // … and reconnects: still spent
    await clock.advance(1000)
    expect(limiter.take('p')).to.equal(true) // refilled at the sustained rate
    await clock.advance(10_000)
    limiter.forget('p')
    limiter.forget('other') // a later departure lets the refilled one go
    expect((limiter as unknown as { peers: Map<string, unknown> }).peers.has('p')).to.equal(false)
  })

  it('counts entries and bytes, not only messages', () => {
    const limiter = new PeerRateLimiter(new ManualClock(), LIMITS)
    expect(limiter.takeEntries('p', 200)).to.equal(true)
    expect(limiter.takeEntries('p', 1)).to.equal(false)
    expect(limiter.take('q', 2000)).to.equal(true)
    expect(limiter.take('q', 1)).to.equal(false)
  })
})
