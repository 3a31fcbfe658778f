import { MemoryCallStore } from '../../src/store/index.js';
import { callStoreContract } from './call-store.contract.js';

callStoreContract('memory', () => {
  const store = new MemoryCallStore();
  return Promise.resolve({ a: store, b: store, close: () => store.close() });
});
