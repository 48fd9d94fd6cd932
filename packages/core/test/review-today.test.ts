/**
 * Review of the day's changes (477ae65..ed2f3b4): merged value limit, hidden content held to
 * the limits, Automerge deltas nesting past maxDepth applied change by change, history reads
 * per author, damaged-disk refactor.
 */
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { LoopbackHub } from '../src/index.js'
import type { Backend } from '../src/backend.js'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { closedAfterEach, memoryReplica } from './helpers.js'
import { ctxOf, savedDoc } from './counter-helpers.js'

type Doc = Record<string, unknown>

describe('review: the day’s changes', function () {
  this.timeout(120_000)
  const { replicas } = closedAfterEach()

  // Item 3 (backend.ts applyDelta): a delta whose changes nest past maxDepth only together is
  // now applied one change at a time. Each of those applies on a live (materialised) document
  // patches the JS object along the path of every object it makes, so a change at depth d costs
  // O(d), and a chain of L changes — each one map deeper, each nesting 1 on its own — costs
  // O(L²) before the value limit refuses the result at the end. Before, such a delta was refused
  // up front in O(L) (nestingDepth). Measured through applyRemoteDelta (this test with
  // maxDepth 64 and L = 1,500: a 142 KB delta): 24.4 s of event loop blocked, then refused as
  // invalidDelta (nested deeper than maxDepth). Measured on AutomergeBackend.applyDelta alone (fresh entity,
  // maxDepth 64, 2 shared cores): a chain of 1,000 changes (~97 KB) 7.2 s, 2,000 (~190 KB)
  // 30.8 s, against 0.75 s for the same 2,000 as one batch; 9 + 2,000 flat changes (the chain
  // only to enter the loop) 2.7 s against 0.2 s in one batch. Gossip takes 1 MiB pushes (~10,000
  // chained changes: extrapolated ~12 min of event loop), a sync delta 32 MiB; any writer (any
  // key holder before a policy) can send it, and it is refused, so it can be sent again. Groups
  // of up to maxDepth nesting instead of single changes measured 8.3 s for 2,000 (the cost is
  // per made object, not per apply); 20,000 did not finish in 300 s. Applied as one batch
  // (the guard off), 20,000 chained changes ended in a wasm trap ("unreachable") and every
  // Automerge document of the process then threw "Module terminated" — what the up-front guard
  // (f34afdd) was for. Fixed by taking item 3 back: such a delta is refused up front again (so
  // review-order-refusals HOLE 5, hostile only, is open again). The assertion counts backend
  // applies (no timing): the work must be bounded by maxDepth, not by the chain's length.
  it('HOLE 1 (fixed): an Automerge delta of a chain of L changes, each one map deeper, was applied one change at a time (O(L²) on a live value) before it was refused; it is refused up front again', async () => {
    const maxDepth = 8
    const a = await memoryReplica({ network: new LoopbackHub().createNetwork('a'), limits: { maxDepth } })
    replicas.push(a)
    await a.collection('p', { backend: 'automerge' }).put('k', { m: { z: 1 } })
    let doc = A.load<Doc>(await savedDoc(a, 'p', 'k'), { actor: 'ab'.repeat(16) })
    const before = A.getHeads(doc)
    const L = 6 * maxDepth
    for (let i = 0; i < L; i++) {
      doc = A.change(doc, { time: 0 }, (d) => {
        let o = d['m'] as Doc
        while (o['c'] !== undefined) o = o['c'] as Doc
        o['c'] = {}
      })
    }
    const delta = Buffer.concat(A.getChanges(A.view(doc, before), doc).map((c) => Buffer.from(c)))
    const backend = ctxOf(a).entities.collections.get('p')!.backend as Backend & { applyDelta: Backend['applyDelta'] }
    const original = backend.applyDelta.bind(backend)
    let applies = 0
    backend.applyDelta = (d, bytes, limits) => {
      applies++
      return original(d, bytes, limits)
    }
    try {
      const result = await applyRemoteDelta(ctxOf(a), 'writer', 'p', 'automerge', 'k', delta)
      expect(result, 'refused in the end (the value nests past maxDepth)').to.equal('invalidDelta')
    } finally {
      delete (backend as Partial<Backend>).applyDelta
    }
    expect(applies, `backend applies for a chain of ${L} changes`).to.be.at.most(maxDepth + 2)
  })
})
