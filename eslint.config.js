// ESLint: typescript-eslint's type-checked rules for the TypeScript (lib/, test/), the plain
// recommended rules for the JavaScript (bench/, examples/, scripts/), and prettier's config last so
// that no rule argues with the formatter. `npm run lint` allows no warnings.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import { defineConfig, globalIgnores } from 'eslint/config';
import globals from 'globals';
import tseslint from 'lowrank-typescript-eslint';

export default defineConfig(
  globalIgnores(['dist/', 'build/', 'build-*/', 'prebuilds/', 'bench/results/']),
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        // Each file is typed by its nearest tsconfig.json: lib/ by the root one, test/ by
        // test/tsconfig.json. vitest.config.ts, outside both includes, gets the default project.
        projectService: { allowDefaultProject: ['vitest.config.ts'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [js.configs.recommended],
    languageOptions: { globals: globals.node },
  },
  prettier,
);
