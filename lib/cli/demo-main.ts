#!/usr/bin/env node
// npm start: the method comparison with its default settings (see demo.ts).
import { demo, parseDemoArgs } from './demo.js';

try {
  demo(parseDemoArgs(process.argv.slice(2)));
} catch (e) {
  console.error(e instanceof Error ? `lowrank demo: ${e.message}` : e);
  process.exit(1);
}
