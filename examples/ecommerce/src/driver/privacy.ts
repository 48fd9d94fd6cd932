/**
 * Personal data in the demo: the orders service writes customers with their email and address
 * as personal fields (sealed per customer before they enter the CRDT) under ids that are keyed
 * pseudonyms of the email. After the heal the driver forgets one customer and shows, on every
 * service: its email was never in any file of the service's folder (a byte search before and
 * after the forget), get() no longer returns its email or address while the other customers
 * still read, the forget reached the service, and — once the services have stopped — no record
 * of the folder opens the forgotten fields (a dump of every stored snapshot and delta).
 * One reader (payments) is stopped before the forget and restarted on the same folder after it:
 * its stopped folder still opens the email (it holds the key), and once it is back it takes the
 * tombstone and destroys the key by itself — the byte search and the dump cover it after that.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { dumpCollection } from 'convergent'
import { customerIdOf, PERSONAL_FIELDS } from '../shared/customers.js'
import { SERVICE_NAMES, type CustomerInput, type CustomerView, type OrderView, type ServiceName } from '../shared/protocol.js'
import type { ServiceHandle } from './cluster.js'
import { formatMs } from './format.js'
import type { HttpClient } from './http-client.js'
import { waitUntil } from './probes.js'
import type { OrderAttempt } from './workload.js'

export interface DemoCustomer extends CustomerInput {
  /** The customer id: pseudonym(key, email) — what the orders service derives too. */
  id: string
}

const PEOPLE: readonly [string, string][] = [
  ['ada', 'Lovelace Row'],
  ['grace', 'Hopper Street'],
  ['alan', 'Turing Way'],
  ['edsger', 'Dijkstra Lane'],
  ['barbara', 'Liskov Court'],
]

/** The shop's customers for a run: emails unique to the run (`runTag`), ids derived as the orders service does. */
export function makeCustomers(runTag: string, pseudonymKey: string): DemoCustomer[] {
  return PEOPLE.map(([name, street], i) => {
    const email = `${name}.${runTag}@example.com`
    return { email, address: `${12 + i * 7} ${street}, Bristol BS${i + 1}`, id: customerIdOf(pseudonymKey, email) }
  })
}

/** What a byte search of one service's files found. */
export interface FolderSearch {
  files: number
  bytes: number
  /** Personal values of any customer (email, its local part, address) found, as `value in file`: must be empty. */
  found: string[]
  /** The forgotten customer's id was found in some file — the control that the search sees what is stored (ids are visible metadata). */
  idFound: boolean
}

/** The reader that was stopped (cleanly) before the forget and started again on the same folder after it. */
export interface OfflineResult {
  service: ServiceName
  /** Its pid before the stop, and that of the process restarted on the same folder (null: not restarted). */
  pids: { before: number; after: number | null }
  /**
   * Its folder dumped while it was down, after the forget: records of `customers`, and how many
   * open the forgotten email with the keys the folder holds (> 0: it held the key through the forget).
   */
  heldWhileDown: { records: number; forgottenOpened: number } | null
  /** From the stop until the restarted process was ready (ms). */
  downMs: number | null
  /** From ready until its get() first returned the customer without email and address (null: not within the wait). */
  forgotMs: number | null
}

