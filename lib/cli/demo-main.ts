#!/usr/bin/env node
// npm start: the semantic-search method comparison (search-demo.ts); with --synthetic, the older
// comparison on a synthetic MLP task (demo.ts).
import { demo, parseDemoArgs } from './demo.js';
import { parseSearchDemoArgs, searchDemo } from './search-demo.js';

const argv = process.argv.slice(2);
try {
  if (argv.includes('--synthetic')) demo(parseDemoArgs(argv.filter((a) => a !== '--synthetic')));
  else {
    const opts = parseSearchDemoArgs(argv);
    if (opts) await searchDemo(opts);
  }
} catch (e) {
  console.error(e instanceof Error ? `lowrank demo: ${e.message}` : e);
  process.exit(1);
}
