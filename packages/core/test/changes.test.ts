// Change events: what subscribe() listeners are told, and when.
import { expect } from 'chai'
import { BACKENDS, memoryReplica } from './helpers.js'

describe('Change events', () => {
  for (const backend of BACKENDS) {
    it(`${backend}: come in commit order, each with the value right after its own change`, async () => {
      const replica = await memoryReplica()
      try {
        const c = replica.collection<{ a?: number; b?: number }>('x', { backend })
        const seen: unknown[] = []
        c.subscribe((e) => seen.push([e.seq, e.value]))
        await c.put('e', { a: 0 })
        // Three changes of one entity in one tick: one batch, three events.
        await Promise.all([c.update('e', (v) => void (v.a = 1)), c.update('e', (v) => void (v.b = 2)), c.delete('e')])
        await c.put('e', { a: 3 })
        expect(seen).to.deep.equal([
          [1, { a: 0 }],
          [2, { a: 1 }],
          [3, { a: 1, b: 2 }], // not the delete that follows in the same batch
          [4, undefined],
          [5, { a: 3 }],
        ])
      } finally {
        await replica.close()
      }
    })
  }
})

describe('subscribe()', () => {
  for (const backend of BACKENDS) {
    it(`${backend}: tells a listener the changes committed after it subscribed, not one still being written before`, async () => {
      const replica = await memoryReplica()
      try {
        const c = replica.collection<{ n: number }>('x', { backend })
        const early: number[] = []
        c.subscribe((e) => early.push(e.seq))
        await c.put('first', { n: 0 }) // the digest tree is loaded: the next commit comes within microtasks
        const inFlight = c.put('a', { n: 1 })
        for (let i = 0; i < 5; i++) await Promise.resolve() // past its commit; its batch goes out on a later turn
        const late: number[] = []
        c.subscribe((e) => late.push(e.seq))
        await inFlight
        await c.put('b', { n: 2 })
        expect(early).to.deep.equal([1, 2, 3])
        expect(late).to.deep.equal([3])
      } finally {
        await replica.close()
      }
    })
  }
})
