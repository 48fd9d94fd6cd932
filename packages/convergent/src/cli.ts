#!/usr/bin/env node
// `convergent`: look inside a service's data folder — its collections, entities and change
// feed — without writing code, and drop a collection. It opens the store with no network;
// LevelDB allows one process per folder, so stop the service first (a clear error says so).
// `convergent cluster-key` prints a new cluster key; `convergent pseudonym` keyed pseudonyms;
// `convergent audit` lists who changed what, re-verifying each signed change's author offline,
// or with --reads who read which personal fields (the read audit).
import { existsSync, lstatSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Command, InvalidArgumentError } from 'commander'
import { isConvergentError, sha256, silentLogger, toHex, type FeedEntry, type Replica } from '@convergent/core'
import { checkProof } from '@convergent/core/internal'
import { recryptStore } from '@convergent/level'
import { verifyPeerSignature } from '@convergent/libp2p'
import { generateClusterKey } from './cluster.js'
import { open } from './open.js'
import { pseudonym } from './pseudonym.js'
import { dumpCollection } from './dump.js'
import { folderIdentity } from './folder-identity.js'

function count(value: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer')
  return n
}

/**
 * Opens the replica in `dir` with no network, runs fn, always closes it. To look (`inspect`, the
 * default), a damaged record fails the command (ERR_STORE_CORRUPT naming it) and stays where it
 * is; to change the folder (drop), it is moved aside as the service does.
 */
async function withReplica<R>(dir: string, fn: (replica: Replica) => Promise<R>, inspect = true): Promise<R> {
  const path = dataDir(dir)
  const keyFile = program.opts<{ keyFile?: string }>().keyFile
  const replica = await open({ dir: path, network: false, logger: silentLogger, inspect, ...(keyFile === undefined ? {} : { encryption: { keyFile } }) })
  try {
    return await fn(replica)
  } finally {
    await replica.close()
  }
}

function dataDir(dir: string): string {
  const path = resolve(dir)
  if (existsSync(path) && !statSync(path).isDirectory()) throw new CliError(`${path} is a file, not a data folder. Pass the dir given to open({ dir }).`)
  // db may be missing with the folders of an interrupted encrypt/rekey/decrypt beside it (or be a
  // link to a folder renamed aside by one): let open() or the command say what to do then.
  const db = join(path, 'db')
  if (!isThere(db) && !existsSync(`${db}.convergent-old`) && !existsSync(`${db}.convergent-new`)) {
    throw new CliError(`${path} holds no Convergent data (no db/ folder). Pass the dir given to open({ dir }).`)
  }
  return path
}

/** Whether `path` names anything, a symbolic link to a missing target included. */
function isThere(path: string): boolean {
  try {
    lstatSync(path)
    return true
  } catch {
    return false
  }
}

/** The collection as stored: its name must exist (opening an unknown one would create it). */
function existing(replica: Replica, name: string): ReturnType<Replica['collection']> {
  if (!replica.collections().includes(name)) {
    throw new CliError(`no collection '${name}'; this replica has: ${replica.collections().join(', ') || '(none)'}`)
  }
  return replica.collection(name)
}

class CliError extends Error {}

// `… | head` closes stdout early: stop quietly instead of crashing with EPIPE.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err
  process.exit(0)
})

const out = (line: string): boolean => process.stdout.write(line + '\n')

const program = new Command()
program
  .name('convergent')
  .description(
    "Inspect a Convergent replica's data folder (collections, entities, change feed, stored records, audit trail of changes and of personal-field reads), drop a collection, encrypt / rekey / decrypt it at rest (stop the service using it first); make a cluster key or keyed pseudonyms.",
  )
  .showHelpAfterError()
  .option('--key-file <file>', 'the folder is encrypted at rest: its key (64 hex characters) is in this file')

program
  .command('collections')
  .description('each collection with its backend and number of live entities')
  .argument('<dir>', 'the data folder given to open({ dir })')
  .option('--json', 'one JSON object per line')
  .action(async (dir: string, opts: { json?: boolean }) => {
    await withReplica(dir, async (replica) => {
      for (const name of replica.collections().sort()) {
        const col = replica.collection(name)
        let entities = 0
        for await (const _ of col.keys()) entities++
        if (opts.json === true) out(JSON.stringify({ name, backend: col.backend, entities }))
        else out(`${name}\t${col.backend}\t${entities} ${entities === 1 ? 'entity' : 'entities'}`)
      }
    })
  })