export interface PrivacyResult {
  /** The customers the orders service registered (web orders carry them). */
  customers: { id: string; email: string }[]
  /** The customer forgotten after the heal, and the service that called replica.forget(). */
  forgotten: { id: string; email: string; by: ServiceName } | null
  /** An accepted order of that customer: it stays, naming the customer id. */
  orderId: string | null
  before: {
    /** Customers whose get() returned email and address, per service (all of them must). */
    readable: Partial<Record<ServiceName, number>>
    search: Partial<Record<ServiceName, FolderSearch>>
  }
  /** payments may read customers but not write them: its forget is refused (403 ERR_FORBIDDEN), nothing forgotten. */
  refusedForget: { service: ServiceName; status: number; code: string | null; stillReadable: boolean }
  /** How long forget() took at the orders service (its own tombstone, key deletion and compaction). */
  forgetMs: number | null
  /** Since the forget call: when this service's get() first returned the customer without email and address. */
  reachedMs: Partial<Record<ServiceName, number>>
  /** The service offline during the forget (null: none was stopped). */
  offline: OfflineResult | null
  after: {
    /** Personal fields still in get() of the forgotten customer, per service (must be none). */
    fieldsLeft: Partial<Record<ServiceName, string[]>>
    /** Other customers still read with their email and address, per service. */
    othersReadable: Partial<Record<ServiceName, number>>
    /** The forgotten customer's order is still served, naming the customer id, without its email. */
    orderKept: Partial<Record<ServiceName, boolean>>
    /** Registering the forgotten email again at the orders service: 410 ERR_FORGOTTEN. */
    rewrite: { status: number; code: string | null }
    search: Partial<Record<ServiceName, FolderSearch>>
  }
  /**
   * After the services stopped: every stored snapshot and delta of `customers` in each folder,
   * dumped with the subject keys the folder holds (what a copy of the folder can open).
   */
  dump: Partial<Record<ServiceName, { records: number; forgottenOpened: number; othersOpened: number }>> | null
  durationMs: number
  error: string | null
}

const READ_TIMEOUT_MS = 15_000
const REACH_TIMEOUT_MS = 10_000
/** How long the restarted service has to take the tombstone (anti-entropy with its peers; a round runs on connect). */
const BACK_TIMEOUT_MS = 20_000

/** Stops one service and starts it again on the same folder (the driver's Cluster does both). */
export interface OfflineControl {
  service: ServiceName
  stop(): Promise<void>
  restart(): Promise<ServiceHandle>
}

export function emptyPrivacy(): PrivacyResult {
  return {
    customers: [],
    forgotten: null,
    orderId: null,
    before: { readable: {}, search: {} },
    refusedForget: { service: 'payments', status: 0, code: null, stillReadable: false },
    forgetMs: null,
    reachedMs: {},
    offline: null,
    after: { fieldsLeft: {}, othersReadable: {}, orderKept: {}, rewrite: { status: 0, code: null }, search: {} },
    dump: null,
    durationMs: 0,
    error: null,
  }
}

/**
 * Forgets the first customer at the orders service (a writer of customers) and checks what each
 * service holds before and after. Run with every service connected and no traffic. With
 * `offline`, that service (a reader, not orders) is stopped before the forget and restarted on
 * the same folder after it; the checks after the forget run once it is back.
 */
