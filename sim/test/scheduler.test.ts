import { expect } from 'chai'
import { Activity, Prng, Scheduler, ZipfSampler } from '../src/index.js'

describe('sim: virtual time', function () {
  it('runs timers by time, then in the order they were set', async function () {
    const s = new Scheduler(new Activity())
    const order: string[] = []
    s.after(10, () => order.push('b'))
    s.after(5, () => order.push('a'))
    s.after(10, () => order.push('c'))
    s.after(10.2, () => order.push('d (rounded up to 11)'))
    await s.runUntil(100)
    expect(order).to.deep.equal(['a', 'b', 'c', 'd (rounded up to 11)'])
    expect(s.now).to.equal(100)
  })

  it('cancels timers, and a killed node clock drops its pending and future timers', async function () {
    const s = new Scheduler(new Activity())
    const clock = s.clockFor(new Prng(1), () => 250)
    const fired: number[] = []
    const h = clock.setTimeout(() => fired.push(1), 10)
    clock.setTimeout(() => fired.push(2), 20)
    clock.clearTimeout(h)
    expect(clock.now()).to.equal(s.epochMs + 250, 'skew is added to now()')
    await s.runUntil(15)
    clock.kill()
    clock.setTimeout(() => fired.push(3), 1)
    await s.runUntil(100)
    expect(fired).to.deep.equal([])
    expect(clock.pendingTimers).to.equal(0)
  })

  it('lets real async work started by an event finish before time moves on', async function () {
    const activity = new Activity()
    const s = new Scheduler(activity)
    const seen: string[] = []
    s.after(1, () => {
      // A chain of real macrotasks (like memory-level + group commit) that ends in a timer.
      void activity.track(new Promise<void>((r) => setImmediate(() => setImmediate(r)))).then(() => {
        seen.push(`work done at ${s.now}`)
        s.after(0, () => seen.push(`follow-up at ${s.now}`))
      })
    })
    s.after(2, () => seen.push(`next event at ${s.now}`))
    await s.runUntil(10)
    expect(seen).to.deep.equal(['work done at 1', 'follow-up at 1', 'next event at 2'])
  })

  it('draws the same numbers from the same seed and label, different ones otherwise', function () {
    const a = new Prng(42, 'x')
    const b = new Prng(42, 'x')
    const c = new Prng(42, 'y')
    const sa = Array.from({ length: 5 }, () => a.nextUint32())
    expect(Array.from({ length: 5 }, () => b.nextUint32())).to.deep.equal(sa)
    expect(Array.from({ length: 5 }, () => c.nextUint32())).to.not.deep.equal(sa)
    const u = Array.from({ length: 10_000 }, () => a.next())
    expect(Math.min(...u)).to.be.at.least(0)
    expect(Math.max(...u)).to.be.below(1)
    expect(u.reduce((x, y) => x + y, 0) / u.length).to.be.closeTo(0.5, 0.02)
  })

  it('samples zipf popularity with the most popular entity first', function () {
    const z = new ZipfSampler(50, 1.1)
    const rng = new Prng(7)
    const counts = new Array<number>(50).fill(0)
    for (let i = 0; i < 20_000; i++) counts[z.sample(rng)]!++
    expect(counts[0]).to.be.greaterThan(counts[1]!)
    expect(counts[1]).to.be.greaterThan(counts[10]!)
    expect(counts[0]! / 20_000).to.be.closeTo(1 / [...Array(50).keys()].reduce((a, i) => a + 1 / Math.pow(i + 1, 1.1), 0), 0.02)
  })
})