program
  .command('ls')
  .description('ids of the live entities of a collection (with --values, id and value as JSON lines)')
  .argument('<dir>', 'the data folder')
  .argument('<collection>', 'collection name')
  .option('--values', 'print [id, value] JSON lines')
  .option('--limit <n>', 'at most n entities', count)
  .action(async (dir: string, name: string, opts: { values?: boolean; limit?: number }) => {
    await withReplica(dir, async (replica) => {
      const col = existing(replica, name)
      let n = 0
      for await (const [id, value] of opts.values === true ? col.entries() : mapKeys(col.keys())) {
        if (opts.limit !== undefined && n++ >= opts.limit) break
        out(opts.values === true ? JSON.stringify([id, value]) : id)
      }
    })
  })

program
  .command('get')
  .description("an entity's value as JSON (exit code 1 if there is none)")
  .argument('<dir>', 'the data folder')
  .argument('<collection>', 'collection name')
  .argument('<id>', 'entity id')
  .action(async (dir: string, name: string, id: string) => {
    await withReplica(dir, async (replica) => {
      const value = await existing(replica, name).get(id)
      if (value === undefined) throw new CliError(`no entity '${id}' in '${name}' (never written, or deleted)`)
      out(JSON.stringify(value, null, 2))
    })
  })

program
  .command('dump')
  .description(
    'every stored snapshot and delta of a collection, as the value each leaves (JSON lines); personal fields open only with subject keys this folder holds',
  )
  .argument('<dir>', 'the data folder')
  .argument('<collection>', 'collection name')
  .action(async (dir: string, name: string) => {
    const keyFile = program.opts<{ keyFile?: string }>().keyFile
    for await (const r of dumpCollection(dataDir(dir), name, keyFile === undefined ? {} : { encryption: { keyFile } })) out(JSON.stringify(r))
  })

program
  .command('feed')
  .description('the change feed of a collection: every applied change with its origin, as JSON lines')
  .argument('<dir>', 'the data folder')
  .argument('<collection>', 'collection name')
  .option('--since <seq>', 'only changes after this sequence number', count, 0)
  .option('--limit <n>', 'at most n changes', count)
  .action(async (dir: string, name: string, opts: { since: number; limit?: number }) => {
    await withReplica(dir, async (replica) => {
      let n = 0
      for await (const entry of existing(replica, name).changes({ since: opts.since })) {
        if (opts.limit !== undefined && n++ >= opts.limit) break
        out(JSON.stringify({ ...entry, time: new Date(entry.time).toISOString() }))
      }
    })
  })

const AUDIT_ATTRIBUTION =
  "Each change's author and signature, re-verified here offline. 'verified': a write gossiped in a cluster with admins, signed by its author — the signed push this replica kept as proof verifies under the author's peer key and names this collection and entity (then the first 16 hex characters of the SHA-256 of the delta it signs); or, with Automerge, a change anti-entropy brought that one signed head of its author covers — the head this replica kept verifies under the author's peer key, names this collection and entity, and its actor is the author's (then the head's change hash: the author's newest change of that actor held here; that it covers this change was checked when the change arrived); or the heads of several authors (an entity written by several replicas that came whole): each checked so, the authors listed, the entry's origin the peer that relayed it (which nothing signs). 'TAMPERED: why': the proof the entry names is missing, undecodable, does not verify, or names another author, collection, entity (or namespace, with --namespace). 'unsigned: vouched by <peer>': a change anti-entropy brought (or gossip where nothing is signed: no cluster with admins) — that writer vouched for it, its author did not sign it. 'local': written on this replica."

const READ_AUDIT_NOTE =
  "Each entry: when, entity id, subject (the pseudonym personal.subject returns, not a name), the personal fields opened, how (get, entries, update, subscribe), this replica's peer id, and the actor the caller passed (not authenticated; '-' if none). Only reads on this replica; entries of the last group commit before a crash may be missing."

