import { expect } from 'chai'
import { randomBytes, systemClock, type Clock } from '../src/clock.js'

describe('clock: random bytes', () => {
  it('the system clock draws actor ids from node:crypto, not Math.random (which can be predicted from a few outputs)', () => {
    const original = Math.random
    Math.random = () => 0
    try {
      const [a, b] = [randomBytes(systemClock(), 16), randomBytes(systemClock(), 16)]
      expect(a.byteLength).to.equal(16)
      expect(a.some((x) => x !== 0)).to.equal(true)
      expect(Buffer.from(a).equals(Buffer.from(b))).to.equal(false)
    } finally {
      Math.random = original
    }
  })

  it("a clock without a secure source (the simulator's, seeded) draws them from its random(), the same from the same seed", () => {
    const seeded = (): Clock => {
      let x = 0.123
      return { ...systemClock(), randomBytes: undefined, random: () => (x = (x * 9301 + 0.49297) % 1) }
    }
    expect(randomBytes(seeded(), 16)).to.deep.equal(randomBytes(seeded(), 16))
  })
})
