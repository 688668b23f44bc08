import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    environment: 'node',
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The type tests: tsc checks the expectTypeOf assertions of these files (under
    // test/tsconfig.json, which covers lib/ and test/); a wrong one fails `npm test`.
    typecheck: {
      enabled: true,
      include: ['test/09-types.test.ts'],
      tsconfig: 'test/tsconfig.json',
    },
  },
});