program
  .command('audit')
  .description(
    `who changed what and when: the change feed of a collection (optionally of one entity), oldest first — seq, time, entity id, kind, author, signature; exit code 1 if any entry is TAMPERED. ${AUDIT_ATTRIBUTION}`,
  )
  .argument('<dir>', 'the data folder')
  .argument('<collection>', 'collection name')
  .argument('[id]', 'only changes of this entity')
  .option('--since <seq>', 'only entries after this sequence number (of the change feed, or with --reads of the read audit)', count, 0)
  .option('--json', 'one JSON object per line, after the header lines (which start with #)')
  .option(
    '--namespace <namespace>',
    "also check that each signed change was signed for this namespace (the replica's open({ namespace }); the folder does not record it)",
  )
  .option(
    '--reads',
    `instead of changes, the read audit: reads of personal fields in collections opened with personal: { auditReads: true }. ${READ_AUDIT_NOTE}`,
  )
  .action(async (dir: string, name: string, id: string | undefined, opts: { since: number; json?: boolean; reads?: boolean; namespace?: string }) => {
    const path = dataDir(dir)
    if (opts.reads === true) return auditReads(dir, path, name, id, opts)
    const identity = await folderIdentity(path)
    const self = identity.peerId
    const tampered = await withReplica(dir, async (replica) => {
      const col = existing(replica, name)
      out(
        `# audit of '${name}'${id === undefined ? '' : ` entity '${id}'`} in ${path}; this replica is ${identity.peerId ?? `(${identity.why}: peer id unknown)`}`,
      )
      out(`# ${AUDIT_ATTRIBUTION}`)
      out(opts.namespace === undefined ? '# namespace: not checked (pass --namespace)' : `# namespace: '${opts.namespace}'`)
      if (opts.json !== true) out('# seq\ttime\tid\tkind\tauthor\tsignature')
      const verdictOf = auditor(replica, name, opts.namespace, self)
      const counts = { verified: 0, tampered: 0, unsigned: 0, local: 0 }
      for await (const entry of col.changes({ since: opts.since })) {
        if (id !== undefined && entry.id !== id) continue
        const v = await verdictOf(entry)
        counts[v.signature]++
        const time = new Date(entry.time).toISOString()
        if (opts.json === true) {
          out(
            JSON.stringify({
              seq: entry.seq,
              time,
              id: entry.id,
              kind: entry.kind,
              origin: entry.origin,
              ...(entry.proof === undefined ? {} : { proof: entry.proof }),
              ...v,
            }),
          )
          continue
        }
        const status =
          v.signature === 'verified'
            ? v.authors !== undefined
              ? `verified (heads of ${v.authors.length} authors, relayed by ${entry.origin})`
              : entry.proof?.startsWith('h:') === true
                ? `verified (head ${v.deltaHash.slice(0, 16)})`
                : `verified (delta ${v.deltaHash.slice(0, 16)})`
            : v.signature === 'tampered'
              ? `TAMPERED: ${v.why}`
              : v.signature === 'unsigned'
                ? `unsigned: vouched by ${entry.origin}`
                : `local (${self ?? 'peer id unknown'})`
        out([entry.seq, time, cell(entry.id), entry.kind, cell(v.author ?? '-'), cell(status)].join('\t'))
      }
      const n = counts.verified + counts.tampered + counts.unsigned + counts.local
      out(
        `# ${n} ${n === 1 ? 'change' : 'changes'}: ${counts.verified} verified, ${counts.tampered} TAMPERED, ${counts.unsigned} unsigned, ${counts.local} local`,
      )
      return counts.tampered
    })
    // After the full listing: a tampered entry fails the command (scripts and CI see it).
    if (tampered > 0)
      throw new CliError(
        `${tampered} ${tampered === 1 ? 'change' : 'changes'} of '${name}' TAMPERED: ${tampered === 1 ? 'its' : 'their'} stored proof does not verify (see the listing)`,
      )
  })

/** Characters a text row must not carry as they are: C0 and C1 controls (tab, newline, ESC …), DEL, line separators, bidi overrides; and the quote and backslash, which quoting uses. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what must not reach the terminal
const UNSAFE_IN_ROW = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069"\\]/
const UNSAFE_AFTER_JSON = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

/**
 * A string someone else chose (an entity id, an author, a reason quoting a signed payload) as
 * one cell of a tab-separated audit row: as it is if plain, else as a JSON string with every
 * control character escaped — so it can neither add a row or a column nor drive the terminal.
 */
