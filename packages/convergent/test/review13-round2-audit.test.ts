// Second review of signed writes (issue #13): `convergent audit` prints peer-controlled strings.
// HOLE D was watched fail against 6c01b8d.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { open, silentLogger } from '../src/index.js'
import { rows, runNode, waitFor } from './helpers.js'

const CLI = fileURLToPath(new URL('../../bin/convergent.js', import.meta.url))
const cli = (...args: string[]) => runNode(CLI, args)

describe('convergent audit under attack (review 13, round 2)', function () {
  this.timeout(60_000)
  let dir = ''
  let writerId = ''

  // HOLE D (low): the audit's text listing is tab- and line-separated, and prints entity ids
  // (any string but NUL: chosen by whoever wrote the entity, a remote writer included) and the
  // TAMPERED reasons (which quote the signed payload's collection and author) as they are. A
  // writer names an entity `x\n<a forged row>` and the listing shows a row for a change nobody
  // made — "verified", by whoever it likes — or, with terminal escapes (`\x1b[1A\x1b[2K`:
  // cursor up, erase the line), erases the TAMPERED row above it on the operator's screen.
  // `--json` escapes; the text listing does not. Fix: print control characters (tab, newline,
  // ESC, C1, DEL, the Unicode line separators) escaped in the text listing.
  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'convergent-audit-inject-'))
    const audited = await open({ dir, logger: silentLogger, syncIntervalMs: 0, namespace: 'audit-inject' })
    const writer = await open({ logger: silentLogger, syncIntervalMs: 0, namespace: 'audit-inject', peers: [audited.multiaddrs[0]!] })
    try {
      writerId = writer.peerId
      await waitFor(() => audited.peers().includes(writerId), 'connected')
      await audited.collection('orders').put('o-1', { qty: 1 })
      const forged = `o-2\tremote\t${writerId}\tverified (delta 0123456789abcdef)\n99\t2026-01-01T00:00:00.000Z\to-forged\tput\t${writerId}\tverified (delta fedcba9876543210)`
      await writer.collection('orders').put(forged, { qty: 2 })
      await writer.collection('orders').put('o-3\u001b[1A\u001b[2K\r', { qty: 3 })
      await waitFor(async () => {
        if ((await audited.collection('orders').get(forged)) !== undefined && (await audited.collection('orders').get('o-3\u001b[1A\u001b[2K\r')) !== undefined)
          return true
        await audited.sync()
        return false
      }, "the writer's entities reach the audited replica")
    } finally {
      await writer.close()
      await audited.close()
    }
  })

  after(function () {
    rmSync(dir, { recursive: true, force: true })
  })

  it('HOLE D: an entity id cannot forge rows or hide one in the text listing', async function () {
    const r = await cli('audit', dir, 'orders')
    expect(r.code, r.stderr).to.equal(0)
    const list = rows(r.stdout)
    // One row per change (3), six columns each, and no control character left in any of them.
    expect(list.map((row) => row.length)).to.deep.equal([6, 6, 6])
    // eslint-disable-next-line no-control-regex -- control characters are what is looked for
    expect(r.stdout.split('\n').filter((l) => /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/.test(l))).to.deep.equal([])
    expect(list.map((row) => row[3])).to.deep.equal(['put', 'remote', 'remote'])
  })
})
