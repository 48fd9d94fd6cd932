// Review s32: an identity file that is a link to a link to a missing file. DanglingIdentityLinkError
// named the first link's target as the missing file, though it is there (a link): the user told to
// restore it finds it in place. It names the file at the end of the chain.
import { expect } from 'chai'
import { execFileSync } from 'node:child_process'
import { lstat, mkdtemp, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DanglingIdentityLinkError, identityPeerId } from '../src/index.js'

describe('review s32: identity file behind a chain of links, or a FIFO', function () {
  let dir = ''
  beforeEach(async () => void (dir = await mkdtemp(join(tmpdir(), 'convergent-s32-identity-'))))
  afterEach(() => rm(dir, { recursive: true, force: true }))

  it('HOLE 5: a link to a link to a missing file is refused naming the missing file, not the link between', async function () {
    await symlink('keys.key', join(dir, 'peer-id.key'))
    await symlink('gone/peer.key', join(dir, 'keys.key'))
    let err: unknown
    for (const create of [false, true]) {
      err = await identityPeerId(join(dir, 'peer-id.key'), { create }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).to.be.instanceOf(DanglingIdentityLinkError)
      expect((err as DanglingIdentityLinkError).target).to.equal(join(dir, 'gone', 'peer.key'))
    }
  })

  it('an identity file that is a FIFO is refused at once as not a key (opened without blocking), and no identity is created in its place', async function () {
    const file = join(dir, 'peer-id.key')
    execFileSync('mkfifo', [file])
    for (const create of [false, true]) {
      const err = await identityPeerId(file, { create }).then(
        () => undefined,
        (e: unknown) => e,
      )
      // Opened without blocking, a FIFO with no writer reads as empty: not a key.
      expect((err as { code?: string } | undefined)?.code).to.equal('ERR_INVALID_ARGUMENT')
      expect((err as Error).message).to.match(/does not hold a libp2p private key/)
    }
    expect((await lstat(file)).isFIFO()).to.equal(true)
  })
})