function cell(s: string): string {
  if (!UNSAFE_IN_ROW.test(s)) return s
  return JSON.stringify(s).replace(UNSAFE_AFTER_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** One audited entry: who made it, and what re-verifying its signature found. */
type Verdict =
  /** `authors`: a change of several authors (each verified by its head), relayed by the entry's origin. */
  | { signature: 'verified'; author: string; deltaHash: string; authors?: string[] }
  | { signature: 'tampered'; author: string; why: string }
  | { signature: 'unsigned'; author: null }
  | { signature: 'local'; author: string | null }

/**
 * Re-verifies feed entries against the proofs they name. Many entries share a push, so each
 * proof record is read, and its signature checked, once per run.
 */
function auditor(replica: Replica, collection: string, namespace: string | undefined, self: string | undefined): (entry: FeedEntry) => Promise<Verdict> {
  const records = new Map<string, Promise<Uint8Array | undefined>>()
  const signatures = new Map<string, Promise<boolean>>()
  const once = <T>(cache: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> => {
    if (!cache.has(key)) cache.set(key, make())
    return cache.get(key)!
  }
  return async (entry) => {
    if (entry.origin === 'local') return { signature: 'local', author: self ?? null }
    const proofId = entry.proof
    // No proof: anti-entropy brought it; the sending writer (origin) vouched for it.
    if (proofId === undefined) return { signature: 'unsigned', author: null }
    // A head (h:…) is stored per entity: its record and verdict are the entry's own.
    const key = proofId.startsWith('h:') ? `${proofId}\u0000${entry.id}` : proofId
    const record = await once(records, key, () => replica.proofOf(collection, proofId, entry.id))
    const check = await checkProof(
      record,
      proofId,
      { ...(namespace === undefined ? {} : { namespace }), collection, id: entry.id, author: entry.origin },
      // Same signer, signed bytes and signature: the same verdict, for every entry naming the proof.
      // The bytes are part of the key: a proof of several heads checks several signatures, and a
      // forged head may carry another's signature over other bytes.
      (peer, data, signature) =>
        once(signatures, `${peer}\u0000${toHex(sha256(data))}\u0000${toHex(signature)}`, () => verifyPeerSignature(peer, data, signature)),
    )
    if (!check.ok) return { signature: 'tampered', author: entry.origin, why: check.why }
    return check.authors === undefined
      ? { signature: 'verified', author: check.author, deltaHash: toHex(check.deltaHash) }
      : { signature: 'verified', author: check.authors.join(','), deltaHash: toHex(check.deltaHash), authors: check.authors }
  }
}

/** `audit --reads`: the read audit of one collection (of one entity), oldest first. */
async function auditReads(dir: string, path: string, name: string, id: string | undefined, opts: { since: number; json?: boolean }): Promise<void> {
  await withReplica(dir, async (replica) => {
    // A collection may have been dropped since its reads were recorded: no existing() check.
    out(`# reads of personal fields of '${name}'${id === undefined ? '' : ` entity '${id}'`} recorded in ${path}`)
    out(`# ${READ_AUDIT_NOTE}`)
    if (opts.json !== true) out('# seq\ttime\tid\tsubject\tfields\tvia\tpeer\tactor')
    let n = 0
    for await (const e of replica.readAudit({ since: opts.since, collection: name })) {
      if (id !== undefined && e.id !== id) continue
      n++
      const time = new Date(e.time).toISOString()
      if (opts.json === true) out(JSON.stringify({ ...e, time }))
      else out([e.seq, time, cell(e.id), cell(e.subject), cell(e.fields.join(',')), e.via, cell(e.peer), cell(e.actor ?? '-')].join('\t'))
    }
    if (n === 0 && !replica.collections().includes(name)) {
      throw new CliError(`no collection '${name}' and no reads of it recorded; this replica has: ${replica.collections().join(', ') || '(none)'}`)
    }
    out(`# ${n} ${n === 1 ? 'read' : 'reads'}`)
  })
}

program
  .command('drop')
  .description('remove a collection and everything this replica holds of it; peers cannot bring it back here until the service opens it again')
  .argument('<dir>', 'the data folder')
  .argument('<collection>', 'collection name')
  .action(async (dir: string, name: string) => {
    await withReplica(
      dir,
      async (replica) => {
        existing(replica, name)
        await replica.dropCollection(name)
        out(`dropped '${name}'`)
      },
      false,
    )
  })

program
  .command('encrypt')
  .description(
    'encrypt a plain data folder at rest, in place (stop the service first): every record is re-sealed with XChaCha20-Poly1305 into a new folder, which then replaces the old one (crash-safe: run it again after a crash). Then open it with open({ encryption: { keyFile } })',
  )
  .argument('<dir>', 'the data folder')
  .requiredOption('--new-key-file <file>', 'the key to encrypt with (64 hex characters; `openssl rand -hex 32`)')
  .action(async (dir: string, opts: { newKeyFile: string }) => {
    // --key-file names a current key: a plain folder has none (the new one is --new-key-file).
    if (program.opts<{ keyFile?: string }>().keyFile !== undefined) {
      throw new CliError(`encrypt takes the key to encrypt with as --new-key-file, not --key-file (a plain folder has no current key); nothing was written`)
    }
    const result = await recryptStore(join(dataDir(dir), 'db'), undefined, { keyFile: opts.newKeyFile }).catch((err: unknown) => {
      if (isConvergentError(err) && err.code === 'ERR_ENCRYPTED') {
        throw new CliError(
          `${dir} is already encrypted at rest; nothing was written. To change its key: npx convergent rekey ${dir} --key-file <current key file> --new-key-file <file>`,
        )
      }
      throw err
    })
    out(result.resumed ? 'finished an interrupted run' : `encrypted ${result.records} records (key id ${result.keyId})`)
  })

program
  .command('rekey')
  .description(
    'rotate the at-rest key of an encrypted data folder, in place (stop the service first; crash-safe like encrypt). Copies made under the old key (backups) stay readable with it',
  )
  .argument('<dir>', 'the data folder')
  .requiredOption('--new-key-file <file>', 'the new key (64 hex characters)')
  .action(async (dir: string, opts: { newKeyFile: string }) => {
    const keyFile = program.opts<{ keyFile?: string }>().keyFile
    if (keyFile === undefined) throw new CliError('rekey needs the current key: --key-file <file> (before the command name or after it)')
    const result = await recryptStore(join(dataDir(dir), 'db'), { keyFile }, { keyFile: opts.newKeyFile })
    out(result.resumed ? 'finished an interrupted run' : `re-encrypted ${result.records} records (key id ${result.keyId})`)
  })

program
  .command('decrypt')
  .description(
    'decrypt an encrypted data folder at rest, in place (stop the service first; crash-safe like encrypt): the inverse of encrypt. Then open it without a key. Copies made under the key (backups) stay encrypted',
  )
  .argument('<dir>', 'the data folder')
  .action(async (dir: string) => {
    const keyFile = program.opts<{ keyFile?: string }>().keyFile
    if (keyFile === undefined) throw new CliError('decrypt needs the current key: --key-file <file> (before the command name or after it)')
    const result = await recryptStore(join(dataDir(dir), 'db'), { keyFile }, undefined).catch((err: unknown) => {
      if (isConvergentError(err) && err.code === 'ERR_NOT_ENCRYPTED')
        throw new CliError(`${dir} is stored in plain already: nothing to decrypt, nothing was written`)
      throw err
    })
    out(result.resumed ? 'finished an interrupted run' : `decrypted ${result.records} records`)
  })

program
  .command('cluster-key')
  .description(
    'print a new cluster key (32 random bytes as 64 hex characters) for open({ cluster: { key } }): give every replica of the cluster the same one, and keep it secret — whoever has it can join',
  )
  .action(() => {
    out(generateClusterKey())
  })

program
  .command('pseudonym')
  .description(
    "print the keyed pseudonym (pseudonym() in the API: HMAC-SHA256, 26 base32 characters) of each value, one a line; with no values, of each line of stdin (values on the command line land in the shell's history)",
  )
  .argument('[values...]', 'natural keys, e.g. email addresses (taken as they are: normalise them first)')
  .requiredOption('--pseudonym-key-file <file>', 'the pseudonym key (64 hex characters; a key of its own, not the at-rest key)')
  .option('--namespace <namespace>', "pseudonym()'s namespace option", '')
  .action(async (values: string[], opts: { pseudonymKeyFile: string; namespace: string }) => {
    let key: string
    try {
      key = readFileSync(opts.pseudonymKeyFile, 'utf8')
    } catch (err) {
      throw new CliError(`could not read the pseudonym key file ${opts.pseudonymKeyFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
    }
    let inputs: Iterable<string> = values
    if (values.length === 0) {
      let text = ''
      for await (const chunk of process.stdin) text += String(chunk)
      inputs = text
        .split('\n')
        .map((line) => line.replace(/\r$/, ''))
        .filter((line) => line.length > 0)
    }
    for (const value of inputs) out(pseudonym(key, value, { namespace: opts.namespace }))
  })

async function* mapKeys(keys: AsyncIterable<string>): AsyncGenerator<[string, undefined]> {
  for await (const id of keys) yield [id, undefined]
}

program.parseAsync().catch((err: unknown) => {
  // Expected failures (bad folder, locked store, unknown names) get one line, not a stack.
  const message = err instanceof CliError ? err.message : isConvergentError(err) ? `${err.code}: ${err.message}` : String((err as Error)?.stack ?? err)
  process.stderr.write(`convergent: ${message}\n`)
  process.exitCode = 1
})
