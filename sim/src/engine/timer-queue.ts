/** One scheduled callback. `cancelled` tasks stay in the heap and are skipped when popped. */
export interface Task {
  readonly time: number
  readonly seq: number
  readonly fn: () => void
  cancelled: boolean
}

/**
 * A binary min-heap of tasks ordered by time, then by insertion order (seq), so tasks due at
 * the same instant run in the order they were scheduled — part of what makes a run replayable.
 */
export class TimerQueue {
  private readonly heap: Task[] = []

  get size(): number {
    return this.heap.length
  }

  push(task: Task): void {
    const heap = this.heap
    heap.push(task)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(task, heap[parent]!)) break
      heap[i] = heap[parent]!
      i = parent
    }
    heap[i] = task
  }

  peek(): Task | undefined {
    return this.heap[0]
  }

  pop(): Task | undefined {
    const heap = this.heap
    const top = heap[0]
    const last = heap.pop()
    if (top === undefined || last === undefined || heap.length === 0) return top
    let i = 0
    const n = heap.length
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const child = r < n && before(heap[r]!, heap[l]!) ? r : l
      if (!before(heap[child]!, last)) break
      heap[i] = heap[child]!
      i = child
    }
    heap[i] = last
    return top
  }
}

function before(a: Task, b: Task): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq)
}
