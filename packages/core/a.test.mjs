import fc from 'fast-check'
import assert from 'node:assert/strict'
it('fails', () => fc.assert(fc.property(fc.nat(), (n) => { assert.equal(n % 7, 99, 'THE-ASSERTION-MESSAGE') })))
