// Re-exports typescript-eslint from this folder's own node_modules, where it finds TypeScript 6.0:
// typescript-eslint loads the classic compiler API (<6.1), which the TypeScript 7 used to build
// lib/ does not ship. Type information therefore comes from 6.0, the release 7.0 was ported from.
export { default } from 'typescript-eslint';
