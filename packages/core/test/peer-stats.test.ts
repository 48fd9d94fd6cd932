// PeerStatsTable: per-peer counters, bounded however many identities a peer goes through.
import { expect } from 'chai'
import { PeerStatsTable } from '../src/replication/peer-stats.js'

describe('peer stats', function () {
  it('keeps the peers heard from most recently, at most maxPeers, and still counts the drops of those it let go', () => {
    const table = new PeerStatsTable(100)
    table.drop('honest', 'malformed', 'x')
    for (let i = 0; i < 1000; i++) {
      table.drop(`sybil-${i}`, 'invalidDelta', 'y')
      if (i % 50 === 0) table.of('honest') // heard from now and then: kept
    }
    const peers = table.snapshot()
    expect(Object.keys(peers)).to.have.length(100)
    expect(peers.honest?.dropped.malformed).to.equal(1)
    expect(peers['sybil-999']?.dropped.invalidDelta).to.equal(1)
    expect(peers['sybil-0']).to.equal(undefined)
    expect(table.totalDropped()).to.equal(1001)
    // By reason too, and never going down (a Prometheus counter reads it).
    expect(table.droppedByReason()).to.include({ malformed: 1, invalidDelta: 1000 })
  })
})
