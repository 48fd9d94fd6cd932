// Bytes of Automerge history a signed counter row write keeps (issue #13), against development
// mode's unsigned keys, with 52-character peer ids:
//   npm run build && node bench/dist/src/counter-size.js [writes=2000]
// Each write replaces the holder's row (delete the old key, put the new one), as Counter does;
// the signature is random bytes of an Ed25519 signature's length (its size is what matters here).
import { randomBytes } from 'node:crypto'
import * as A from '@automerge/automerge'
import { encodeRowBody, rowKey, rowValue } from '@convergent/core/internal'

const writes = Number(process.argv[2] ?? 2000)
const peer = (c: string) => `12D3KooW${c.repeat(44)}`
const [me, giver, to] = [peer('A'), peer('B'), peer('C')]

function signedHistory(withPeers: boolean): number {
  let doc = A.from<Record<string, string>>({})
  let previous: string | undefined
  for (let v = 1; v <= writes; v++) {
    const row = { version: v, inc: 100_000, dec: v, out: withPeers ? { [to]: 50 } : {}, received: withPeers ? { [giver]: 5_000 } : {} }
    const value = rowValue(encodeRowBody(row), randomBytes(64))
    const key = rowKey(me, v, value)
    doc = A.change(doc, (d) => {
      if (previous !== undefined) delete d[previous]
      d[key] = new A.ImmutableString(value) as unknown as string
    })
    previous = key
  }
  return A.save(doc).byteLength / writes
}

function unsignedHistory(): number {
  let doc = A.from<Record<string, number>>({ min: 0 })
  for (let v = 1; v <= writes; v++) doc = A.change(doc, (d) => void (d[`n|${me}`] = v))
  return A.save(doc).byteLength / writes
}

console.log(`Automerge history per counter write, ${writes} writes (A.save bytes / writes):`)
console.log(`  development mode (unsigned n|<peer>):        ${unsignedHistory().toFixed(1)} B`)
console.log(`  signed row, no transfers:                    ${signedHistory(false).toFixed(1)} B`)
console.log(`  signed row, one recipient and one receipt:   ${signedHistory(true).toFixed(1)} B`)
