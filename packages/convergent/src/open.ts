import { join } from 'node:path'
import { Replica, type Logger, type Network, type ReplicaOptions, type Store, ConvergentError } from '@convergent/core'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { checkEncryptedFolder, classicLevelStore, interruptedSwap, memoryLevelStore, readEncryptionKey, type EncryptionOptions } from '@convergent/level'
import { createLibp2pNetwork, isVerifiablePeerId, Libp2pNetwork, verifyPeerSignature, type Libp2pNetworkOptions } from '@convergent/libp2p'
import { Registry } from 'prom-client'
import { clusterOf, type ClusterOptions, type NetworkClusterOptions } from './cluster.js'
import { checkMetricsOptions, createMetrics, type MetricsOptions } from './metrics.js'
import { loggerOf, type LogLevel } from './log.js'
import { checkDataDir, makeDataDir } from './data-dir.js'

/** What open() returns: the Replica, with its Prometheus registry. */
export type ReplicaWithMetrics = Replica & {
  /**
   * This replica's Prometheus registry (prom-client): the `convergent_*` metrics and the
   * process's default metrics. serve() exposes it at GET /metrics; or read it yourself with
   * `await replica.metrics.metrics()`. Empty with open({ metrics: false }).
   */
  readonly metrics: Registry
}

/**
 * What a resolved write survives. 'fsync': a power loss or kernel crash too — every LevelDB
 * batch is fsynced before its writes resolve (group commit shares one fsync among the writes
 * of a tick). 'process': a crash of the process, even SIGKILL — the batch has reached the
 * operating system, not the disk, so a power loss or kernel crash can take back the last
 * writes.
 */
export type Durability = 'fsync' | 'process'

const DURABILITIES: readonly Durability[] = ['fsync', 'process']

export interface OpenOptions extends Omit<ReplicaOptions, 'store' | 'backends' | 'network'> {
  /**
   * @internal For tools that look into a folder (the CLI): a damaged record fails the read
   * (ERR_STORE_CORRUPT naming it) instead of being moved aside, so the folder stays as it was.
   * LevelDB opens a private snapshot of `dir`/db (classicLevelStore, inspect.ts), not the folder;
   * nothing is created in `dir`, and one with no store fails with ERR_STORE.
   */
  inspect?: boolean
  /** LevelDB folder (created if missing); omitted → everything in memory. */
  dir?: string
  /** What a resolved write survives: 'fsync' (default; power loss too) or 'process'. See Durability. */
  durability?: Durability
  /** Addresses to listen on. Default ['/ip4/127.0.0.1/tcp/0'] (loopback, a free port). */
  listen?: string[]
  /** Bootstrap peers (multiaddrs with /p2p/<id>); redialled with backoff when they go away. */
  peers?: string[]
  /** false → no network: a replica on its own. A Network → use that one. Default: libp2p. */
  network?: false | Network
  /** Backend of collections opened without one: 'yjs' (default) or 'automerge'. */
  defaultBackend?: 'yjs' | 'automerge'
  /**
   * `{ key }`: only processes with the same 32-byte key can connect (see ClusterOptions).
   * Omitted → development mode: any process that reaches the port and knows the namespace
   * joins, and open() logs a warning saying so. Applies to the libp2p node open() builds; with
   * `network` passed in, give that network the key (createLibp2pNetwork({ clusterKey })) and
   * pass `cluster: { admins }` alone (NetworkClusterOptions) for the policy.
   */
  cluster?: ClusterOptions | NetworkClusterOptions
  /**
   * More settings for the libp2p node open() builds: connectionGater, connectionManager,
   * redialMinMs / redialMaxMs, maxMessageBytes, requestTimeoutMs. listen, peers, namespace,
   * the identity file and the cluster key come from the options above.
   */
  libp2p?: Omit<Libp2pNetworkOptions, 'listen' | 'peers' | 'namespace' | 'identityFile' | 'privateKey' | 'clusterKey'>
  /**
   * Prometheus metrics in `replica.metrics` (see MetricsOptions: the bound on collection
   * labels, the process metrics). false → an empty registry: nothing is counted or timed.
   * Default: on.
   */
  metrics?: false | MetricsOptions
  /**
   * Encryption at rest: `{ key }` (32 bytes, or 64 hex characters) or `{ keyFile }` (a file
   * holding the 64 hex characters, read by open()). Every value the store writes is sealed with
   * XChaCha20-Poly1305 (libsodium); entity ids and collection names stay visible (they are LevelDB's keys). A
   * folder remembers whether it is encrypted and with which key: a wrong key rejects with
   * ERR_WRONG_KEY, none for an encrypted folder with ERR_ENCRYPTED, one for a plain folder with
   * ERR_NOT_ENCRYPTED — before anything in the folder is written. Omitted → stored in plain.
   */
  encryption?: EncryptionOptions
  /**
   * Level of the default logger (pino, JSON lines on stderr): 'debug', 'info', 'warn' (default),
   * 'error' or 'silent'. With `logger` given, set the level there instead.
   */
  logLevel?: LogLevel
}