export async function forgetCustomer(
  client: HttpClient,
  running: Record<ServiceName, ServiceHandle>,
  dataRoot: string,
  customers: DemoCustomer[],
  attempts: OrderAttempt[],
  signal: AbortSignal,
  offline?: OfflineControl,
  log: (line: string) => void = () => undefined,
): Promise<PrivacyResult> {
  const began = performance.now()
  const result = emptyPrivacy()
  // The handles as this step sees them (a restarted service gets a new one).
  const services = { ...running }
  let list = SERVICE_NAMES.map((n) => services[n])
  const [gone, ...others] = customers
  let down = false
  let restartTried = false
  try {
    if (gone === undefined) throw new Error('no customers')
    if (offline?.service === 'orders') throw new Error('the orders service forgets: it cannot be the one offline')
    const read = (s: ServiceHandle, c: DemoCustomer): Promise<CustomerView> => client.getOk<CustomerView>(`${s.url}/customers/${c.id}`, signal)
    const readsPlain = async (s: ServiceHandle, c: DemoCustomer): Promise<boolean> => {
      const v = (await read(s, c)).customer
      return v?.email === c.email && v.address === c.address
    }
    const countReadable = async (s: ServiceHandle, list: DemoCustomer[]): Promise<number> => {
      let n = 0
      for (const c of list) if (await readsPlain(s, c)) n++
      return n
    }

    // Every customer is registered (web orders registered them; this writes nothing for those).
    for (const c of customers) {
      const res = await client.post<{ id: string }>(`${services.orders.url}/customers`, { email: c.email, address: c.address }, { signal, idempotent: true })
      if (res.status !== 201 || res.body.id !== c.id) throw new Error(`registering ${c.email}: HTTP ${res.status}, id ${res.body.id} (expected ${c.id})`)
    }
    result.customers = customers.map((c) => ({ id: c.id, email: c.email }))
    result.orderId = attempts.find((a) => a.outcome === 'accepted' && a.customerId === gone.id)?.id ?? null

    // Before: every service reads every customer in plain (it holds their keys)…
    await waitUntil(
      async () => (await Promise.all(list.map((s) => countReadable(s, customers)))).every((n) => n === customers.length),
      READ_TIMEOUT_MS,
      "every service to read every customer's email (subject keys exchanged)",
      signal,
    ).catch(() => undefined)
    for (const s of list) result.before.readable[s.name] = await countReadable(s, customers)
    // …and no file of its folder holds any customer's email or address.
    for (const s of list) result.before.search[s.name] = await searchService(dataRoot, s.name, customers, gone.id)

    // A reader that is not a writer may not forget: refused, nothing forgotten.
    const refused = await client.post<{ code?: string }>(`${services.payments.url}/customers/${gone.id}/forget`, {}, { signal, idempotent: true })
    result.refusedForget = {
      service: 'payments',
      status: refused.status,
      code: refused.body.code ?? null,
      stillReadable: (await Promise.all(list.map((s) => readsPlain(s, gone)))).every(Boolean),
    }

    // One reader goes offline (a clean stop: its replica closes, its folder stays) and misses the forget.
    let stoppedAt = 0
    if (offline !== undefined) {
      const before = services[offline.service]
      result.offline = { service: offline.service, pids: { before: before.pid, after: null }, heldWhileDown: null, downMs: null, forgotMs: null }
      stoppedAt = performance.now()
      down = true
      await offline.stop()
      log(`${offline.service} stopped (pid ${before.pid}): it is offline during the forget; its folder stays as it is.`)
    }
    const online = list.filter((s) => s.name !== offline?.service)

    // The erasure: orders (the writer) forgets the customer; the tombstone reaches every member online.
    const forgetAt = performance.now()
    const done = await client.postOk<{ ms: number }>(`${services.orders.url}/customers/${gone.id}/forget`, {}, { signal, idempotent: true })
    result.forgetMs = done.ms
    result.forgotten = { id: gone.id, email: gone.email, by: 'orders' }
    const fieldsOf = async (s: ServiceHandle): Promise<string[]> => {
      const v = (await read(s, gone)).customer as Record<string, unknown> | null
      return PERSONAL_FIELDS.filter((f) => v?.[f] !== undefined)
    }
    await waitUntil(
      async () => {
        const left = await Promise.all(online.map(fieldsOf))
        online.forEach((s, i) => {
          if (left[i]!.length === 0) result.reachedMs[s.name] ??= Math.round(performance.now() - forgetAt)
        })
        return left.every((f) => f.length === 0)
      },
      REACH_TIMEOUT_MS,
      `the forget to reach ${online.map((s) => s.name).join(' and ')}`,
      signal,
    ).catch(() => undefined)

    if (offline !== undefined && result.offline !== null) {
      // While it is down its folder still holds the key: the dump opens the forgotten email.
      const dir = join(dataRoot, offline.service)
      const { records, forgottenOpened } = await dumpCounts(dir, gone.email, [])
      result.offline.heldWhileDown = { records, forgottenOpened }
      log(
        `${offline.service} is down and its folder, dumped after the forget, opens the forgotten email in ${result.offline.heldWhileDown.forgottenOpened} of ${result.offline.heldWhileDown.records} stored customer records: it still holds the key.`,
      )
      // It comes back on the same folder; nothing is sent to it: it takes the tombstone from its peers.
      restartTried = true
      const back = await offline.restart()
      down = false
      const readyAt = performance.now()
      services[offline.service] = back
      list = SERVICE_NAMES.map((n) => services[n])
      result.offline.pids.after = back.pid
      result.offline.downMs = Math.round(readyAt - stoppedAt)
      log(
        `${offline.service} restarted on the same folder (pid ${back.pid}, down ${formatMs(result.offline.downMs)}); waiting up to ${formatMs(BACK_TIMEOUT_MS)} for its get() to lose the email…`,
      )
      await waitUntil(
        async () => (await fieldsOf(back)).length === 0,
        BACK_TIMEOUT_MS,
        `${offline.service} to take the tombstone after its restart`,
        signal,
      ).catch(() => undefined)
      if ((await fieldsOf(back)).length === 0) {
        result.offline.forgotMs = Math.round(performance.now() - readyAt)
        result.reachedMs[offline.service] = Math.round(performance.now() - forgetAt)
      }
      log(
        result.offline.forgotMs === null
          ? `${offline.service} STILL returns the forgotten fields ${formatMs(BACK_TIMEOUT_MS)} after it came back.`
          : `${offline.service} took the tombstone and destroyed the key ${formatMs(result.offline.forgotMs)} after it came back.`,
      )
    }

    // After: the fields are gone everywhere, the others still read, the order stays.
    for (const s of list) {
      result.after.fieldsLeft[s.name] = await fieldsOf(s)
      result.after.othersReadable[s.name] = await countReadable(s, others)
      if (result.orderId !== null) {
        const res = await client.get<OrderView>(`${s.url}/orders/${result.orderId}`, signal)
        result.after.orderKept[s.name] =
          res.status === 200 && res.body.order.customerId === gone.id && res.body.customer?.customerId === gone.id && res.body.customer.email === undefined
      }
    }
    const again = await client.post<{ code?: string }>(
      `${services.orders.url}/customers`,
      { email: gone.email, address: gone.address },
      { signal, idempotent: true },
    )
    result.after.rewrite = { status: again.status, code: again.body.code ?? null }
    for (const s of list) result.after.search[s.name] = await searchService(dataRoot, s.name, customers, gone.id)
  } catch (err) {
    if (signal.aborted) throw err
    result.error = err instanceof Error ? err.message : String(err)
  }
  // A failure between the stop and the restart must not leave the service down for the rest of the run.
  if (down && !restartTried && offline !== undefined && !signal.aborted) {
    try {
      const back = await offline.restart()
      if (result.offline !== null) result.offline.pids.after = back.pid
    } catch (err) {
      result.error ??= `restarting ${offline.service}: ${err instanceof Error ? err.message : String(err)}`
    }
  }
  result.durationMs = Math.round(performance.now() - began)
  return result
}

