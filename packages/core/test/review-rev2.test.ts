// Review (rev2) of 4859661: a delta for an entity with changes waiting in it reads the stored
// heads once the entity's writes in flight have landed, and again while it keeps being written.
import { expect } from 'chai'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { encodeHeaded } from '../src/replication/heads.js'
import { memoryLevelStore } from '@convergent/level'
import { LoopbackHub, type Replica, type Store } from '../src/index.js'
import { waitFor } from './helpers.js'
import { ADMIN, SUPPORT, trustMember, trustSuite } from './trust-helpers.js'
import { adminAheadByTwo, headOf as headOfChange, notes, NOTES_POLICY } from './heads-helpers.js'
import { ctxOf } from './counter-helpers.js'

/** A memory store whose every write takes `ms` (a disk slower than the writes made). */
function slowStore(ms: number): Store {
  const inner = memoryLevelStore()
  return new Proxy(inner, {
    get(target, key, receiver) {
      if (key === 'write') {
        return async (ops: Parameters<Store['write']>[0]) => {
          await new Promise((resolve) => setTimeout(resolve, ms))
          return target.write(ops)
        }
      }
      const value = Reflect.get(target, key, receiver) as unknown
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
}

describe('review rev2: waiting out writes in flight', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()
  const headed = async (change: Uint8Array) => encodeHeaded(change, [await headOfChange(keys, change, ADMIN)])

  it('a delta that releases waiting changes is taken while the entity is written locally all the time (no starvation)', async () => {
    const hub = new LoopbackHub()
    const r: Record<string, Replica> = {}
    for (const id of [ADMIN, SUPPORT]) r[id] = await trustMember(keys, replicas, hub, id, id === SUPPORT ? { store: slowStore(4) } : {})
    await r[ADMIN]!.policy.set(NOTES_POLICY)
    await waitFor(() => [ADMIN, SUPPORT].every((id) => r[id]!.policy.get() !== undefined), 'adopted')
    const { c1, c2 } = await adminAheadByTwo(hub, r)
    const ctx = ctxOf(r[SUPPORT]!)
    // c2 first: it waits in SUPPORT's document (c1 missing).
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c2))).to.equal('applied')
    // SUPPORT's application writes n1 every millisecond (a hot entity), faster than its disk lands a write.
    let writing = true
    let n = 0
    const writer = (async () => {
      while (writing) {
        void notes(r[SUPPORT]!).put('n1', { text: 'local', tag: String(n++) })
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
    })()
    try {
      await new Promise((resolve) => setTimeout(resolve, 50))
      const results: string[] = []
      for (let i = 0; i < 3; i++) results.push(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c1)))
      expect(results, `c1 while n1 is written locally (${n} local writes)`).to.include('applied')
    } finally {
      writing = false
      await writer
    }
  })
})