/** Every option open() takes (checked against OpenOptions below: a name added there must be added here). */
const OPTION_NAMES = [
  'dir',
  'durability',
  'listen',
  'peers',
  'network',
  'defaultBackend',
  'cluster',
  'libp2p',
  'metrics',
  'encryption',
  'logger',
  'logLevel',
  'inspect',
  'bootstrapWarnMs',
  'clock',
  'namespace',
  'cacheSize',
  'compactAfter',
  'syncIntervalMs',
  'syncOnConnect',
  'pushDelayMs',
  'limits',
  'trust',
  'tracerProvider',
  'readAudit',
  'personalCipher',
] as const satisfies readonly (keyof OpenOptions)[]
// Fails to compile while an option of OpenOptions is missing from OPTION_NAMES.
const everyOptionNamed: Exclude<keyof OpenOptions, (typeof OPTION_NAMES)[number]> extends never ? true : never = true
void everyOptionNamed

/**
 * Opens a replica with the defaults: a LevelDB store in `dir` (memory if omitted), the Yjs and
 * Automerge backends, and a libp2p node (TCP on 127.0.0.1, noise, yamux, gossipsub) whose
 * identity is kept in `dir`, so the peer id survives restarts; with `cluster: { key }`, a
 * private network on every connection.
 */