/** Every file of a service's folder, and its log: no customer's email, email local part or address; the id as control. */
async function searchService(dataRoot: string, service: ServiceName, customers: DemoCustomer[], controlId: string): Promise<FolderSearch> {
  const needles = customers.flatMap((c) => [c.email, c.email.split('@')[0]!, c.address])
  return searchFiles([...(await filesUnder(join(dataRoot, service))), join(dataRoot, `${service}.log`)], needles, controlId)
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true })
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name))
}

/** A byte search: each file read whole (a file removed meanwhile, e.g. by a compaction, is skipped). */
export async function searchFiles(files: string[], needles: string[], control: string): Promise<FolderSearch> {
  const result: FolderSearch = { files: 0, bytes: 0, found: [], idFound: false }
  for (const file of files) {
    let bytes: Buffer
    try {
      bytes = await readFile(file)
    } catch {
      continue
    }
    result.files++
    result.bytes += bytes.length
    for (const needle of needles) if (bytes.includes(needle)) result.found.push(`${needle} in ${file}`)
    result.idFound ||= bytes.includes(control)
  }
  return result
}

/**
 * Once the services have stopped (their folders are no longer locked): every stored record of
 * `customers` in each folder, opened with the keys that folder holds. The forgotten customer's
 * email or address must open in none; the other customers' do (the folder holds their keys).
 */
export async function dumpFolders(dataRoot: string, p: PrivacyResult): Promise<void> {
  if (p.forgotten === null) return
  const gone = p.forgotten
  const others = p.customers.filter((c) => c.id !== gone.id).map((c) => c.email)
  p.dump = {}
  try {
    for (const service of SERVICE_NAMES) p.dump[service] = await dumpCounts(join(dataRoot, service), gone.email, others)
  } catch (err) {
    p.error ??= `dump: ${err instanceof Error ? err.message : String(err)}`
  }
}

