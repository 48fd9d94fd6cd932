// Review s31: attacks on the data folder checks (a dir or db that is a file is refused) and on
// folderIdentity (audit tells a missing, damaged and unreadable peer-id.key apart): symlinks,
// empty, huge and endless identity files.
import { existsSync, readdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect } from 'chai'
import { silentLogger } from '@convergent/core'
import { folderIdentity } from '../src/folder-identity.js'
import { folderPeerId, isConvergentError, open } from '../src/index.js'
import { cli, folderEachTest, productsFolder } from './helpers.js'

describe('review s31: data folders and identity files', function () {
  this.timeout(60_000)
  const folder = folderEachTest('convergent-s31-')

  describe('folderIdentity', function () {
    it('holds: a peer-id.key that is a symlink to a good key gives its peer id; an empty one is damaged', async function () {
      const dir = folder()
      const real = join(dir, 'real')
      const peerId = await folderPeerId(real)
      const linked = join(dir, 'linked')
      await productsFolder(linked)
      symlinkSync(join(real, 'peer-id.key'), join(linked, 'peer-id.key'))
      expect(await folderIdentity(linked)).to.deep.equal({ peerId })
      rmSync(join(linked, 'peer-id.key'))
      writeFileSync(join(linked, 'peer-id.key'), '')
      expect((await folderIdentity(linked)).why).to.match(/is damaged/)
    })

    // A peer-id.key that is a symlink to a missing file (a volume not mounted): audit said "no
    // identity file", and open() failed with a raw EEXIST from link() while creating one.
    it('a peer-id.key that is a symlink to a missing file: audit names the link and its target, open() refuses and creates no identity through it', async function () {
      const dir = folder()
      await productsFolder(dir)
      const file = join(dir, 'peer-id.key')
      const target = join(dir, 'unmounted', 'peer-id.key')
      symlinkSync(target, file)
      const why = `identity file ${file} is a symbolic link to ${target}, which is missing`
      expect(await folderIdentity(dir)).to.deep.equal({ peerId: undefined, why })
      const r = await cli('audit', dir, 'products')
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout.split('\n')[0]).to.include(`this replica is (${why}: peer id unknown)`)
      const err = await open({ dir, logger: silentLogger }).then(
        async (r) => {
          await r.close()
          return undefined
        },
        (e: unknown) => e,
      )
      expect(isConvergentError(err, 'ERR_INVALID_ARGUMENT') && err.message).to.equal(
        `${why}; restore ${target} to keep this replica's peer id, or remove the link ${file} to get a new peer id`,
      )
      expect(existsSync(target)).to.equal(false)
      expect(readdirSync(dir).sort()).to.deep.equal(['db', 'peer-id.key'])
    })

    // HOLE 4: the identity file was read whole: a 1.5 GB peer-id.key took ~15 s and 1.6 GB of
    // memory before audit (or open(), which reads it at every start) said it was damaged, and one
    // that is a symlink to /dev/zero (or any endless file) was read until the process died.
    it('HOLE 4 (fixed): a huge or endless peer-id.key is told damaged at once, without reading it whole', async function () {
      const dir = folder()
      const file = join(dir, 'peer-id.key')
      writeFileSync(file, '')
      truncateSync(file, 1500 * 1024 * 1024) // sparse: no disk used
      expect((await folderIdentity(dir)).why).to.equal(`identity file ${file} is damaged: it does not hold a libp2p private key`)
      rmSync(file)
      // Endless: were the file read whole, this would never end (no timing asserted).
      symlinkSync('/dev/zero', file)
      expect((await folderIdentity(dir)).why).to.equal(`identity file ${file} is damaged: it does not hold a libp2p private key`)
      // open() with the network refuses it the same way (it never replaces an identity).
      const err = await open({ dir, logger: silentLogger }).then(
        async (r) => {
          await r.close()
          return undefined
        },
        (e: unknown) => e,
      )
      expect(isConvergentError(err, 'ERR_INVALID_ARGUMENT') && err.message).to.match(/does not hold a libp2p private key/)
    })
  })

  describe('the data folder', function () {
    it('holds: a dir that is a symlink to a folder opens (and the CLI reads it); one that is a symlink to a file is refused naming it', async function () {
      const dir = folder()
      const real = join(dir, 'real')
      await productsFolder(real)
      const linked = join(dir, 'linked')
      symlinkSync(real, linked)
      const replica = await open({ dir: linked, network: false, logger: silentLogger })
      expect(await replica.collection('products').get('mug')).to.deep.include({ name: 'Mug' })
      await replica.close()
      const inspected = await open({ dir: linked, network: false, inspect: true, logger: silentLogger })
      await inspected.close()
      const r = await cli('collections', linked)
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.include('products')

      const file = join(dir, 'file.json')
      writeFileSync(file, '{}')
      const toFile = join(dir, 'to-file')
      symlinkSync(file, toFile)
      for (const inspect of [false, true]) {
        const err = await open({ dir: toFile, network: false, inspect, logger: silentLogger }).then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(isConvergentError(err, 'ERR_INVALID_ARGUMENT') && err.message).to.include(`${toFile} is a file, not a folder`)
      }
      expect(readdirSync(dir).sort()).to.deep.equal(['file.json', 'linked', 'real', 'to-file'])
    })

    it('holds: open() of a brand-new dir (its parents missing) creates it, and its db', async function () {
      const dir = folder()
      const fresh = join(dir, 'a', 'b', 'c')
      const replica = await open({ dir: fresh, network: false, logger: silentLogger })
      await replica.collection('p').put('k', { v: 1 })
      await replica.close()
      expect(readdirSync(fresh)).to.include('db')
    })
  })
})
