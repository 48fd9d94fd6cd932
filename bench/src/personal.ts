// Personal fields against none (issue #14): the cost of sealing two fields per write.
//   npm run build && node bench/dist/src/personal.js [n=2000] [runs=7]   (DURABILITY=fsync for the default durability; FEW_SUBJECTS=1: 10 subjects, no new key per write;
//   CIPHER=xchacha20-poly1305: open({ personalCipher }) — the default is aes-256-gcm)
// Each run opens a fresh replica (classic-level in a temp folder, durability 'process', no
// network) and writes n customers, each a new subject (so each write also makes and stores a
// subject key), then updates a non-personal field of each (the sealed fields are kept as they
// are: opened and compared, not sealed again). Runs alternate plain / personal; medians printed.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { open } from 'convergent'

const n = Number(process.argv[2] ?? 2000)
const runs = Number(process.argv[3] ?? 7)

interface Customer {
  customerId: string
  name: string
  tier: number
  email?: string
  address?: string
}

async function run(personal: boolean): Promise<{ put: number; update: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'convergent-bench-personal-'))
  const replica = await open({
    dir,
    network: false,
    durability: process.env.DURABILITY === 'fsync' ? 'fsync' : 'process',
    metrics: false,
    logLevel: 'silent',
    personalCipher: process.env.CIPHER === 'xchacha20-poly1305' ? 'xchacha20-poly1305' : 'aes-256-gcm',
  })
  try {
    const customers = replica.collection<Customer>('customers', personal ? { personal: { subject: (c) => c.customerId, fields: ['email', 'address'] } } : {})
    const value = (i: number): Customer => ({
      customerId: process.env.FEW_SUBJECTS ? `cust-${i % 10}` : `cust-${i}`,
      name: `Customer ${i}`,
      tier: i % 3,
      email: `customer${i}@example.com`,
      address: `${i} Long Street, Springfield`,
    })
    let t0 = performance.now()
    const batch = 100
    for (let i = 0; i < n; i += batch) {
      const writes: Promise<void>[] = []
      for (let j = i; j < Math.min(n, i + batch); j++) writes.push(customers.put(`c${j}`, value(j)))
      await Promise.all(writes)
    }
    const put = (n / (performance.now() - t0)) * 1000
    t0 = performance.now()
    for (let i = 0; i < n; i += batch) {
      const writes: Promise<unknown>[] = []
      for (let j = i; j < Math.min(n, i + batch); j++) writes.push(customers.update(`c${j}`, (c) => void (c.tier = c.tier + 1)))
      await Promise.all(writes)
    }
    const update = (n / (performance.now() - t0)) * 1000
    return { put, update }
  } finally {
    await replica.close()
    await rm(dir, { recursive: true, force: true })
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const plain: { put: number; update: number }[] = []
const sealed: { put: number; update: number }[] = []
await run(false) // warm-up
await run(true)
for (let r = 0; r < runs; r++) {
  plain.push(await run(false))
  sealed.push(await run(true))
}
for (const what of ['put', 'update'] as const) {
  const p = median(plain.map((x) => x[what]))
  const s = median(sealed.map((x) => x[what]))
  process.stdout.write(
    `${what} (${process.env.CIPHER === 'xchacha20-poly1305' ? 'xchacha20-poly1305' : 'aes-256-gcm'}${process.env.FEW_SUBJECTS ? ', existing subjects' : ', new subjects'}): no personal fields ${p.toFixed(0)} writes/s, 2 personal fields ${s.toFixed(0)} writes/s, overhead ${((p / s - 1) * 100).toFixed(1)} % (median of ${runs}, n=${n})\n`,
  )
}
