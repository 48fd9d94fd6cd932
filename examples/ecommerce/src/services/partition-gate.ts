import type { Libp2pNetwork, Libp2pNetworkOptions } from 'convergent'

type ConnectionGater = NonNullable<Libp2pNetworkOptions['connectionGater']>

/**
 * Cuts this node off from chosen peers, the way a network partition would: existing
 * connections to them are closed, and new ones — dialled by either side — are refused during
 * the handshake. heal() lifts the block; the bootstrap redialer then reconnects on its own.
 */
export class PartitionGate {
  private readonly blocked = new Set<string>()
  private libp2p: Libp2pNetwork['libp2p'] | undefined

  /** Pass to createLibp2pNetwork({ connectionGater }). */
  readonly gater: ConnectionGater = {
    denyDialPeer: (peer) => this.blocked.has(peer.toString()),
    denyOutboundEncryptedConnection: (peer) => this.blocked.has(peer.toString()),
    // Inbound connections only learn the remote peer id once encrypted: refuse them there.
    denyInboundEncryptedConnection: (peer) => this.blocked.has(peer.toString()),
  }

  /** The node whose connections block() closes (it exists only after the gater was created). */
  attach(network: Libp2pNetwork): void {
    this.libp2p = network.libp2p
  }

  get blockedPeers(): string[] {
    return [...this.blocked]
  }

  /** Blocks the peers (peer ids, or multiaddrs ending in /p2p/<id>) and drops their connections. */
  async block(peers: string[]): Promise<void> {
    for (const peer of peers) this.blocked.add(peerIdOf(peer))
    const open = this.libp2p?.getConnections() ?? []
    await Promise.all(open.filter((c) => this.blocked.has(c.remotePeer.toString())).map((c) => c.close().catch(() => c.abort(new Error('partitioned')))))
  }

  /** Lifts the block on the given peers, or on every peer. */
  heal(peers?: string[]): void {
    if (peers === undefined) this.blocked.clear()
    else for (const peer of peers) this.blocked.delete(peerIdOf(peer))
  }
}

function peerIdOf(peerOrAddress: string): string {
  const parts = peerOrAddress.split('/')
  const at = parts.lastIndexOf('p2p')
  return at >= 0 && parts[at + 1] ? parts[at + 1]! : peerOrAddress
}
