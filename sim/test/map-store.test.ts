import { storeComplianceSuite } from '@convergent/core/testing'
import { emptyMapStoreData, MapStore } from '../src/nodes/map-store.js'

// The simulator's lightweight store must keep the same contract as the real ones.
storeComplianceSuite('sim MapStore', async () => {
  const data = emptyMapStoreData()
  return { store: new MapStore(data), reopen: async () => new MapStore(data), cleanup: async () => {} }
})