/** Every stored record of `customers` in a closed folder: how many open the forgotten email, how many another customer's. */
async function dumpCounts(dir: string, forgotten: string, others: string[]): Promise<{ records: number; forgottenOpened: number; othersOpened: number }> {
  const counts = { records: 0, forgottenOpened: 0, othersOpened: 0 }
  for await (const record of dumpCollection(dir, 'customers')) {
    counts.records++
    const text = JSON.stringify(record.value ?? null)
    if (text.includes(forgotten)) counts.forgottenOpened++
    if (others.some((e) => text.includes(e))) counts.othersOpened++
  }
  return counts
}

/** The forget in a few lines of narration. */
export function describePrivacy(p: PrivacyResult): string[] {
  const per = <T>(m: Partial<Record<ServiceName, T>>, f: (v: T) => string): string =>
    SERVICE_NAMES.map((s) => `${s} ${m[s] === undefined ? '—' : f(m[s])}`).join(', ')
  const hits = (m: Partial<Record<ServiceName, FolderSearch>>): number => Object.values(m).reduce((n, s) => n + s.found.length, 0)
  const files = (m: Partial<Record<ServiceName, FolderSearch>>): string => {
    const all = Object.values(m)
    return `${all.reduce((n, s) => n + s.files, 0)} files, ${(all.reduce((n, s) => n + s.bytes, 0) / 1024 / 1024).toFixed(1)} MiB`
  }
  const lines: string[] = []
  if (p.forgotten !== null) {
    const n = p.customers.length
    lines.push(
      `customer ${p.forgotten.id} (${p.forgotten.email}) forgotten by ${p.forgotten.by} in ${p.forgetMs ?? '—'} ms; payments' forget → ${p.refusedForget.status} ${p.refusedForget.code ?? ''}`.trimEnd(),
      `before: every customer read in plain on ${per(p.before.readable, (v) => `${v}/${n}`)}; byte search of every file (${files(p.before.search)}): ${hits(p.before.search)} emails or addresses in plain; the customer id found on ${per(p.before.search, (s) => (s.idFound ? 'yes' : 'NO'))}`,
      `forget reached ${per(p.reachedMs, (ms) => formatMs(ms))}; personal fields left in get(): ${per(p.after.fieldsLeft, (f) => (f.length ? f.join('+') : 'none'))}; others read: ${per(p.after.othersReadable, (v) => `${v}/${n - 1}`)}`,
    )
    const offline = describeOffline(p)
    if (offline !== null) lines.push(offline)
    lines.push(
      `after: byte search (${files(p.after.search)}): ${hits(p.after.search)} in plain; order ${p.orderId ?? '—'} kept, naming the customer: ${per(p.after.orderKept, (ok) => (ok ? 'yes' : 'NO'))}; writing the customer again → ${p.after.rewrite.status} ${p.after.rewrite.code ?? ''}`.trimEnd(),
    )
  }
  const dump = describeDump(p)
  if (dump !== null) lines.push(dump)
  if (p.error) lines.push(`privacy checks failed: ${p.error}`)
  return lines
}

/** The service offline during the forget in one line (null: none was stopped). */
export function describeOffline(p: PrivacyResult): string | null {
  const o = p.offline
  if (o === null) return null
  const held =
    o.heldWhileDown === null ? 'not dumped' : `opened the forgotten email in ${o.heldWhileDown.forgottenOpened} of ${o.heldWhileDown.records} records`
  const back =
    o.pids.after === null
      ? 'NOT restarted'
      : `restarted on the same folder (pid ${o.pids.before} → ${o.pids.after}, down ${o.downMs === null ? '—' : formatMs(o.downMs)}): ${o.forgotMs === null ? 'its get() STILL returned the email' : `the email gone from its get() ${formatMs(o.forgotMs)} after it came back`}`
  return `${o.service} was offline during the forget: its stopped folder ${held}; ${back}`
}

/** The dump of the stopped folders in one line (null: not done). */
export function describeDump(p: PrivacyResult): string | null {
  if (p.dump === null) return null
  const per = (f: (d: { records: number; forgottenOpened: number; othersOpened: number }) => string): string =>
    SERVICE_NAMES.map((s) => `${s} ${p.dump![s] === undefined ? '—' : f(p.dump![s])}`).join(', ')
  return `dump of every stored customer record once the services stopped: the forgotten email opens in ${per((d) => `${d.forgottenOpened}/${d.records}`)} records; other customers' in ${per((d) => `${d.othersOpened}/${d.records}`)}`
}