export async function open(options: OpenOptions = {}): Promise<ReplicaWithMetrics> {
  const {
    dir,
    durability = 'fsync',
    listen,
    peers,
    network,
    defaultBackend,
    libp2p,
    cluster,
    metrics,
    encryption,
    logger: given,
    logLevel,
    inspect,
    ...rest
  } = options
  const unknown = Object.keys(options).filter((key) => !(OPTION_NAMES as readonly string[]).includes(key))
  if (unknown.length > 0) {
    // A misspelt `dir` would otherwise run in memory and lose everything at exit.
    throw new ConvergentError(
      'ERR_INVALID_ARGUMENT',
      `open() has no option ${unknown.map((k) => JSON.stringify(k)).join(', ')} (its options: ${OPTION_NAMES.join(', ')}).`,
    )
  }
  if (dir !== undefined && (typeof dir !== 'string' || dir.length === 0)) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', 'open({ dir }) needs a folder path (or omit dir to keep everything in memory).')
  }
  if (!DURABILITIES.includes(durability)) {
    throw new ConvergentError(
      'ERR_INVALID_ARGUMENT',
      `open({ durability }) is 'fsync' (the default: a resolved write survives a power loss) or 'process' (it survives a crash of the process, not of the machine), got ${JSON.stringify(durability)}.`,
    )
  }
  if (metrics !== false) checkMetricsOptions(metrics)
  const logger = loggerOf({ logger: given, logLevel })
  const clusterOptions = cluster === undefined ? undefined : clusterOf(cluster, network)
  const clusterKey = clusterOptions?.key
  if ((libp2p as { clusterKey?: unknown } | undefined)?.clusterKey !== undefined) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', 'pass the cluster key as open({ cluster: { key } }), not in open({ libp2p }).')
  }
  if (defaultBackend !== undefined && defaultBackend !== 'yjs' && defaultBackend !== 'automerge') {
    // A collection keeps the backend it was made with: a typo here would fix the wrong one for good.
    throw new ConvergentError('ERR_INVALID_ARGUMENT', `open({ defaultBackend }) is 'yjs' (the default) or 'automerge', got ${JSON.stringify(defaultBackend)}.`)
  }
  if (network === false && clusterOptions?.admins !== undefined) {
    throw new ConvergentError(
      'ERR_INVALID_ARGUMENT',
      'open({ cluster: { admins } }) needs the network: with network: false this replica has no key to sign a policy with, and no peers to check one from. Omit admins (or network: false).',
    )
  }
  const backends = defaultBackend === 'automerge' ? [automergeBackend(), yjsBackend()] : [yjsBackend(), automergeBackend()]
  // Read and checked before anything starts (the key is not echoed in errors).
  const atRest = encryption === undefined ? undefined : { encryption: { key: readEncryptionKey(encryption) } }
  // To look (inspect), nothing is created: a folder with no store is refused by the store.
  if (dir !== undefined) await (inspect === true ? checkDataDir(dir) : makeDataDir(dir))
  if (dir !== undefined && interruptedSwap(join(dir, 'db'))) {
    // Opening would create an empty store where the data is about to be swapped in.
    throw new ConvergentError(
      'ERR_STORE',
      `${dir}: a \`convergent encrypt\` or \`rekey\` was interrupted while swapping folders (db/ is missing, db.convergent-new and db.convergent-old are there). Run the same command again to finish it; nothing is lost.`,
    )
  }
  // The key against the folder before anything else is written into it (the peer identity).
  // It also refuses a missing db beside only one of those two folders (the other lost): the
  // data is in it, and an empty db created here would hide it.
  if (dir !== undefined) checkEncryptedFolder(join(dir, 'db'), atRest?.encryption.key, inspect === true)
  // The network first: building it can fail (a damaged identity file, a bad namespace or peer
  // address), and classic-level locks its folder as soon as the store is constructed — a
  // failure after that would leave the folder locked for the rest of the process.
  let net: Network | undefined
  if (network === false) net = undefined
  else if (network !== undefined) net = network
  else {
    net = await createLibp2pNetwork({
      ...libp2p,
      listen: listen ?? ['/ip4/127.0.0.1/tcp/0'],
      peers: peers ?? [],
      namespace: options.namespace ?? 'default',
      ...(dir !== undefined ? { identityFile: join(dir, 'peer-id.key') } : {}),
      ...(clusterKey === undefined ? {} : { clusterKey }),
    })
  }
  let store: Store | undefined
  let replica: Replica
  try {
    const inspecting = inspect === true ? { inspect: true } : {}
    store =
      dir !== undefined
        ? classicLevelStore(join(dir, 'db'), { sync: durability === 'fsync', ...atRest, ...inspecting })
        : memoryLevelStore({ ...atRest, ...inspecting })
    const admins = clusterOptions?.admins
    const trust =
      admins === undefined || !(net instanceof Libp2pNetwork) || net.sign === undefined
        ? undefined
        : { admins, sign: net.sign, verify: verifyPeerSignature, isPeerId: isVerifiablePeerId }
    replica = await Replica.open({
      ...rest,
      logger,
      store,
      backends,
      ...(net ? { network: net } : {}),
      ...(trust ? { trust } : {}),
    })
  } catch (err) {
    // Replica.open closes what it was given when it fails, but not if it throws before taking
    // it over; both are safe to do twice. A network we were handed is the caller's to stop.
    await store?.close().catch(() => undefined)
    if (network === undefined) await net?.stop().catch(() => undefined)
    throw err
  }
  if (network === undefined && clusterKey === undefined) warnUnauthenticated(replica, logger, rest.namespace)
  const registry = metrics === false ? new Registry() : createMetrics(replica, metrics)
  Object.defineProperty(replica, 'metrics', { value: registry, enumerable: false })
  return replica as ReplicaWithMetrics
}

/** Development mode, once per open(): the replica's logger says what anyone who reaches it can do. */
function warnUnauthenticated(replica: Replica, logger: Logger, namespace = 'default'): void {
  logger.warn(
    `unauthenticated replica (development mode, no open({ cluster: { key } })): any process that can reach its port and knows the namespace '${namespace}' joins the cluster, reads every collection and can write or delete any entity. Give every replica the same cluster key (\`npx convergent cluster-key\` makes one) to keep everyone else from connecting.`,
    { self: replica.peerId, multiaddrs: replica.multiaddrs, namespace },
  )
}
