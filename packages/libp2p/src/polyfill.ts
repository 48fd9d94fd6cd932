// libp2p 3 calls Promise.withResolvers, which Node only has from 22 on. This module must be
// evaluated before any libp2p module runs, so index.ts imports it first (ESM evaluates a
// module's imports in order) and every module here that imports libp2p imports it too.

interface Resolvers<T> {
  promise: Promise<T>
  resolve: (value: T | PromiseLike<T>) => void
  reject: (reason?: unknown) => void
}

if (typeof (Promise as { withResolvers?: unknown }).withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    // As in the spec: `this` is the constructor, so subclasses get their own kind of promise.
    value: function withResolvers<T>(this: PromiseConstructor): Resolvers<T> {
      let resolve!: Resolvers<T>['resolve']
      let reject!: Resolvers<T>['reject']
      const promise = new this<T>((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    },
    writable: true,
    configurable: true,
  })
}

export {}
