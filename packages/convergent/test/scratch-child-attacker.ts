// scratch: an attacker in its own process (for attribution only; not part of the suite)
import { createLibp2pNetwork } from '../src/index.js'
import { encodeMessage, MessageType, topicOf } from '@convergent/core'
const [addr, victimId, mode, seconds] = process.argv.slice(2)
const net = await createLibp2pNetwork({ peers: [addr!], namespace: 'default', maxMessageBytes: 16 << 20 })
await net.start({ onMessage() {}, onRequest: async () => new Uint8Array(), onPeerConnected() {}, onPeerDisconnected() {} })
while (!net.peers().includes(victimId!)) await new Promise((r) => setTimeout(r, 20))
await new Promise((r) => setTimeout(r, 1500))
process.stdout.write('ready\n')
const end = Date.now() + Number(seconds) * 1000
const topic = topicOf('default', 'p')
const push = (n: number) => encodeMessage(MessageType.Push, { c: 'p', b: 'yjs', o: 'x', s: 1, e: [['k', new Uint8Array(n)]] })
const g4m = push(4_000_000), g39 = push(3_900_000), req = new Uint8Array(4 * 1024 * 1024 + 1)
let n = 0
while (Date.now() < end) {
  if (mode === 'g1b') { await net.libp2p.services.pubsub.publish(topic, g4m).catch(() => {}); await net.request(victimId!, req).catch(() => {}) }
  if (mode === 'g1c') await net.publish(topic, g39)
  if (mode === 'ctl') await net.request(victimId!, encodeMessage(MessageType.NodesRequest, { c: 'nothing', l: 0, n: [0] })).catch(() => {})
  n++
  await new Promise((r) => setTimeout(r, mode === 'ctl' ? 0 : 250))
}
process.stdout.write(`done ${n}\n`)
await net.stop()
process.exit(0)
