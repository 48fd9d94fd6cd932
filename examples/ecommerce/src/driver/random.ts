/**
 * A small seeded PRNG (mulberry32): the same seed gives the same workload. The same function as
 * `seededRandom` in @convergent/core/testing, kept here on purpose: that entry point is test
 * tooling (it loads fast-check and the compliance suites), and this is the app's runtime code,
 * which depends on the `convergent` facade alone. pure-rand has no mulberry32, so using it would
 * add a dependency for ten lines and change every seed's workload.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
