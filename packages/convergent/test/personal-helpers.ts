// Shared by the personal-field tests: replicas on a LoopbackHub with classic-level folders
// (closed and removed after each test), and a folder's subject keys taken away and given back
// (as on a replica the keys have not reached yet).
import { join } from 'node:path'
import { LoopbackHub, Replica, silentLogger, type PersonalOptions, type ReplicaOptions } from '@convergent/core'
import { storedSubjectKeys } from '@convergent/core/internal'
import { classicLevelStore, type LevelStore } from '@convergent/level'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { tempDir } from './helpers.js'

export interface Customer {
  customerId: string
  name?: string
  email?: string
  address?: string
}
export const PERSONAL: PersonalOptions<Customer> = { subject: (c) => c.customerId, fields: ['email', 'address'] }

export interface PersonalNode {
  replica: Replica
  store: LevelStore
  dir: string
}

/** Call inside a describe(): registers an afterEach that closes every replica and removes every folder. */
export function personalSuite(prefix: string): {
  folder(): Promise<string>
  /** A replica `id` on `hub` in a new folder (or `dir`), with `options` added (e.g. trust). */
  start(hub: LoopbackHub, id: string, dir?: string, options?: Partial<ReplicaOptions>): Promise<PersonalNode>
  close(node: PersonalNode): Promise<void>
} {
  let opened: Replica[] = []
  let cleanups: (() => Promise<void>)[] = []
  afterEach(async function () {
    await Promise.all(opened.map((r) => r.close().catch(() => undefined)))
    opened = []
    await Promise.all(cleanups.map((c) => c()))
    cleanups = []
  })
  const folder = async (): Promise<string> => {
    const t = await tempDir(prefix)
    cleanups.push(t.cleanup)
    return t.dir
  }
  return {
    folder,
    async start(hub, id, dir, options = {}) {
      dir ??= await folder()
      const store = classicLevelStore(join(dir, 'db'))
      const replica = await Replica.open({
        store,
        backends: [yjsBackend(), automergeBackend()],
        network: hub.createNetwork(id),
        logger: silentLogger,
        syncIntervalMs: 0,
        ...options,
      })
      opened.push(replica)
      return { replica, store, dir }
    },
    async close(node) {
      await node.replica.close()
      opened = opened.filter((r) => r !== node.replica)
    },
  }
}

/** Removes every subject key from a closed folder; returns them (meta key, record). */
export async function takeKeys(dir: string): Promise<[string, Uint8Array][]> {
  const s = classicLevelStore(join(dir, 'db'))
  await s.open()
  const out: [string, Uint8Array][] = []
  for (const id of (await storedSubjectKeys(s)).keys()) out.push([`personal/k/${id}`, (await s.getMeta(`personal/k/${id}`))!])
  await s.write(out.map(([key]) => ({ type: 'delMeta' as const, key })))
  await s.close()
  return out
}

/** Puts keys takeKeys() removed back into a closed folder. */
export async function giveKeys(dir: string, keys: [string, Uint8Array][]): Promise<void> {
  const s = classicLevelStore(join(dir, 'db'))
  await s.open()
  await s.write(keys.map(([key, bytes]) => ({ type: 'meta' as const, key, bytes })))
  await s.close()
}
