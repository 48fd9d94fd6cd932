import { randomBytes } from 'node:crypto'

/**
 * Cryptographically secure random bytes from a pool: one call into OpenSSL per 4 KiB instead of
 * one per draw (~4 µs each for 16 bytes). A view into the pool: copy what is kept, and zero
 * what must not stay in memory (a key) once copied.
 */
let pool = Buffer.alloc(0)
let poolAt = 0
export function pooledRandom(n: number): Buffer {
  if (n > POOL_BYTES) return randomBytes(n)
  if (poolAt + n > pool.length) {
    pool = randomBytes(POOL_BYTES)
    poolAt = 0
  }
  poolAt += n
  return pool.subarray(poolAt - n, poolAt)
}

const POOL_BYTES = 4096
