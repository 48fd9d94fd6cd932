import assert from 'node:assert/strict'
import { GroupCommit } from '../src/group-commit.js'

const nextTick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

describe('GroupCommit', function () {
  it('a batch queued behind a failed one fails too, unwritten, as do adds until the next macrotask; later writes go out again', async function () {
    const written: string[][] = []
    let failNext = true
    let release!: () => void
    const commits = new GroupCommit<string>(
      async (ops) => {
        if (failNext) {
          failNext = false
          await new Promise<void>((resolve) => (release = resolve))
          throw new Error('EIO')
        }
        written.push(ops)
      },
      (err) => new Error(`store: ${(err as Error).message}`),
    )
    const first = commits.add(['a1', 'a2'], 2)
    await nextTick() // the first batch is being written now
    const behind = commits.add(['b1'], 1) // queued behind it
    const outcome = Promise.allSettled([first, behind])
    release()
    const [a, b] = await outcome
    assert.equal(a.status, 'rejected')
    assert.match(String(a.reason), /store: EIO/)
    assert.equal(b.status, 'rejected')
    assert.match(String(b.reason), /came behind it/)
    assert.deepEqual(written, [])
    // Until the next macrotask, adds are refused too: their writers may not have heard yet.
    await assert.rejects(commits.add(['late'], 1), /came behind it/)

    await nextTick()
    await commits.add(['c1'], 1)
    assert.deepEqual(written, [['c1']])
    assert.deepEqual(commits.stats, { batches: 1, ops: 1 })
  })

  it('gathers the adds of one tick into one batch, and those made while it is written into the next', async function () {
    const written: number[][] = []
    const commits = new GroupCommit<number>(
      async (ops) => void written.push(ops),
      (err) => err as Error,
    )
    const tick1 = [commits.add([1], 1), commits.add([2], 1)]
    await nextTick()
    const tick2 = [commits.add([3], 1), commits.add([4], 1)]
    await Promise.all([...tick1, ...tick2])
    assert.deepEqual(written, [
      [1, 2],
      [3, 4],
    ])
  })
})

describe('GroupCommit.exclusive', function () {
  it('runs a task after the batches added before it and before those added after it, alone', async function () {
    const log: string[] = []
    let running = 0
    const commits = new GroupCommit<number>(
      async (ops) => {
        assert.equal(running, 0, 'a batch overlapped a task')
        log.push(`batch ${ops.join(',')}`)
      },
      (err) => err as Error,
    )
    const before = [commits.add([1], 1), commits.add([2], 1)]
    const task = commits.exclusive(async () => {
      running++
      log.push('task start')
      await new Promise((resolve) => setTimeout(resolve, 10))
      log.push('task end')
      running--
      return 'result'
    })
    const after = [commits.add([3], 1), commits.add([4], 1)]
    assert.equal(await task, 'result')
    await Promise.all([...before, ...after])
    assert.deepEqual(log, ['batch 1,2', 'task start', 'task end', 'batch 3,4'])
  })

  it("a task's failure is its own; a failed batch fails the batches behind it, not the task between them", async function () {
    const written: number[][] = []
    const commits = new GroupCommit<number>(
      async (ops) => {
        if (ops.includes(1)) throw new Error('disk full')
        written.push(ops)
      },
      (err) => err as Error,
    )
    const failed = commits.add([1], 1)
    const ran: string[] = []
    const task = commits.exclusive(async () => void ran.push('task'))
    const behind = commits.add([2], 1)
    const results = await Promise.allSettled([failed, task, behind])
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'fulfilled', 'rejected'],
    )
    assert.deepEqual(ran, ['task'])
    await assert.rejects(
      commits.exclusive(async () => Promise.reject(new Error('task failed'))),
      /task failed/,
    )
    await nextTick()
    await commits.add([5], 1)
    assert.deepEqual(written, [[5]])
  })
})
