// placeholder until espsim's fault flags exist
import { runCases } from './harness.mjs';
await runCases([{ name: 'esptool-js against espsim faults', skip: () => 'espsim has no --fault flags yet', run: async () => {} }]);
